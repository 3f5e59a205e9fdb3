package gormaudit_test

import (
	"strings"
	"testing"

	"github.com/auditkit/auditkit/gormaudit"
)

// db.Table("tr_items") with a map runs without a model in GORM; Options.Models names the model
// of the table before the plugin has seen any write through it.
func TestTableWritesRecordedWithTheListedModel(t *testing.T) {
	e := newEnv(t, envConfig{opts: gormaudit.Options{Models: []any{&TrItem{}}}}, trModels...)
	must(t, e.db.Exec(`INSERT INTO tr_owners (name) VALUES ('o')`).Error)
	must(t, e.db.Exec(`INSERT INTO tr_items (owner_id, name, qty, note) VALUES (1, 'a', 1, 'n'), (1, 'b', 2, 'n')`).Error)
	res := e.db.Table("tr_items").Where("qty > ?", 0).Updates(map[string]any{"qty": 9})
	must(t, res.Error)
	if res.RowsAffected != 2 {
		t.Fatalf("RowsAffected = %d", res.RowsAffected)
	}
	rows := e.audit("kind = 'update'")
	if len(rows) != 2 {
		t.Fatalf("%d update records:%s", len(rows), dump(rows))
	}
	for _, r := range rows {
		if r.ResourceType != "tr_items" || str(r.Before["qty"]) == "9" || str(r.After["qty"]) != "9" || r.Before["note"] != nil {
			t.Errorf("record:%s", dump([]auditRow{r}))
		}
	}
	// A table that is not a known model's stays unrecorded, with a warning.
	must(t, e.db.Exec(`CREATE TABLE loose (id int primary key, v int)`).Error)
	must(t, e.db.Table("loose").Create(map[string]any{"id": 1, "v": 1}).Error)
	if n := len(e.audit("resource_type = 'loose'")); n != 0 {
		t.Errorf("%d records of a table without a model", n)
	}
	if !strings.Contains(e.logs.String(), "without a model") {
		t.Errorf("no warning: %s", e.logs.String())
	}
}
