package gormaudit_test

import (
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// With PrepareStmt, GORM keeps a cache of prepared statements. The plugin's own queries (locking
// reads, reads after the change, constraint lookups, savepoints) and the statements it rewrites
// must not enter it: they would grow it with every IN-list length and evict the application's
// statements.
func TestPreparedStatementCacheHoldsOnlyTheApplicationsStatements(t *testing.T) {
	workload := func(db *gorm.DB) []string {
		must(t, db.AutoMigrate(trModels...))
		trFixture(t, db)
		var it TrItem
		must(t, db.First(&it, 1).Error)
		for n := 1; n <= 8; n++ {
			ids := make([]int64, n)
			for i := range ids {
				ids[i] = int64(i + 1)
			}
			must(t, db.Model(&TrItem{}).Where("id IN ?", ids).Update("qty", n).Error)
			must(t, db.Model(&TrItem{}).Clauses(clause.Returning{}).Where("id IN ?", ids).Update("qty", n+1).Error)
		}
		must(t, db.Clauses(clause.OnConflict{OnConstraint: "uni_tr_items_name", DoUpdates: clause.AssignmentColumns([]string{"qty"})}).
			Create(&TrItem{OwnerID: 1, Name: "b", Qty: 9}).Error)
		must(t, db.Delete(&TrItem{}, 2).Error)
		must(t, db.Transaction(func(tx *gorm.DB) error {
			return tx.Model(&TrItem{}).Clauses(clause.From{Tables: []clause.Table{{Name: "tr_owners"}}}).
				Where("tr_owners.id = tr_items.owner_id").Update("qty", 5).Error
		}))
		keys := db.ConnPool.(*gorm.PreparedStmtDB).Stmts.Keys()
		slices.Sort(keys)
		return keys
	}
	bare := workload(openBare(t, gorm.Config{PrepareStmt: true}))
	e := newEnv(t, envConfig{gorm: gorm.Config{PrepareStmt: true}})
	audited := workload(e.db)
	for _, k := range audited {
		if !slices.Contains(bare, k) {
			t.Errorf("the plugin prepared %q in the application's statement cache", k)
		}
	}
	if len(audited) > len(bare) {
		t.Errorf("cache holds %d statements, %d without the plugin", len(audited), len(bare))
	}
	for _, k := range audited {
		if strings.Contains(k, "FOR NO KEY UPDATE") || strings.Contains(k, "SAVEPOINT") {
			t.Errorf("cache holds the plugin's %q", k)
		}
	}
	if n := e.count(); n < 20 {
		t.Fatalf("%d audit records: the workload was not recorded", n)
	}
}
