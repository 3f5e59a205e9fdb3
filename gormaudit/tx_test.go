package gormaudit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
)

var errAbort = errors.New("abort")

// txCases run against a plain pool and in PrepareStmt mode.
func txConfigs() map[string]envConfig {
	return map[string]envConfig{
		"plain":       {},
		"prepared":    {gorm: gorm.Config{PrepareStmt: true}},
		"skipDefault": {gorm: gorm.Config{SkipDefaultTransaction: true}},
	}
}

func TestTransactionCommitAndRollback(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg, &Item{})

			// Commit: delivered after COMMIT, in statement order, not before.
			err := e.db.Transaction(func(tx *gorm.DB) error {
				a := Item{SKU: "a", Qty: 1}
				if err := tx.Create(&a).Error; err != nil {
					return err
				}
				if err := tx.Model(&a).Update("qty", 2).Error; err != nil {
					return err
				}
				if n := e.count(); n != 0 {
					t.Errorf("%d audit rows stored before the commit", n)
				}
				return tx.Create(&Item{SKU: "b", Qty: 3}).Error
			})
			must(t, err)
			rows := e.audit("")
			if len(rows) != 3 || rows[0].Kind != "insert" || rows[1].Kind != "update" || rows[2].Kind != "insert" ||
				str(rows[2].After["sku"]) != "b" {
				t.Fatalf("after commit: %s", dump(rows))
			}

			// An error rolls back: nothing is recorded.
			err = e.db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Create(&Item{SKU: "c"}).Error; err != nil {
					return err
				}
				if err := tx.Model(&Item{}).Where("sku = ?", "a").Update("qty", 9).Error; err != nil {
					return err
				}
				return errAbort
			})
			if !errors.Is(err, errAbort) {
				t.Fatal(err)
			}

			// A panic rolls back too.
			func() {
				defer func() {
					if recover() == nil {
						t.Error("no panic")
					}
				}()
				_ = e.db.Transaction(func(tx *gorm.DB) error {
					if err := tx.Create(&Item{SKU: "d"}).Error; err != nil {
						return err
					}
					panic("boom")
				})
			}()

			// Manual Begin ... Rollback and Begin ... Commit.
			tx := e.db.Begin()
			must(t, tx.Create(&Item{SKU: "e"}).Error)
			must(t, tx.Rollback().Error)
			tx = e.db.Begin()
			must(t, tx.Create(&Item{SKU: "f"}).Error)
			must(t, tx.Where("sku = ?", "b").Delete(&Item{}).Error)
			must(t, tx.Commit().Error)

			// A statement failing in GORM's own transaction records nothing.
			if err := e.db.Create(&Item{SKU: "a"}).Error; err == nil {
				t.Fatal("duplicate sku accepted")
			}

			rows = e.audit("")[3:]
			if len(rows) != 2 || str(rows[0].After["sku"]) != "f" || rows[1].Kind != "delete" || str(rows[1].Before["sku"]) != "b" {
				t.Fatalf("after rollbacks and manual transactions: %s", dump(rows))
			}
			var stored int64
			must(t, e.db.Model(&Item{}).Count(&stored).Error)
			if stored != 2 {
				t.Fatalf("%d items stored, want 2 (a, f)", stored)
			}
		})
	}
}

func TestNestedSavepoints(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg, &Item{})
			err := e.db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Create(&Item{SKU: "outer-1"}).Error; err != nil {
					return err
				}
				// A nested block that fails: only its own records go.
				if err := tx.Transaction(func(tx2 *gorm.DB) error {
					if err := tx2.Create(&Item{SKU: "inner-failed"}).Error; err != nil {
						return err
					}
					// Deeper, succeeding, then undone with its parent.
					if err := tx2.Transaction(func(tx3 *gorm.DB) error {
						return tx3.Create(&Item{SKU: "deep-undone"}).Error
					}); err != nil {
						return err
					}
					return errAbort
				}); !errors.Is(err, errAbort) {
					return fmt.Errorf("inner: %v", err)
				}
				// A nested block that succeeds stays.
				if err := tx.Transaction(func(tx2 *gorm.DB) error {
					return tx2.Create(&Item{SKU: "inner-ok"}).Error
				}); err != nil {
					return err
				}
				// A nested block that panics is rolled back to its savepoint.
				func() {
					defer func() { _ = recover() }()
					_ = tx.Transaction(func(tx2 *gorm.DB) error {
						if err := tx2.Create(&Item{SKU: "inner-panic"}).Error; err != nil {
							return err
						}
						panic("boom")
					})
				}()
				// Savepoints issued by the application itself.
				tx.SavePoint("mine")
				if err := tx.Create(&Item{SKU: "own-savepoint"}).Error; err != nil {
					return err
				}
				tx.RollbackTo("mine")
				return tx.Create(&Item{SKU: "outer-2"}).Error
			})
			must(t, err)
			var got []string
			for _, r := range e.audit("") {
				got = append(got, str(r.After["sku"]))
			}
			if strings.Join(got, ",") != "outer-1,inner-ok,outer-2" {
				t.Fatalf("recorded %v", got)
			}
			var stored []string
			must(t, e.db.Model(&Item{}).Order("id").Pluck("sku", &stored).Error)
			if strings.Join(stored, ",") != "outer-1,inner-ok,outer-2" {
				t.Fatalf("stored %v", stored)
			}
		})
	}
}

// Code has a unique constraint checked at COMMIT.
type Code struct {
	ID   uint `gorm:"primaryKey"`
	Code string
}

func TestFailedCommitDropsRecords(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg)
			must(t, e.db.Exec(`CREATE TABLE codes (id serial PRIMARY KEY, code text,
				CONSTRAINT codes_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED)`).Error)
			err := e.db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Create(&Code{Code: "x"}).Error; err != nil {
					return err
				}
				return tx.Create(&Code{Code: "x"}).Error // accepted now, refused at COMMIT
			})
			if err == nil {
				t.Fatal("commit succeeded")
			}
			if n := e.count(); n != 0 {
				t.Fatalf("%d audit rows for a transaction whose COMMIT failed", n)
			}
		})
	}
}

func TestCollectorJoinsRequest(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	col := core.NewCollector()
	ctx := core.NewContext(identity(), col)

	must(t, e.db.WithContext(ctx).Create(&Item{SKU: "a"}).Error)
	must(t, e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if col.Len() != 1 {
			t.Errorf("collector holds %d records inside the transaction, want 1 (from before it)", col.Len())
		}
		return tx.Model(&Item{}).Where("sku = ?", "a").Update("qty", 5).Error
	}))
	_ = e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&Item{SKU: "rolled-back"}).Error; err != nil {
			return err
		}
		return errAbort
	})
	recs := col.Records()
	if len(recs) != 2 || recs[0].Kind != core.KindInsert || recs[1].Kind != core.KindUpdate || recs[1].Before["qty"] != int64(0) {
		t.Fatalf("collector: %+v", recs)
	}
	// The request's records are the middleware's to stamp and write: none went to the Writer.
	if n := e.count(); n != 0 {
		t.Fatalf("%d records written directly", n)
	}
}

func TestInTransactionMode(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			cfg.opts = gormaudit.Options{InTransaction: true}
			e := newEnv(t, cfg, &Item{})
			ctx := identity()
			must(t, e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				a := Item{SKU: "a", Qty: 1}
				if err := tx.Create(&a).Error; err != nil {
					return err
				}
				if err := tx.Transaction(func(tx2 *gorm.DB) error {
					if err := tx2.Create(&Item{SKU: "undone"}).Error; err != nil {
						return err
					}
					return errAbort
				}); !errors.Is(err, errAbort) {
					return err
				}
				return tx.Model(&a).Update("qty", 2).Error
			}))
			_ = e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				if err := tx.Create(&Item{SKU: "rolled-back"}).Error; err != nil {
					return err
				}
				return errAbort
			})
			// One statement on its own (its own transaction: GORM's or the plugin's).
			must(t, e.db.WithContext(ctx).Where("sku = ?", "a").Delete(&Item{}).Error)

			// The rows are there without any Writer.
			rows := e.audit("")
			if len(rows) != 3 || rows[0].Kind != "insert" || rows[1].Kind != "update" || rows[2].Kind != "delete" {
				t.Fatalf("rows: %s", dump(rows))
			}
			for _, r := range rows {
				if r.ActorID != "alice" || r.TenantID != "t-1" || r.RequestID != "req-1" {
					t.Fatalf("identity of %+v", r)
				}
			}
			if s := e.w.Stats(); s.Enqueued != 0 {
				t.Fatalf("the Writer got %d records", s.Enqueued)
			}
		})
	}
}

func TestInTransactionFailureRollsBackTheChange(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			cfg.opts = gormaudit.Options{InTransaction: true, Schema: "no_such_schema"}
			e := newEnv(t, cfg, &Item{})
			err := e.db.Create(&Item{SKU: "a"}).Error
			if err == nil || !strings.Contains(err.Error(), "audit") {
				t.Fatalf("err = %v, want the audit insert's failure", err)
			}
			err = e.db.Transaction(func(tx *gorm.DB) error { return tx.Create(&Item{SKU: "b"}).Error })
			if err == nil {
				t.Fatal("a transaction committed without its audit rows")
			}
			var n int64
			must(t, e.db.Model(&Item{}).Count(&n).Error)
			if n != 0 {
				t.Fatalf("%d items stored without audit rows", n)
			}
		})
	}
}

func TestForeignTransactionWarns(t *testing.T) {
	e := newEnv(t, envConfig{}, &Item{})
	// db.Connection pins a *sql.Conn; a transaction begun on it is not the plugin's.
	must(t, e.db.Connection(func(tx *gorm.DB) error {
		return tx.Transaction(func(tx2 *gorm.DB) error { return tx2.Create(&Item{SKU: "a"}).Error })
	}))
	if n := e.count(); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	if !strings.Contains(e.logs.String(), "outside the plugin's connection pool") {
		t.Fatalf("no warning; logs:\n%s", e.logs.String())
	}
}

var _ = context.Background

func TestWithoutAssociationCallbacks(t *testing.T) {
	// Some applications remove GORM's association saving; the after callbacks then sit before
	// the model hooks, still inside the transaction.
	e := newEnv(t, envConfig{prepare: func(db *gorm.DB) {
		must(t, db.Callback().Create().Remove("gorm:save_after_associations"))
		must(t, db.Callback().Update().Remove("gorm:save_after_associations"))
	}}, &Item{})
	it := Item{SKU: "a", Qty: 1}
	must(t, e.db.Create(&it).Error)
	must(t, e.db.Model(&it).Update("qty", 2).Error)
	rows := e.audit("")
	if len(rows) != 2 || rows[0].Kind != "insert" || rows[1].Kind != "update" || str(rows[1].Before["qty"]) != "1" {
		t.Fatalf("rows: %s", dump(rows))
	}
}

// TestPluginThroughUse installs the plugin the gorm.Plugin way, db.Use(gormaudit.New(opts)),
// without Register: the same capture and the same commit-aware pool.
func TestPluginThroughUse(t *testing.T) {
	e := newEnv(t, envConfig{})
	db, err := gorm.Open(postgres.Open(e.pg.URL), &gorm.Config{Logger: logger.Discard})
	must(t, err)
	if sqlDB, err := db.DB(); err == nil {
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	p := gormaudit.New(gormaudit.Options{Writer: e.w})
	if p.Name() != "gormaudit" {
		t.Fatalf("Name() = %q", p.Name())
	}
	must(t, db.Use(p))
	if !errors.Is(db.Use(gormaudit.New(gormaudit.Options{})), gorm.ErrRegistered) {
		t.Fatal("a second gormaudit plugin was accepted")
	}
	must(t, db.AutoMigrate(&Item{}))

	it := Item{SKU: "a", Qty: 1}
	must(t, db.WithContext(identity()).Create(&it).Error)
	_ = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&it).Update("qty", 5).Error; err != nil {
			return err
		}
		return errAbort
	})
	must(t, db.Transaction(func(tx *gorm.DB) error { return tx.Model(&it).Update("qty", 2).Error }))

	rows := e.audit("")
	if len(rows) != 2 || rows[0].Kind != "insert" || rows[0].ActorID != "alice" || rows[0].ResourceID != fmt.Sprint(it.ID) ||
		rows[1].Kind != "update" || str(rows[1].Before["qty"]) != "1" || str(rows[1].After["qty"]) != "2" {
		t.Fatalf("rows: %s", dump(rows))
	}

	// Invalid options surface from db.Use.
	bad, err := gorm.Open(postgres.Open(e.pg.URL), &gorm.Config{Logger: logger.Discard})
	must(t, err)
	if sqlDB, err := bad.DB(); err == nil {
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	if err := bad.Use(gormaudit.New(gormaudit.Options{MaxRowsPerStatement: -1})); !errors.Is(err, gormaudit.ErrInvalidOptions) {
		t.Fatalf("db.Use with invalid options: %v", err)
	}
}

// TestInTransactionRawSQL: with InTransaction, a raw write outside any transaction runs in one
// the plugin begins, so that the statement and its record commit together or not at all.
func TestInTransactionRawSQL(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			cfg.opts = gormaudit.Options{InTransaction: true, CaptureRawSQL: true}
			e := newEnv(t, cfg, &Item{})
			must(t, e.db.WithContext(identity()).Exec("INSERT INTO items (sku, qty) VALUES (?, ?)", "a", 1).Error)
			if err := e.db.Exec("INSERT INTO items (id, sku) VALUES (1, 'dup'), (1, 'dup')").Error; err == nil {
				t.Fatal("a failing statement succeeded")
			}
			must(t, e.db.Exec("SELECT set_config('app.x', 'y', false)").Error)
			rows := e.audit("")
			if len(rows) != 1 || rows[0].Action != "sql.exec" || rows[0].ActorID != "alice" || str(rows[0].Metadata["rows_affected"]) != "1" {
				t.Fatalf("rows: %s", dump(rows))
			}

			// The audit insert fails: the raw statement is rolled back with it.
			cfg.opts.Schema = "no_such_schema"
			f := newEnv(t, cfg, &Item{})
			if err := f.db.Exec("INSERT INTO items (sku, qty) VALUES (?, ?)", "b", 1).Error; err == nil || !strings.Contains(err.Error(), "audit") {
				t.Fatalf("err = %v, want the audit insert's failure", err)
			}
			var n int64
			must(t, f.db.Model(&Item{}).Count(&n).Error)
			if n != 0 {
				t.Fatalf("%d items stored without their audit row", n)
			}
		})
	}
}
