package gormaudit_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

func TestCreateOne(t *testing.T) {
	e := newEnv(t, envConfig{}, &Customer{})
	c := Customer{Name: "Ada", Email: "ada@example.com", Balance: 10, Password: "hunter2", Internal: "x"}
	must(t, e.db.WithContext(identity()).Create(&c).Error)

	r := e.one("")
	if r.Kind != "insert" || r.Action != "customers.insert" || r.ResourceType != "customers" || r.ResourceID != fmt.Sprint(c.ID) {
		t.Fatalf("record = %+v", r)
	}
	if r.ActorID != "alice" || r.TenantID != "t-1" || r.RequestID != "req-1" {
		t.Fatalf("identity = %q %q %q", r.ActorID, r.TenantID, r.RequestID)
	}
	if r.Before != nil {
		t.Fatalf("before = %v, want none", r.Before)
	}
	// The database default (plan) is in the after image, read back from the database.
	if str(r.After["name"]) != "Ada" || str(r.After["plan"]) != "free" || str(r.After["balance"]) != "10" {
		t.Fatalf("after = %v", r.After)
	}
	if r.After["password"] != "[REDACTED]" {
		t.Fatalf("password = %v, want masked", r.After["password"])
	}
	if _, ok := r.After["internal"]; ok {
		t.Fatalf("audit:\"-\" column in after image: %v", r.After)
	}
	if _, ok := r.Diff["internal"]; ok {
		t.Fatalf("audit:\"-\" column in diff: %v", r.Diff)
	}
	if d := r.Diff["name"]; d == nil || d["from"] != nil || d["to"] != "Ada" {
		t.Fatalf("diff = %v", r.Diff)
	}
	if d := r.Diff["password"]; d == nil || d["to"] != "[REDACTED]" {
		t.Fatalf("diff of a redacted column = %v, want a masked change", r.Diff["password"])
	}
	if _, ok := r.Diff["deleted_at"]; ok {
		t.Fatalf("diff holds a column that stayed null: %v", r.Diff)
	}
}

func TestCreateSliceAndBatches(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	items := []Item{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 2}, {SKU: "c", Qty: 3}}
	must(t, e.db.Create(&items).Error)
	batch := make([]Item, 5)
	for i := range batch {
		batch[i] = Item{SKU: fmt.Sprintf("batch-%d", i), Qty: i}
	}
	must(t, e.db.CreateInBatches(&batch, 2).Error)

	rows := e.audit("")
	if len(rows) != 8 {
		t.Fatalf("%d audit rows, want 8: %s", len(rows), dump(rows))
	}
	for i, r := range rows {
		var it Item
		if i < 3 {
			it = items[i]
		} else {
			it = batch[i-3]
		}
		if r.Kind != "insert" || r.ResourceID != fmt.Sprint(it.ID) || str(r.After["sku"]) != it.SKU || str(r.After["qty"]) != fmt.Sprint(it.Qty) {
			t.Fatalf("row %d = %+v, want %+v", i, r, it)
		}
	}
}

func TestUpsert(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	must(t, e.db.Create(&Item{SKU: "old", Qty: 1}).Error)
	before := e.count()

	items := []Item{{SKU: "old", Qty: 5}, {SKU: "new", Qty: 7}}
	must(t, e.db.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "sku"}},
		DoUpdates: clause.AssignmentColumns([]string{"qty"}),
	}).Create(&items).Error)

	rows := e.audit("")[before:]
	if len(rows) != 2 {
		t.Fatalf("%d audit rows, want 2: %s", len(rows), dump(rows))
	}
	byKind := map[string]auditRow{}
	for _, r := range rows {
		byKind[r.Kind] = r
	}
	up, in := byKind["update"], byKind["insert"]
	if str(up.Before["qty"]) != "1" || str(up.After["qty"]) != "5" || str(up.After["sku"]) != "old" {
		t.Fatalf("update = %+v", up)
	}
	wantDiff(t, up.Diff, map[string][2]any{"qty": {1, 5}})
	if in.Before != nil || str(in.After["sku"]) != "new" || str(in.After["qty"]) != "7" {
		t.Fatalf("insert = %+v", in)
	}

	// DO NOTHING: the existing row is left alone and not recorded; the new one is an insert.
	n := e.count()
	must(t, e.db.Clauses(clause.OnConflict{DoNothing: true}).Create(&[]Item{{SKU: "old", Qty: 99}, {SKU: "third", Qty: 3}}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 1 || rows[0].Kind != "insert" || str(rows[0].After["sku"]) != "third" {
		t.Fatalf("after DO NOTHING: %s", dump(rows))
	}

	// UpdateAll on the primary key (what Save of a slice does).
	var old Item
	must(t, e.db.Where("sku = ?", "old").First(&old).Error)
	n = e.count()
	old.Qty = 6
	must(t, e.db.Save(&[]Item{old}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 1 || rows[0].Kind != "update" || str(rows[0].Before["qty"]) != "5" || str(rows[0].After["qty"]) != "6" {
		t.Fatalf("after Save of a slice: %s", dump(rows))
	}
}

func TestAssociations(t *testing.T) {
	e := newEnv(t, envConfig{}, &Customer{}, &Order{})
	c := Customer{Name: "Ada", Orders: []Order{{Item: "book", Qty: 1}, {Item: "pen", Qty: 2}}}
	must(t, e.db.Create(&c).Error)

	rows := e.audit("")
	if len(rows) != 3 {
		t.Fatalf("%d audit rows, want 3: %s", len(rows), dump(rows))
	}
	if rows[0].ResourceType != "customers" || rows[0].Kind != "insert" {
		t.Fatalf("first = %+v, want the parent", rows[0])
	}
	for i, o := range c.Orders {
		r := rows[i+1]
		if r.ResourceType != "orders" || r.Kind != "insert" || r.ResourceID != fmt.Sprint(o.ID) ||
			str(r.After["customer_id"]) != fmt.Sprint(c.ID) || str(r.After["item"]) != o.Item {
			t.Fatalf("child %d = %+v", i, r)
		}
	}

	// Saving the parent again with a new child: the new child is an insert; the unchanged ones
	// (ON CONFLICT ... DO UPDATE SET customer_id) change nothing and are not recorded.
	n := e.count()
	c.Orders = append(c.Orders, Order{Item: "ink", Qty: 3})
	c.Name = "Ada L."
	must(t, e.db.Save(&c).Error)
	rows = e.audit("")[n:]
	if len(rows) != 2 || rows[0].ResourceType != "customers" || rows[0].Kind != "update" ||
		rows[1].ResourceType != "orders" || rows[1].Kind != "insert" || str(rows[1].After["item"]) != "ink" {
		t.Fatalf("after Save with a new child: %s", dump(rows))
	}
}

func TestSaveCreatesWhenKeyIsZeroOrMissing(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	a := Item{SKU: "a", Qty: 1}
	must(t, e.db.Save(&a).Error) // zero key: an INSERT
	b := Item{ID: 500, SKU: "b", Qty: 2}
	must(t, e.db.Save(&b).Error) // key not in the table: UPDATE of nothing, then an upsert
	rows := e.audit("")
	if len(rows) != 2 || rows[0].Kind != "insert" || rows[1].Kind != "insert" || rows[1].ResourceID != "500" {
		t.Fatalf("rows: %s", dump(rows))
	}
}

var _ = gorm.ErrRecordNotFound

// Student and Course are joined many-to-many.
type Student struct {
	ID      uint `gorm:"primaryKey"`
	Name    string
	Courses []Course `gorm:"many2many:student_courses"`
}

// Course is a student's course.
type Course struct {
	ID    uint `gorm:"primaryKey"`
	Title string
}

func TestManyToManyJoinRows(t *testing.T) {
	e := newEnv(t, envConfig{}, &Student{}, &Course{})
	s := Student{Name: "Ada", Courses: []Course{{Title: "Logic"}, {Title: "Engines"}}}
	must(t, e.db.Create(&s).Error)
	rows := e.audit("")
	var got []string
	for _, r := range rows {
		got = append(got, r.Kind+" "+r.ResourceType+" "+r.ResourceID)
	}
	want := []string{
		fmt.Sprintf("insert students %d", s.ID),
		fmt.Sprintf("insert courses %d", s.Courses[0].ID),
		fmt.Sprintf("insert courses %d", s.Courses[1].ID),
		fmt.Sprintf(`insert student_courses {"course_id":%d,"student_id":%d}`, s.Courses[0].ID, s.ID),
		fmt.Sprintf(`insert student_courses {"course_id":%d,"student_id":%d}`, s.Courses[1].ID, s.ID),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("recorded\n  %v\nwant\n  %v", got, want)
	}
	// Removing an association deletes a join row.
	n := e.count()
	must(t, e.db.Model(&s).Association("Courses").Delete(&s.Courses[0]))
	rows = e.audit("")[n:]
	if len(rows) != 1 || rows[0].Kind != "delete" || rows[0].ResourceType != "student_courses" {
		t.Fatalf("after removing an association: %s", dump(rows))
	}
}

// TestUpsertOnConstraint names the arbiter by constraint: the plugin resolves its columns from
// the catalog, so the row the upsert updated keeps its before image.
func TestUpsertOnConstraint(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	must(t, e.db.Exec(`ALTER TABLE items ADD CONSTRAINT items_sku_key UNIQUE (sku)`).Error)
	must(t, e.db.Create(&Item{SKU: "old", Qty: 1}).Error)
	n := e.count()

	must(t, e.db.Clauses(clause.OnConflict{
		OnConstraint: "items_sku_key",
		DoUpdates:    clause.AssignmentColumns([]string{"qty"}),
	}).Create(&[]Item{{SKU: "old", Qty: 5}, {SKU: "new", Qty: 7}}).Error)

	rows := e.audit("")[n:]
	if len(rows) != 2 {
		t.Fatalf("%d audit rows, want 2: %s", len(rows), dump(rows))
	}
	byKind := map[string]auditRow{}
	for _, r := range rows {
		byKind[r.Kind] = r
	}
	up, in := byKind["update"], byKind["insert"]
	if up.Metadata["before_unknown"] != nil || str(up.Before["qty"]) != "1" || str(up.Before["sku"]) != "old" ||
		str(up.After["qty"]) != "5" || up.Severity == "warning" {
		t.Fatalf("update = %+v", up)
	}
	wantDiff(t, up.Diff, map[string][2]any{"qty": {1, 5}})
	if in.Before != nil || str(in.After["sku"]) != "new" || str(in.After["qty"]) != "7" {
		t.Fatalf("insert = %+v", in)
	}
	// The same through a schema-qualified table name.
	n = e.count()
	must(t, e.db.Table(e.pg.Schema+".items").Clauses(clause.OnConflict{
		OnConstraint: "items_sku_key",
		DoUpdates:    clause.AssignmentColumns([]string{"qty"}),
	}).Create(&Item{SKU: "old", Qty: 6}).Error)
	if rows := e.audit("")[n:]; len(rows) != 1 || rows[0].Kind != "update" || str(rows[0].Before["qty"]) != "5" {
		t.Fatalf("qualified table: %s", dump(rows))
	}
	if strings.Contains(e.logs.String(), "conflict target") {
		t.Fatalf("warning for a constraint that exists: %s", e.logs.String())
	}

	// A target the plugin cannot resolve is still captured, flagged, with a warning logged.
	must(t, e.db.Exec(`CREATE UNIQUE INDEX items_lower_sku ON items (lower(sku))`).Error)
	n = e.count()
	must(t, e.db.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "lower(sku)", Raw: true}},
		DoUpdates: clause.AssignmentColumns([]string{"qty"}),
	}).Create(&Item{SKU: "OLD", Qty: 9}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 1 || rows[0].Kind != "update" || rows[0].Metadata["before_unknown"] != true {
		t.Fatalf("unresolved target: %s", dump(rows))
	}
	if !strings.Contains(e.logs.String(), "conflict target") {
		t.Fatalf("no warning about the unresolved target; log: %s", e.logs.String())
	}
}

// TestUpsertApplicationKeys covers upserts of models whose keys the application chooses: no
// database default, so the after images and the insert/update distinction come from the
// INSERT's own RETURNING (with xmax = 0), not from a read afterwards.
func TestUpsertApplicationKeys(t *testing.T) {
	e := newEnv(t, envConfig{}, &Device{}, &Setting{}, &Membership{})
	ctx := identity()
	d1 := Device{ID: uuid.New(), Label: "phone"}
	must(t, e.db.Create(&d1).Error)
	must(t, e.db.Create(&Setting{Key: "theme", Value: "dark"}).Error)
	must(t, e.db.Create(&Membership{TeamID: "t1", UserID: 1, Role: "member"}).Error)

	// kinds checks the records made since n: one per resource id, of the given kind.
	since := func(n int) map[string]auditRow {
		t.Helper()
		got := map[string]auditRow{}
		for _, r := range e.audit("")[n:] {
			if _, dup := got[r.ResourceID]; dup {
				t.Fatalf("two records for %s", r.ResourceID)
			}
			got[r.ResourceID] = r
		}
		return got
	}

	t.Run("DoUpdates", func(t *testing.T) {
		n := e.count()
		d2 := Device{ID: uuid.New(), Label: "laptop"}
		must(t, e.db.WithContext(ctx).Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "id"}},
			DoUpdates: clause.AssignmentColumns([]string{"label"}),
		}).Create(&[]Device{{ID: d1.ID, Label: "tablet"}, d2}).Error)
		got := since(n)
		up, in := got[d1.ID.String()], got[d2.ID.String()]
		if len(got) != 2 || up.Kind != "update" || str(up.Before["label"]) != "phone" || str(up.After["label"]) != "tablet" ||
			up.Metadata != nil || up.ActorID != "alice" {
			t.Fatalf("devices: %s", dump(e.audit("")[n:]))
		}
		wantDiff(t, up.Diff, map[string][2]any{"label": {"phone", "tablet"}})
		if in.Kind != "insert" || in.Before != nil || str(in.After["id"]) != d2.ID.String() || str(in.After["label"]) != "laptop" {
			t.Fatalf("insert = %+v", in)
		}
		wantDiff(t, in.Diff, map[string][2]any{"id": {nil, d2.ID.String()}, "label": {nil, "laptop"}})

		// A composite key as the conflict target.
		n = e.count()
		must(t, e.db.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "team_id"}, {Name: "user_id"}},
			DoUpdates: clause.AssignmentColumns([]string{"role"}),
		}).Create(&[]Membership{{TeamID: "t1", UserID: 1, Role: "admin"}, {TeamID: "t1", UserID: 2, Role: "guest"}}).Error)
		got = since(n)
		up, in = got[`{"team_id":"t1","user_id":1}`], got[`{"team_id":"t1","user_id":2}`]
		if len(got) != 2 || up.Kind != "update" || str(up.Before["role"]) != "member" || str(up.After["role"]) != "admin" {
			t.Fatalf("memberships: %s", dump(e.audit("")[n:]))
		}
		wantDiff(t, up.Diff, map[string][2]any{"role": {"member", "admin"}})
		if in.Kind != "insert" || in.Before != nil || str(in.After["role"]) != "guest" || str(in.After["user_id"]) != "2" {
			t.Fatalf("insert = %+v", in)
		}
	})

	t.Run("DoNothing", func(t *testing.T) {
		n := e.count()
		must(t, e.db.Clauses(clause.OnConflict{DoNothing: true}).
			Create(&[]Setting{{Key: "theme", Value: "light"}, {Key: "lang", Value: "en"}}).Error)
		got := since(n)
		if len(got) != 1 || got["lang"].Kind != "insert" || got["lang"].Before != nil || str(got["lang"].After["value"]) != "en" {
			t.Fatalf("settings: %s", dump(e.audit("")[n:]))
		}
		var s Setting
		must(t, e.db.First(&s, "key = ?", "theme").Error)
		if s.Value != "dark" {
			t.Fatalf("theme = %q, want the row untouched", s.Value)
		}

		n = e.count()
		must(t, e.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "team_id"}, {Name: "user_id"}}, DoNothing: true}).
			Create(&[]Membership{{TeamID: "t1", UserID: 1, Role: "owner"}, {TeamID: "t2", UserID: 1, Role: "member"}}).Error)
		got = since(n)
		if r := got[`{"team_id":"t2","user_id":1}`]; len(got) != 1 || r.Kind != "insert" || str(r.After["role"]) != "member" {
			t.Fatalf("memberships: %s", dump(e.audit("")[n:]))
		}
	})

	t.Run("SaveSlice", func(t *testing.T) {
		n := e.count()
		d3 := Device{ID: uuid.New(), Label: "watch"}
		must(t, e.db.Save(&[]Device{{ID: d1.ID, Label: "desktop"}, d3}).Error)
		got := since(n)
		up, in := got[d1.ID.String()], got[d3.ID.String()]
		if len(got) != 2 || up.Kind != "update" || str(up.Before["label"]) != "tablet" || str(up.After["label"]) != "desktop" {
			t.Fatalf("devices: %s", dump(e.audit("")[n:]))
		}
		wantDiff(t, up.Diff, map[string][2]any{"label": {"tablet", "desktop"}})
		if in.Kind != "insert" || in.Before != nil || str(in.After["label"]) != "watch" {
			t.Fatalf("insert = %+v", in)
		}

		n = e.count()
		must(t, e.db.Save(&[]Setting{{Key: "theme", Value: "light"}, {Key: "tz", Value: "UTC"}}).Error)
		got = since(n)
		if len(got) != 2 || got["theme"].Kind != "update" || str(got["theme"].Before["value"]) != "dark" ||
			str(got["theme"].After["value"]) != "light" || got["tz"].Kind != "insert" || str(got["tz"].After["value"]) != "UTC" {
			t.Fatalf("settings: %s", dump(e.audit("")[n:]))
		}
		wantDiff(t, got["theme"].Diff, map[string][2]any{"value": {"dark", "light"}})

		n = e.count()
		must(t, e.db.Save(&[]Membership{{TeamID: "t1", UserID: 2, Role: "member"}, {TeamID: "t3", UserID: 7, Role: "owner"}}).Error)
		got = since(n)
		up, in = got[`{"team_id":"t1","user_id":2}`], got[`{"team_id":"t3","user_id":7}`]
		if len(got) != 2 || up.Kind != "update" || str(up.Before["role"]) != "guest" || str(up.After["role"]) != "member" ||
			in.Kind != "insert" || str(in.After["role"]) != "owner" {
			t.Fatalf("memberships: %s", dump(e.audit("")[n:]))
		}
		wantDiff(t, up.Diff, map[string][2]any{"role": {"guest", "member"}})
	})
}
