package gormaudit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/auditkit/auditkit/gormaudit"
)

// seedCustomer creates a customer and returns it with the number of audit rows so far.
func seedCustomer(t *testing.T, e *env, c Customer) (Customer, int) {
	t.Helper()
	must(t, e.db.Create(&c).Error)
	return c, e.count()
}

func TestSaveOfLoadedStruct(t *testing.T) {
	e := newEnv(t, envConfig{opts: optsIgnoreUpdatedAt}, &Customer{})
	c, n := seedCustomer(t, e, Customer{Name: "Ada", Balance: 10})

	var loaded Customer
	must(t, e.db.First(&loaded, c.ID).Error)
	// Another writer changes the row behind the struct's back: the struct is stale, and Save
	// writes every column from it. The before image must be the stored row, not the struct.
	must(t, e.db.Exec("UPDATE customers SET balance = 99 WHERE id = ?", c.ID).Error)
	loaded.Name = "Ada L."
	must(t, e.db.Save(&loaded).Error)

	r := e.audit("")[n]
	if r.Kind != "update" || r.ResourceID != fmt.Sprint(c.ID) {
		t.Fatalf("record = %+v", r)
	}
	if str(r.Before["balance"]) != "99" || str(r.After["balance"]) != "10" {
		t.Fatalf("balance %v -> %v, want 99 -> 10 (the stale struct overwrote it)", r.Before["balance"], r.After["balance"])
	}
	wantDiff(t, r.Diff, map[string][2]any{"name": {"Ada", "Ada L."}, "balance": {99, 10}})
}

var optsIgnoreUpdatedAt = gormaudit.Options{IgnoreFields: []string{"updated_at"}}

func TestUpdateForms(t *testing.T) {
	e := newEnv(t, envConfig{opts: optsIgnoreUpdatedAt}, &Customer{})
	c, _ := seedCustomer(t, e, Customer{Name: "Ada", Email: "a@x", Balance: 10})
	ctx := identity()
	tx := e.db.WithContext(ctx)

	steps := []struct {
		name string
		run  func() error
		want map[string][2]any
	}{
		{"Updates(struct)", func() error { return tx.Model(&c).Updates(Customer{Name: "B", Balance: 11}).Error },
			map[string][2]any{"name": {"Ada", "B"}, "balance": {10, 11}}},
		{"Updates(map)", func() error { return tx.Model(&c).Updates(map[string]any{"email": "b@x", "balance": 0}).Error },
			map[string][2]any{"email": {"a@x", "b@x"}, "balance": {11, 0}}},
		{"Update", func() error { return tx.Model(&c).Update("name", "C").Error },
			map[string][2]any{"name": {"B", "C"}}},
		{"UpdateColumn", func() error { return tx.Model(&c).UpdateColumn("balance", 5).Error },
			map[string][2]any{"balance": {0, 5}}},
		{"UpdateColumns", func() error { return tx.Model(&c).UpdateColumns(map[string]any{"name": "D", "email": "d@x"}).Error },
			map[string][2]any{"name": {"C", "D"}, "email": {"b@x", "d@x"}}},
		{"Select", func() error {
			return tx.Model(&c).Select("name").Updates(Customer{Name: "E", Email: "ignored@x"}).Error
		}, map[string][2]any{"name": {"D", "E"}}},
		{"Omit", func() error {
			return tx.Model(&c).Omit("name").Updates(Customer{Name: "ignored", Email: "e@x"}).Error
		}, map[string][2]any{"email": {"d@x", "e@x"}}},
		{"Expr", func() error { return tx.Model(&c).Update("balance", gorm.Expr("balance * 3 + ?", 1)).Error },
			map[string][2]any{"balance": {5, 16}}},
		{"UpdateColumn Expr", func() error { return tx.Model(&c).UpdateColumn("balance", gorm.Expr("balance - 6")).Error },
			map[string][2]any{"balance": {16, 10}}},
		{"Where + Update", func() error { return tx.Model(&Customer{}).Where("id = ?", c.ID).Update("name", "F").Error },
			map[string][2]any{"name": {"E", "F"}}},
	}
	for _, s := range steps {
		n := e.count()
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		rows := e.audit("")[n:]
		if len(rows) != 1 {
			t.Fatalf("%s: %d audit rows: %s", s.name, len(rows), dump(rows))
		}
		r := rows[0]
		if r.Kind != "update" || r.ResourceID != fmt.Sprint(c.ID) || r.ActorID != "alice" {
			t.Fatalf("%s: record = %+v", s.name, r)
		}
		wantDiff(t, r.Diff, s.want)
		// The images are whole rows read from the database.
		var stored Customer
		must(t, e.db.First(&stored, c.ID).Error)
		if str(r.After["balance"]) != fmt.Sprint(stored.Balance) || str(r.After["name"]) != stored.Name {
			t.Fatalf("%s: after = %v, stored = %+v", s.name, r.After, stored)
		}
		if r.Before["updated_at"] == nil || r.After["updated_at"] == nil {
			t.Fatalf("%s: ignored fields must stay in the images: %v", s.name, r.After)
		}
	}
}

func TestBulkUpdateAndDelete(t *testing.T) {
	e := newEnv(t, envConfig{opts: optsIgnoreUpdatedAt}, &Customer{})
	for i := range 5 {
		must(t, e.db.Create(&Customer{Name: fmt.Sprint("c", i), Plan: "free", Balance: i}).Error)
	}
	must(t, e.db.Create(&Customer{Name: "other", Plan: "pro", Balance: 100}).Error)
	n := e.count()

	must(t, e.db.Model(&Customer{}).Where("plan = ?", "free").Updates(map[string]any{"balance": gorm.Expr("balance + 10")}).Error)
	rows := e.audit("")[n:]
	if len(rows) != 5 {
		t.Fatalf("%d audit rows, want 5: %s", len(rows), dump(rows))
	}
	for i, r := range rows {
		if r.Kind != "update" || str(r.Before["balance"]) != fmt.Sprint(i) || str(r.After["balance"]) != fmt.Sprint(i+10) {
			t.Fatalf("row %d: %+v", i, r)
		}
	}

	// A soft delete by condition: kind delete, with the image, flagged soft.
	n = e.count()
	must(t, e.db.Where("balance >= ?", 13).Delete(&Customer{}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 3 {
		t.Fatalf("%d audit rows, want 3: %s", len(rows), dump(rows))
	}
	for _, r := range rows {
		if r.Kind != "delete" || r.Metadata["soft_delete"] != true || r.Before["deleted_at"] != nil || r.After["deleted_at"] == nil {
			t.Fatalf("soft delete = %+v", r)
		}
		wantDiff(t, r.Diff, map[string][2]any{"deleted_at": {nil, r.After["deleted_at"]}})
	}

	// A hard delete by condition, reaching soft-deleted rows too.
	n = e.count()
	must(t, e.db.Unscoped().Where("plan = ?", "free").Delete(&Customer{}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 5 {
		t.Fatalf("%d audit rows, want 5: %s", len(rows), dump(rows))
	}
	for _, r := range rows {
		if r.Kind != "delete" || r.After != nil || r.Before == nil || r.Metadata != nil {
			t.Fatalf("hard delete = %+v", r)
		}
	}
}

func TestDeletePaths(t *testing.T) {
	e := newEnv(t, envConfig{}, &Customer{})
	c, n := seedCustomer(t, e, Customer{Name: "Ada", Balance: 10})

	must(t, e.db.Delete(&c).Error) // soft
	soft := e.audit("")[n:]
	if len(soft) != 1 || soft[0].Kind != "delete" || soft[0].Metadata["soft_delete"] != true ||
		soft[0].Before["deleted_at"] != nil || soft[0].After["deleted_at"] == nil || str(soft[0].After["name"]) != "Ada" {
		t.Fatalf("soft delete: %s", dump(soft))
	}

	// Restoring a soft-deleted row is an update.
	n = e.count()
	must(t, e.db.Unscoped().Model(&Customer{}).Where("id = ?", c.ID).Update("deleted_at", nil).Error)
	rest := e.audit("")[n:]
	if len(rest) != 1 || rest[0].Kind != "update" || rest[0].Metadata["restored"] != true ||
		rest[0].Before["deleted_at"] == nil || rest[0].After["deleted_at"] != nil {
		t.Fatalf("restore: %s", dump(rest))
	}

	// A restore that also changes the primary key keeps both facts.
	must(t, e.db.Delete(&c).Error)
	n = e.count()
	oldID := c.ID
	must(t, e.db.Unscoped().Model(&Customer{}).Where("id = ?", oldID).
		Updates(map[string]any{"id": oldID + 100, "deleted_at": nil}).Error)
	rest = e.audit("")[n:]
	if len(rest) != 1 || rest[0].Kind != "update" || rest[0].Metadata["restored"] != true ||
		rest[0].Metadata["previous_id"] != fmt.Sprint(oldID) || rest[0].ResourceID != fmt.Sprint(oldID+100) {
		t.Fatalf("restore with a new key: %s", dump(rest))
	}
	c.ID = oldID + 100

	// Unscoped Delete by primary key: hard, the before image comes from RETURNING.
	n = e.count()
	must(t, e.db.Unscoped().Delete(&Customer{}, c.ID).Error)
	hard := e.audit("")[n:]
	if len(hard) != 1 || hard[0].Kind != "delete" || hard[0].After != nil || str(hard[0].Before["name"]) != "Ada" ||
		hard[0].ResourceID != fmt.Sprint(c.ID) || hard[0].Metadata != nil {
		t.Fatalf("hard delete: %s", dump(hard))
	}
	var left int64
	must(t, e.db.Unscoped().Model(&Customer{}).Count(&left).Error)
	if left != 0 {
		t.Fatalf("%d rows left", left)
	}

	// A hard delete of a model without soft delete, by a loaded struct.
	must(t, e.db.AutoMigrate(&Item{}))
	it := Item{SKU: "s", Qty: 1}
	must(t, e.db.Create(&it).Error)
	n = e.count()
	must(t, e.db.Delete(&it).Error)
	rows := e.audit("")[n:]
	if len(rows) != 1 || rows[0].Kind != "delete" || rows[0].ResourceID != fmt.Sprint(it.ID) || str(rows[0].Before["sku"]) != "s" {
		t.Fatalf("delete of an item: %s", dump(rows))
	}

	// A delete with the caller's own RETURNING still records the before image.
	it2 := Item{SKU: "t", Qty: 2}
	must(t, e.db.Create(&it2).Error)
	n = e.count()
	var gone []Item
	must(t, e.db.Clauses(clause.Returning{}).Where("sku = ?", "t").Delete(&gone).Error)
	rows = e.audit("")[n:]
	if len(gone) != 1 || len(rows) != 1 || rows[0].Kind != "delete" || str(rows[0].Before["qty"]) != "2" {
		t.Fatalf("delete with Returning: gone=%v rows=%s", gone, dump(rows))
	}
}

func TestUpdateWithCallersReturning(t *testing.T) {
	e := newEnv(t, envConfig{opts: optsIgnoreUpdatedAt}, &Item{})
	it := Item{SKU: "a", Qty: 1}
	must(t, e.db.Create(&it).Error)
	n := e.count()
	var got Item
	got.ID = it.ID
	must(t, e.db.Model(&got).Clauses(clause.Returning{}).Update("qty", gorm.Expr("qty + 41")).Error)
	if got.Qty != 42 || got.SKU != "a" {
		t.Fatalf("caller's RETURNING scanned %+v", got)
	}
	rows := e.audit("")[n:]
	if len(rows) != 1 {
		t.Fatalf("rows: %s", dump(rows))
	}
	wantDiff(t, rows[0].Diff, map[string][2]any{"qty": {1, 42}})
}

func TestUpdateWithoutConditionIsRefused(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	must(t, e.db.Create(&Item{SKU: "a", Qty: 1}).Error)
	n := e.count()
	err := e.db.Model(&Item{}).Update("qty", 2).Error
	if err == nil {
		t.Fatal("an update without conditions succeeded")
	}
	if got := e.count(); got != n {
		t.Fatalf("%d new audit rows for a refused update", got-n)
	}
	// AllowGlobalUpdate: every row is recorded.
	must(t, e.db.Session(&gorm.Session{AllowGlobalUpdate: true}).Model(&Item{}).Update("qty", 3).Error)
	rows := e.audit("")[n:]
	if len(rows) != 1 || str(rows[0].After["qty"]) != "3" {
		t.Fatalf("rows: %s", dump(rows))
	}
}

func TestBulkCapWritesSummary(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{MaxRowsPerStatement: 3}}, &Item{})
	for i := range 5 {
		must(t, e.db.Create(&Item{SKU: fmt.Sprint("s", i), Qty: i}).Error)
	}
	n := e.count()
	must(t, e.db.Model(&Item{}).Where("qty >= ?", 0).Update("qty", gorm.Expr("qty + 1")).Error)
	rows := e.audit("")[n:]
	if len(rows) != 4 {
		t.Fatalf("%d audit rows, want 3 + summary: %s", len(rows), dump(rows))
	}
	for _, r := range rows[:3] {
		if r.Kind != "update" {
			t.Fatalf("itemised = %+v", r)
		}
	}
	s := rows[3]
	if s.Kind != "custom" || s.Action != "items.bulk_update" || s.ResourceType != "items" {
		t.Fatalf("summary = %+v", s)
	}
	if str(s.Metadata["affected"]) != "5" || str(s.Metadata["itemised"]) != "3" || str(s.Metadata["not_itemised"]) != `["4","5"]` {
		t.Fatalf("summary metadata = %v", s.Metadata)
	}
	if s.Metadata["filter"] != "qty >= $1" || str(s.Metadata["filter_args"]) != "[0]" {
		t.Fatalf("summary filter = %v %v", s.Metadata["filter"], s.Metadata["filter_args"])
	}

	// Deletes and inserts past the cap are summarised too.
	n = e.count()
	must(t, e.db.Where("qty > ?", 0).Delete(&Item{}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 4 || rows[3].Action != "items.bulk_delete" || str(rows[3].Metadata["affected"]) != "5" {
		t.Fatalf("delete: %s", dump(rows))
	}
	n = e.count()
	many := make([]Item, 4)
	for i := range many {
		many[i] = Item{SKU: fmt.Sprint("m", i)}
	}
	must(t, e.db.Create(&many).Error)
	rows = e.audit("")[n:]
	if len(rows) != 4 || rows[3].Action != "items.bulk_insert" || str(rows[3].Metadata["not_itemised"]) != fmt.Sprintf(`["%d"]`, many[3].ID) {
		t.Fatalf("insert: %s", dump(rows))
	}
	if _, ok := rows[3].Metadata["filter"]; ok {
		t.Fatalf("an insert summary has no filter: %v", rows[3].Metadata)
	}
}

// An upsert past the cap is summarised as an upsert, with the rows it inserted and updated.
func TestBulkCapUpsertSummary(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{MaxRowsPerStatement: 2}}, &Item{}, &Device{})
	for i := range 3 {
		must(t, e.db.Create(&Item{SKU: fmt.Sprint("s", i), Qty: i}).Error)
	}
	n := e.count()
	upsert := clause.OnConflict{Columns: []clause.Column{{Name: "sku"}}, DoUpdates: clause.AssignmentColumns([]string{"qty"})}
	must(t, e.db.Clauses(upsert).Create(&[]Item{{SKU: "s0", Qty: 10}, {SKU: "s1", Qty: 11}, {SKU: "s2", Qty: 12},
		{SKU: "n0", Qty: 1}, {SKU: "n1", Qty: 2}}).Error)
	rows := e.audit("")[n:]
	if len(rows) != 3 || rows[0].Kind != "update" || rows[1].Kind != "update" {
		t.Fatalf("rows: %s", dump(rows))
	}
	s := rows[2]
	if s.Kind != "custom" || s.Action != "items.bulk_upsert" || s.Metadata["statement"] != "upsert" ||
		str(s.Metadata["affected"]) != "5" || str(s.Metadata["itemised"]) != "2" ||
		str(s.Metadata["inserted"]) != "2" || str(s.Metadata["updated"]) != "3" {
		t.Fatalf("summary = %+v", s)
	}

	// The same through the INSERT's own RETURNING (keys chosen by the application).
	ids := make([]uuid.UUID, 3)
	for i := range ids {
		ids[i] = uuid.New()
	}
	must(t, e.db.Create(&Device{ID: ids[0], Label: "a"}).Error)
	n = e.count()
	must(t, e.db.Save(&[]Device{{ID: ids[0], Label: "b"}, {ID: ids[1], Label: "c"}, {ID: ids[2], Label: "d"}}).Error)
	rows = e.audit("")[n:]
	if len(rows) != 3 {
		t.Fatalf("rows: %s", dump(rows))
	}
	s = rows[2]
	if s.Action != "devices.bulk_upsert" || str(s.Metadata["affected"]) != "3" ||
		str(s.Metadata["inserted"]) != "2" || str(s.Metadata["updated"]) != "1" {
		t.Fatalf("summary = %+v", s)
	}
}

func TestBulkSummaryMasksSensitiveFilter(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{MaxRowsPerStatement: 1}}, &Customer{})
	for i := range 2 {
		must(t, e.db.Create(&Customer{Name: fmt.Sprint("c", i), Password: "pw"}).Error)
	}
	n := e.count()
	must(t, e.db.Model(&Customer{}).Where("password = ?", "pw").Update("balance", 1).Error)
	rows := e.audit("")[n:]
	s := rows[len(rows)-1]
	if s.Kind != "custom" || str(s.Metadata["filter_args"]) != `["[REDACTED]"]` {
		t.Fatalf("summary = %+v", s.Metadata)
	}
}

var _ = context.Background

func TestGenericsAPI(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	ctx := identity()
	it := Item{SKU: "g", Qty: 1}
	must(t, gorm.G[Item](e.db).Create(ctx, &it))
	if _, err := gorm.G[Item](e.db).Where("id = ?", it.ID).Update(ctx, "qty", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := gorm.G[Item](e.db).Where("id = ?", it.ID).Set(clause.Assignment{Column: clause.Column{Name: "qty"}, Value: 3}).Update(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := gorm.G[Item](e.db).Where("id = ?", it.ID).Delete(ctx); err != nil {
		t.Fatal(err)
	}
	rows := e.audit("")
	if len(rows) != 4 || rows[0].Kind != "insert" || rows[3].Kind != "delete" || rows[0].ActorID != "alice" {
		t.Fatalf("rows: %s", dump(rows))
	}
	wantDiff(t, rows[1].Diff, map[string][2]any{"qty": {1, 2}})
	wantDiff(t, rows[2].Diff, map[string][2]any{"qty": {2, 3}})
}
