package gormaudit_test

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
)

// TestConcurrentChains has many goroutines change the same rows at once, with gorm.Expr
// increments and with Save of a loaded (possibly stale) struct, inside and outside
// transactions, some rolled back. For every row the audit records must form an unbroken chain:
// each before image equals the previous after image, and the last after image is the stored
// row.
func TestConcurrentChains(t *testing.T) {
	configs := map[string]envConfig{
		"default":     {},
		"skipDefault": {gorm: gorm.Config{SkipDefaultTransaction: true}},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg, &Counter{})
			const rowsN, workers, ops = 3, 8, 25
			ids := make([]uint, rowsN)
			for i := range ids {
				c := Counter{Name: fmt.Sprint("counter-", i)}
				must(t, e.db.Create(&c).Error)
				ids[i] = c.ID
			}
			var committed, increments atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range ops {
						id := ids[(w+i)%rowsN]
						var err error
						switch (w + i) % 5 {
						case 0: // expression, no transaction of the application's
							err = e.db.Model(&Counter{}).Where("id = ?", id).UpdateColumn("value", gorm.Expr("value + 1")).Error
						case 1: // expression inside a transaction
							err = e.db.Transaction(func(tx *gorm.DB) error {
								return tx.Model(&Counter{ID: id}).Update("value", gorm.Expr("value + ?", 1)).Error
							})
						case 2: // Save of a loaded struct, stale by the time it is written
							var c Counter
							if err = e.db.First(&c, id).Error; err == nil {
								c.Value += 100
								err = e.db.Save(&c).Error
							}
						case 3: // load and Save inside a transaction
							err = e.db.Transaction(func(tx *gorm.DB) error {
								var c Counter
								if err := tx.First(&c, id).Error; err != nil {
									return err
								}
								c.Value += 1000
								return tx.Save(&c).Error
							})
						case 4: // changes that roll back leave no record
							err = e.db.Transaction(func(tx *gorm.DB) error {
								if err := tx.Model(&Counter{ID: id}).Update("value", gorm.Expr("value + 5")).Error; err != nil {
									return err
								}
								return errAbort
							})
							if errors.Is(err, errAbort) {
								continue
							}
						}
						if err != nil {
							errs <- err
							return
						}
						committed.Add(1)
						if (w+i)%5 < 2 {
							increments.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}

			updates := 0
			for _, id := range ids {
				rows := e.audit("resource_type = 'counters' AND resource_id = $1", fmt.Sprint(id))
				if len(rows) < 2 || rows[0].Kind != "insert" {
					t.Fatalf("counter %d: %s", id, dump(rows))
				}
				for i := 1; i < len(rows); i++ {
					if rows[i].Kind != "update" {
						t.Fatalf("counter %d: record %d is %s", id, i, rows[i].Kind)
					}
					if !reflect.DeepEqual(rows[i].Before, rows[i-1].After) {
						t.Fatalf("counter %d: chain broken at record %d:\n  previous after %v\n  before        %v",
							id, i, rows[i-1].After, rows[i].Before)
					}
					if str(rows[i].Before["value"]) == str(rows[i].After["value"]) {
						t.Fatalf("counter %d: record %d changes nothing: %v", id, i, rows[i].Diff)
					}
				}
				updates += len(rows) - 1
				var stored Counter
				must(t, e.db.First(&stored, id).Error)
				last := rows[len(rows)-1].After
				if str(last["value"]) != fmt.Sprint(stored.Value) || str(last["name"]) != stored.Name {
					t.Fatalf("counter %d: last after %v, stored %+v", id, last, stored)
				}
			}
			// Every increment changed its row and wrote one record; a Save of a stale struct may
			// write back the value the row already has, which changes nothing and writes none.
			if int64(updates) < increments.Load() || int64(updates) > committed.Load() {
				t.Fatalf("%d update records for %d committed changes, %d of them increments",
					updates, committed.Load(), increments.Load())
			}
		})
	}
}

// TestConcurrentUse shares one *gorm.DB between goroutines doing everything at once, some
// with a request collector, for the race detector; every committed change is recorded once.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, envConfig{opts: optsIgnoreUpdatedAt}, &Customer{}, &Order{}, &Item{})
	const workers, ops = 6, 15
	cols := make([]*core.Collector, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := identity()
			if w%2 == 0 {
				cols[w] = core.NewCollector()
				ctx = core.NewContext(ctx, cols[w])
			}
			db := e.db.WithContext(ctx)
			for i := range ops {
				c := Customer{Name: fmt.Sprint("w", w, "-", i), Orders: []Order{{Item: "x", Qty: 1}}}
				err := db.Create(&c).Error
				if err == nil {
					err = db.Transaction(func(tx *gorm.DB) error {
						if err := tx.Model(&c).Update("balance", gorm.Expr("balance + ?", i+1)).Error; err != nil {
							return err
						}
						return tx.Create(&Item{SKU: fmt.Sprint("w", w, "-", i)}).Error
					})
				}
				if err == nil {
					err = db.Delete(&c).Error
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Per iteration: customer insert, order insert, customer update, item insert, soft delete.
	const perIteration = 5
	inCollectors := 0
	for _, c := range cols {
		if c != nil {
			inCollectors += c.Len()
		}
	}
	direct := e.count()
	if inCollectors != (workers/2)*ops*perIteration || direct != (workers-workers/2)*ops*perIteration {
		t.Fatalf("%d records in collectors, %d written; want %d each", inCollectors, direct, workers/2*ops*perIteration)
	}
}
