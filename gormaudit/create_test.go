package gormaudit_test

import (
	"fmt"
	"strings"
	"testing"

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
