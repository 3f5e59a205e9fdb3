package gormaudit_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
)

func TestValueTypes(t *testing.T) {
	e := newEnv(t, envConfig{}, &Profile{})
	tokyo := time.FixedZone("JST", 9*3600)
	p := Profile{
		Doc:     json.RawMessage(`{"b": [1, 2.5, "x"], "a": {"n": 12345678901234567890}}`),
		Attrs:   Attrs{"color": "red", "size": 3},
		Blob:    []byte{0, 1, 2, 0xff},
		Tags:    []string{"x", "y"},
		Prefs:   map[string]int{"volume": 7},
		Home:    Address{Street: "1 Main St", City: "Springfield"},
		Price:   12.5,
		Born:    time.Date(2024, 5, 6, 7, 8, 9, 123456000, tokyo),
		Day:     time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC),
		Private: Address{Street: "hidden", City: "hidden"},
		Stamp:   Stamp{Source: "import", Secret: "s3cret"},
	}
	must(t, e.db.Create(&p).Error)
	a := e.one("").After

	checks := map[string]string{
		"doc":         `{"a":{"n":12345678901234567890},"b":[1,2.5,"x"]}`,
		"attrs":       `{"color":"red","size":3}`,
		"blob":        base64.StdEncoding.EncodeToString(p.Blob),
		"tags":        `["x","y"]`,
		"prefs":       `{"volume":7}`,
		"home_street": "1 Main St",
		"home_city":   "Springfield",
		"price":       "12.50", // numeric keeps its scale
		"born":        "2024-05-05T22:08:09.123456Z",
		"day":         "2024-05-06",
		"source":      "import",
		"secret":      core.Redacted,
	}
	for k, want := range checks {
		got := a[k]
		if k == "doc" || k == "attrs" || k == "tags" || k == "prefs" {
			j, _ := json.Marshal(got)
			if string(j) != want {
				t.Errorf("%s = %s, want %s", k, j, want)
			}
			continue
		}
		if str(got) != want {
			t.Errorf("%s = %v (%T), want %s", k, got, got, want)
		}
	}
	for _, k := range []string{"priv_street", "priv_city"} {
		if _, ok := a[k]; ok {
			t.Errorf("%s is in the image; its embedded struct is tagged audit:\"-\"", k)
		}
	}
	// Numbers in JSON documents stay exact (the stored jsonb keeps them; check the raw text).
	var raw string
	must(t, e.pg.Pool.QueryRow(t.Context(), `SELECT after->'doc'->'a'->>'n' FROM audit_logs`).Scan(&raw))
	if raw != "12345678901234567890" {
		t.Errorf("big number stored as %s", raw)
	}

	// A change inside a JSON document shows as a change of the column, whole documents on
	// both sides.
	n := e.count()
	must(t, e.db.Model(&p).Update("attrs", Attrs{"color": "blue", "size": 3}).Error)
	r := e.audit("")[n]
	if str(r.Diff["attrs"]["from"]) != `{"color":"red","size":3}` || str(r.Diff["attrs"]["to"]) != `{"color":"blue","size":3}` {
		t.Fatalf("diff = %v", r.Diff)
	}
	if len(r.Diff) != 1 {
		t.Fatalf("diff holds unchanged columns: %v", r.Diff)
	}
}

func TestKeys(t *testing.T) {
	e := newEnv(t, envConfig{}, &Membership{}, &Device{}, &Token{}, &Setting{})

	m := Membership{TeamID: "team-1", UserID: 42, Role: "member"}
	must(t, e.db.Create(&m).Error)
	must(t, e.db.Model(&m).Update("role", "admin").Error)
	must(t, e.db.Delete(&m).Error)
	rows := e.audit("resource_type = 'memberships'")
	if len(rows) != 3 {
		t.Fatalf("memberships: %s", dump(rows))
	}
	for _, r := range rows {
		if r.ResourceID != `{"team_id":"team-1","user_id":42}` {
			t.Fatalf("composite key rendered as %q", r.ResourceID)
		}
	}
	if rows[1].Kind != "update" || str(rows[1].Before["role"]) != "member" || str(rows[1].After["role"]) != "admin" {
		t.Fatalf("update = %+v", rows[1])
	}
	// Bulk over a composite key: pinned by (team_id, user_id) tuples.
	for i := range 3 {
		must(t, e.db.Create(&Membership{TeamID: "team-2", UserID: int64(i), Role: "member"}).Error)
	}
	n := e.count()
	must(t, e.db.Model(&Membership{}).Where("team_id = ?", "team-2").Update("role", "guest").Error)
	if rows := e.audit("")[n:]; len(rows) != 3 || rows[2].ResourceID != `{"team_id":"team-2","user_id":2}` {
		t.Fatalf("bulk over a composite key: %s", dump(rows))
	}

	d := Device{ID: uuid.New(), Label: "phone"}
	must(t, e.db.Create(&d).Error)
	must(t, e.db.Model(&d).Update("label", "tablet").Error)
	rows = e.audit("resource_type = 'devices'")
	if len(rows) != 2 || rows[0].ResourceID != d.ID.String() || rows[1].ResourceID != d.ID.String() ||
		str(rows[0].After["id"]) != d.ID.String() {
		t.Fatalf("devices: %s", dump(rows))
	}

	tok := Token{Label: "api"}
	must(t, e.db.Create(&tok).Error)
	if tok.ID == uuid.Nil {
		t.Fatal("no id returned")
	}
	if r := e.one("resource_type = 'tokens'"); r.ResourceID != tok.ID.String() {
		t.Fatalf("token id %q, want %s", r.ResourceID, tok.ID)
	}

	s := Setting{Key: "théme/🌙", Value: "dark"}
	must(t, e.db.Create(&s).Error)
	must(t, e.db.Model(&s).Update("value", "light").Error)
	rows = e.audit("resource_type = 'settings'")
	if len(rows) != 2 || rows[1].ResourceID != s.Key || str(rows[1].Before["value"]) != "dark" {
		t.Fatalf("settings: %s", dump(rows))
	}

	// An update that changes the primary key is recorded under the new key.
	n = e.count()
	oldKey := s.Key
	must(t, e.db.Model(&s).Update("key", "theme").Error)
	rows = e.audit("")[n:]
	if len(rows) != 1 || rows[0].ResourceID != "theme" || rows[0].Metadata["previous_id"] != oldKey {
		t.Fatalf("key change: %s", dump(rows))
	}
}

func TestTagsIgnoreAndNoOp(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{IgnoreFields: []string{"UpdatedAt"}}}, &Customer{})
	c, n := seedCustomer(t, e, Customer{Name: "Ada", Password: "one", Internal: "i1"})

	// Only an omitted column (and an ignored one) changes: the row changed, so it is recorded,
	// the omitted column named without its values.
	must(t, e.db.Model(&c).Update("internal", "i2").Error)
	rows := e.audit("")[n:]
	if len(rows) != 1 || len(rows[0].Diff) != 0 || str(rows[0].Metadata["omitted_changed"]) != `["internal"]` {
		t.Fatalf("an update of an audit:\"-\" column and updated_at: %s", dump(rows))
	}
	n++
	must(t, e.db.Model(&c).Update("name", "Ada").Error)
	if got := e.count(); got != n {
		t.Fatalf("%d audit rows for a no-op update", got-n)
	}
	// A redacted column: the diff says it changed, never the values.
	must(t, e.db.Model(&c).Update("password", "two").Error)
	rows = e.audit("")[n:]
	if len(rows) != 1 {
		t.Fatalf("rows: %s", dump(rows))
	}
	r := rows[0]
	wantDiff(t, r.Diff, map[string][2]any{"password": {core.Redacted, core.Redacted}})
	if r.Before["password"] != core.Redacted || r.After["password"] != core.Redacted {
		t.Fatalf("images = %v / %v", r.Before, r.After)
	}
	if r.After["updated_at"] == nil {
		t.Fatal("an ignored column must stay in the image")
	}

	// RecordNoOpUpdates keeps them.
	e2 := newEnv(t, envConfig{opts: gormaudit.Options{RecordNoOpUpdates: true}}, &Item{})
	it := Item{SKU: "a", Qty: 1}
	must(t, e2.db.Create(&it).Error)
	must(t, e2.db.Model(&it).Update("qty", 1).Error)
	rows = e2.audit("kind = 'update'")
	if len(rows) != 1 || len(rows[0].Diff) != 0 {
		t.Fatalf("no-op update with RecordNoOpUpdates: %s", dump(rows))
	}
}

func TestOptOut(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{ExcludeModels: []any{&Heartbeat{}}, ExcludeTables: []string{"settings"}}},
		&Session{}, &Heartbeat{}, &Setting{}, &Item{})
	must(t, e.db.Create(&Session{Token: "x"}).Error)
	must(t, e.db.Create(&Heartbeat{At: time.Now()}).Error)
	must(t, e.db.Create(&Setting{Key: "k", Value: "v"}).Error)
	must(t, e.db.Model(&Session{}).Where("id > 0").Update("token", "y").Error)
	must(t, e.db.Where("id > 0").Delete(&Heartbeat{}).Error)
	must(t, e.db.Create(&Item{SKU: "a"}).Error)
	rows := e.audit("")
	if len(rows) != 1 || rows[0].ResourceType != "items" {
		t.Fatalf("rows: %s", dump(rows))
	}
}

func TestRawSQL(t *testing.T) {
	off := newEnv(t, envConfig{}, &Item{})
	must(t, off.db.Exec("INSERT INTO items (sku, qty) VALUES (?, ?)", "raw", 1).Error)
	if n := off.count(); n != 0 {
		t.Fatalf("%d audit rows with CaptureRawSQL off", n)
	}

	e := newEnv(t, envConfig{opts: gormaudit.Options{CaptureRawSQL: true}}, &Item{})
	ctx := identity()
	must(t, e.db.WithContext(ctx).Exec("INSERT INTO items (sku, qty) VALUES (?, ?), (?, ?)", "r1", 1, "r2", 2).Error)
	must(t, e.db.WithContext(ctx).Exec("UPDATE items SET qty = qty + 1 WHERE sku = @sku", map[string]any{"sku": "r1"}).Error)
	var ids []int
	must(t, e.db.WithContext(ctx).Raw("DELETE FROM items WHERE sku = ? RETURNING id", "r2").Scan(&ids).Error)
	must(t, e.db.WithContext(ctx).Exec("SELECT set_config('app.x', ?, true)", "y").Error)
	var items []Item
	must(t, e.db.WithContext(ctx).Find(&items).Error)
	must(t, e.db.WithContext(ctx).Exec("UPDATE items SET sku = 'password=hunter2' WHERE false").Error)

	rows := e.audit("")
	if len(rows) != 4 {
		t.Fatalf("rows: %s", dump(rows))
	}
	want := []struct{ sql, args, affected string }{
		{"INSERT INTO items (sku, qty) VALUES ($1, $2), ($3, $4)", `["[REDACTED]","[REDACTED]","[REDACTED]","[REDACTED]"]`, "2"},
		{"UPDATE items SET qty = qty + 1 WHERE sku = $1", `["[REDACTED]"]`, "1"},
		{"DELETE FROM items WHERE sku = $1 RETURNING id", `["[REDACTED]"]`, "<nil>"},
		{"UPDATE items SET sku = 'password=[REDACTED]' WHERE false", `[]`, "0"},
	}
	for i, r := range rows {
		if r.Kind != "custom" || r.Action != "sql.exec" || r.ActorID != "alice" || r.RequestID != "req-1" {
			t.Fatalf("row %d = %+v", i, r)
		}
		if r.Metadata["sql"] != want[i].sql || str(r.Metadata["args"]) != want[i].args || str(r.Metadata["rows_affected"]) != want[i].affected {
			t.Fatalf("row %d metadata = %v, want %+v", i, r.Metadata, want[i])
		}
	}
}

func TestNoModelWarns(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	must(t, e.db.Table("items").Create(map[string]any{"sku": "x", "qty": 1}).Error)
	must(t, e.db.Table("items").Where("sku = ?", "x").Updates(map[string]any{"qty": 2}).Error)
	// A map with a model is recorded.
	must(t, e.db.Model(&Item{}).Create(map[string]any{"sku": "y", "qty": 1}).Error)
	rows := e.audit("")
	if len(rows) != 1 || str(rows[0].After["sku"]) != "y" {
		t.Fatalf("rows: %s", dump(rows))
	}
	if logs := e.logs.String(); strings.Count(logs, "without a model are not recorded") != 1 || !strings.Contains(logs, "table=items") {
		t.Fatalf("want one warning, logs:\n%s", logs)
	}
}

func TestInvalidTagFailsTheWrite(t *testing.T) {
	type Bad struct {
		ID   uint   `gorm:"primaryKey"`
		Name string `audit:"redcat"`
	}
	e := newEnv(t, envConfig{}, &Bad{})
	err := e.db.Create(&Bad{Name: "x"}).Error
	if err == nil || !errors.Is(err, core.ErrInvalidTag) {
		t.Fatalf("err = %v, want ErrInvalidTag", err)
	}
	var n int64
	must(t, e.db.Model(&Bad{}).Count(&n).Error)
	if n != 0 {
		t.Fatal("the write committed without its audit record")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []gormaudit.Options{
		{MaxRowsPerStatement: -1},
		{IgnoreFields: []string{" "}},
		{ExcludeTables: []string{""}},
		{ExcludeModels: []any{42}},
	} {
		db, err := gorm.Open(nil, &gorm.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gormaudit.Register(db, o); !errors.Is(err, gormaudit.ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", o, err)
		}
	}
}

var (
	_ = fmt.Sprint
	_ = clause.Returning{}
)

func TestSchemaQualifiedTable(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	tbl := e.pg.Schema + ".items"
	it := Item{SKU: "q", Qty: 1}
	must(t, e.db.Table(tbl).Create(&it).Error)
	must(t, e.db.Table(tbl).Model(&it).Update("qty", 2).Error)
	must(t, e.db.Table(tbl).Delete(&it).Error)
	rows := e.audit("")
	if len(rows) != 3 || rows[0].Kind != "insert" || rows[1].Kind != "update" || rows[2].Kind != "delete" ||
		rows[1].ResourceType != "items" || str(rows[1].Before["qty"]) != "1" || str(rows[1].After["qty"]) != "2" {
		t.Fatalf("rows: %s", dump(rows))
	}
}

// ExcludeTables matches a table by its plain name whether or not the statement qualifies it,
// and by its qualified name when the statement names the schema.
func TestExcludeTablesQualified(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{}, &Setting{}, &Counter{})
	schema := e.pg.Schema
	q := gormaudit.Options{Writer: e.w, ExcludeTables: []string{"items", schema + ".settings", "elsewhere.counters"}}
	db, err := gorm.Open(postgres.Open(e.pg.URL), &gorm.Config{Logger: logger.Discard})
	must(t, err)
	if sqlDB, err := db.DB(); err == nil {
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	_, err = gormaudit.Register(db, q)
	must(t, err)

	must(t, db.Table(schema+".items").Create(&Item{SKU: "a", Qty: 1}).Error)
	must(t, db.Create(&Item{SKU: "b", Qty: 1}).Error)
	must(t, db.Table(schema+".settings").Create(&Setting{Key: "k", Value: "v"}).Error)
	must(t, db.Table(schema+".settings").Model(&Setting{Key: "k"}).Update("value", "w").Error)
	if rows := e.audit(""); len(rows) != 0 {
		t.Fatalf("excluded tables recorded: %s", dump(rows))
	}
	// A qualified entry does not exclude the same name in another schema.
	must(t, db.Create(&Counter{Name: "c"}).Error)
	if rows := e.audit(""); len(rows) != 1 || rows[0].ResourceType != "counters" {
		t.Fatalf("rows: %s", dump(rows))
	}
}
