package gormaudit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// between registers fn to run right before GORM's own statement callback of proc, i.e. after
// the plugin read and locked the rows; fn runs once. It simulates another session acting at the
// worst moment.
func between(t *testing.T, e *env, proc, name string, fn func()) {
	t.Helper()
	done := false
	hook := func(db *gorm.DB) {
		if !done {
			done = true
			fn()
		}
	}
	cb := e.db.Callback()
	var err error
	switch proc {
	case "create":
		err = cb.Create().Before("gorm:create").Register(name, hook)
	case "update":
		err = cb.Update().Before("gorm:update").Register(name, hook)
	}
	must(t, err)
}

// TestPhantomIsNotChangedUnrecorded: a row another session inserts and commits after the
// plugin's callback, matching the update's filter, is never changed without a record. Before
// PostgreSQL 18 the plugin's read locked the rows, and the update, pinned to them, leaves the
// new row alone; from 18 on the update runs as GORM's alone, changes it as GORM alone does, and
// its RETURNING gives the row's before image.
func TestPhantomIsNotChangedUnrecorded(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	must(t, e.db.Create(&Item{SKU: "a", Qty: 1}).Error)
	n := e.count()
	between(t, e, "update", "test:phantom", func() {
		// Another session inserts a row matching the update's filter and commits.
		if _, err := e.pg.Pool.Exec(context.Background(), `INSERT INTO items (sku, qty) VALUES ('phantom', 1)`); err != nil {
			t.Error(err)
		}
	})
	res := e.db.Model(&Item{}).Where("qty = ?", 1).Update("qty", 2)
	must(t, res.Error)
	rows := e.audit("")[n:]
	var phantom Item
	must(t, e.db.Where("sku = ?", "phantom").First(&phantom).Error)
	if returnsOld(t, e) {
		if res.RowsAffected != 2 || phantom.Qty != 2 {
			t.Fatalf("RowsAffected = %d, phantom %+v; want 2 rows changed, as by GORM alone", res.RowsAffected, phantom)
		}
		if len(rows) != 2 {
			t.Fatalf("rows: %s", dump(rows))
		}
		for _, r := range rows {
			if str(r.Before["qty"]) != "1" || str(r.After["qty"]) != "2" || r.Metadata["before_unknown"] != nil {
				t.Fatalf("rows: %s", dump(rows))
			}
		}
		return
	}
	if res.RowsAffected != 1 {
		t.Fatalf("RowsAffected = %d, want 1 (the locked row only)", res.RowsAffected)
	}
	if len(rows) != 1 || str(rows[0].After["sku"]) != "a" {
		t.Fatalf("rows: %s", dump(rows))
	}
	if phantom.Qty != 1 {
		t.Fatalf("the phantom was changed without a record: %+v", phantom)
	}
}

func TestUpsertMeetsConcurrentInsert(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	insertB := func() {
		if _, err := e.pg.Pool.Exec(context.Background(), `INSERT INTO items (sku, qty) VALUES ('b', 100)`); err != nil {
			t.Error(err)
		}
	}
	between(t, e, "create", "test:race", insertB)

	// DO NOTHING meets the row another session inserted after the plugin's read: the
	// statement inserted nothing for it and nothing is recorded for it.
	must(t, e.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "sku"}}, DoNothing: true}).
		Create(&[]Item{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 2}}).Error)
	rows := e.audit("")
	if len(rows) != 1 || rows[0].Kind != "insert" || str(rows[0].After["sku"]) != "a" {
		t.Fatalf("DO NOTHING: %s", dump(rows))
	}

	// DO UPDATE meets it: the statement updated a row it could not lock beforehand; recorded
	// as an update without a before image, flagged.
	must(t, e.db.Exec(`DELETE FROM items WHERE sku = 'b'`).Error)
	must(t, e.db.Callback().Create().Remove("test:race"))
	between(t, e, "create", "test:race2", insertB)
	n := e.count()
	must(t, e.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "sku"}}, DoUpdates: clause.AssignmentColumns([]string{"qty"})}).
		Create(&[]Item{{SKU: "b", Qty: 3}, {SKU: "c", Qty: 4}}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 2 {
		t.Fatalf("DO UPDATE: %s", dump(rows))
	}
	for _, r := range rows {
		switch str(r.After["sku"]) {
		case "b":
			if r.Kind != "update" || r.Before != nil || r.Metadata["before_unknown"] != true || r.Severity != "warning" || str(r.After["qty"]) != "3" {
				t.Fatalf("b: %+v", r)
			}
		case "c":
			if r.Kind != "insert" {
				t.Fatalf("c: %+v", r)
			}
		default:
			t.Fatalf("unexpected %+v", r)
		}
	}
}

// TestLargePins pins statements over more rows than fit a short IN list, for every kind of key.
// From PostgreSQL 18 on nothing is pinned (see TestPhantomIsNotChangedUnrecorded), and the same
// statements are checked without.
func TestLargePins(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{}, &Device{}, &Setting{}, &Membership{})
	old := returnsOld(t, e)
	const n = 40
	keys := []string{`plain`, `with "quotes"`, `back\slash`, `comma,brace}{`, `NULL`, ` spaced `, `ünï`}
	for i := range n {
		must(t, e.db.Create(&Item{SKU: fmt.Sprint("s", i), Qty: 1}).Error)
		must(t, e.db.Create(&Device{ID: uuid.New(), Label: "x"}).Error)
		must(t, e.db.Create(&Setting{Key: fmt.Sprint(keys[i%len(keys)], i), Value: "x"}).Error)
		must(t, e.db.Create(&Membership{TeamID: "t", UserID: int64(i), Role: "x"}).Error)
	}
	between(t, e, "update", "test:phantom", func() {
		if _, err := e.pg.Pool.Exec(context.Background(), `INSERT INTO items (sku, qty) VALUES ('phantom', 1)`); err != nil {
			t.Error(err)
		}
	})
	for _, s := range []struct {
		model any
		table string
	}{{&Item{}, "items"}, {&Device{}, "devices"}, {&Setting{}, "settings"}, {&Membership{}, "memberships"}} {
		before := e.count()
		col := "qty"
		var val any = 2
		if s.table != "items" {
			col, val = map[string]string{"devices": "label", "settings": "value", "memberships": "role"}[s.table], "y"
		}
		res := e.db.Model(s.model).Where("1 = 1").Update(col, val)
		must(t, res.Error)
		want := int64(n)
		if old && s.table == "items" {
			want++ // no pin: the phantom is changed, as by GORM alone, and recorded
		}
		if res.RowsAffected != want {
			t.Fatalf("%s: %d rows affected, want %d", s.table, res.RowsAffected, want)
		}
		rows := e.audit("")[before:]
		if int64(len(rows)) != want {
			t.Fatalf("%s: %d records, want %d", s.table, len(rows), want)
		}
		for _, r := range rows {
			if r.Kind != "update" || str(r.After[col]) != fmt.Sprint(val) || r.Before[col] == nil {
				t.Fatalf("%s: %+v", s.table, r)
			}
		}
	}
	var phantom Item
	must(t, e.db.Where("sku = ?", "phantom").First(&phantom).Error)
	if phantom.Qty != 1 && !old {
		t.Fatalf("the phantom was changed: %+v", phantom)
	}
}

// TestOtherCallbackWritesFirst registers callbacks of another plugin between the audit's and
// GORM's own statement callbacks, writing to another table through the statement's connection:
// the plugin leaves their statements alone and still captures GORM's.
func TestOtherCallbackWritesFirst(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	must(t, e.db.Exec(`CREATE TABLE items_log (id bigserial PRIMARY KEY, note text)`).Error)
	side := func(query string) func(*gorm.DB) {
		return func(db *gorm.DB) {
			if _, err := db.Statement.ConnPool.ExecContext(db.Statement.Context, query); err != nil {
				db.AddError(err)
			}
		}
	}
	cb := e.db.Callback()
	must(t, cb.Create().Before("gorm:create").Register("test:side_insert", side(`INSERT INTO items_log (note) VALUES ('create')`)))
	must(t, cb.Update().Before("gorm:update").Register("test:side_update", side(`UPDATE "items_log" SET note = note || '+'`)))
	must(t, cb.Delete().Before("gorm:delete").Register("test:side_delete", side(`DELETE FROM items_log WHERE note = 'none'`)))

	it := Item{SKU: "a", Qty: 1}
	must(t, e.db.Create(&it).Error)
	must(t, e.db.Model(&it).Update("qty", 2).Error)
	must(t, e.db.Delete(&it).Error)
	d := Device{ID: uuid.New(), Label: "x"} // inserted through the INSERT's own RETURNING
	must(t, e.db.AutoMigrate(&Device{}))
	must(t, e.db.Create(&d).Error)

	rows := e.audit("")
	var got []string
	for _, r := range rows {
		got = append(got, r.Kind+" "+r.ResourceType)
	}
	if fmt.Sprint(got) != "[insert items update items delete items insert devices]" {
		t.Fatalf("recorded %v: %s", got, dump(rows))
	}
	if str(rows[1].Before["qty"]) != "1" || str(rows[1].After["qty"]) != "2" || str(rows[2].Before["qty"]) != "2" ||
		str(rows[3].After["label"]) != "x" {
		t.Fatalf("images: %s", dump(rows))
	}
	var notes []string
	must(t, e.db.Raw(`SELECT note FROM items_log ORDER BY id`).Scan(&notes).Error)
	if fmt.Sprint(notes) != "[create+ create]" {
		t.Fatalf("items_log = %v", notes)
	}
}
