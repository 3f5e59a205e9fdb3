package gormaudit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Stock is changed by bulk statements over overlapping sets of rows in TestBulkChains.
type Stock struct {
	ID        uint `gorm:"primaryKey;autoIncrement:false"`
	Name      string
	Grp       int
	Qty       int
	Label     string
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// The rows of TestBulkChains: stockRows of them, in stockGroups groups by id, changed in
// ranges of stockSpan consecutive ids that overlap each other and the groups.
const stockRows, stockGroups, stockSpan = 20, 4, 8

// bulkStep is one committed statement of TestBulkChains: what it does to each row, the rows it
// was meant to change and how many it changed.
type bulkStep struct {
	kind     changeKind
	ids      []int
	affected int64
}

// changeKind is what a statement of TestBulkChains does to a row.
type changeKind int

const (
	increment  changeKind = iota // qty + 1, restoring a soft-deleted row or not
	softDelete                   // sets deleted_at
	hardDelete
	reinsert // the row hard-deleted before in the same transaction, with qty + 1
	kinds
)

// changeCounts counts the changes of one row by kind.
type changeCounts [kinds]int

// TestBulkChains has goroutines run bulk updates, soft deletes with restores, and hard deletes
// with re-inserts over overlapping sets of the same rows, inside and outside transactions, some
// rolled back in whole or by savepoint. Every committed change of a row raises its qty by one,
// except a delete, which raises nothing and is followed in its transaction by a restore or
// re-insert that does; so qty (with the deleted state between) orders each row's records in
// commit order without relying on occurred_at, a clock reading stored to the microsecond. For
// every row the records must then form an unbroken chain from the row as created to the row as
// stored, with exactly one record per committed change of each kind.
func TestBulkChains(t *testing.T) {
	configs := map[string]envConfig{
		"default":     {},
		"skipDefault": {gorm: gorm.Config{SkipDefaultTransaction: true}},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cfg, &Stock{})
			// From PostgreSQL 18 on, the plugin takes no lock of its own: the statements lock
			// their rows in the order GORM's alone do, and transactions can deadlock as they do
			// without the plugin. An operation that deadlocked was rolled back whole, and runs
			// again, as an application runs it; before 18, none may deadlock.
			old := returnsOld(t, e)
			var deadlocks atomic.Int64
			const workers, ops = 6, 21
			initial := make([]Stock, stockRows)
			for i := range initial {
				initial[i] = Stock{ID: uint(i + 1), Name: fmt.Sprint("stock-", i+1), Grp: (i + 1) % stockGroups}
			}
			must(t, e.db.Create(&initial).Error)
			before := e.stockImages()

			steps := make([][]bulkStep, workers)
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range ops {
						lo := 1 + (w*7+i*3)%(stockRows-stockSpan+1)
						hi := lo + stockSpan - 1
						g := (w + i) % stockGroups
						label := fmt.Sprint("w", w, "-", i)
						done, err := bulkOp(e.db, (w+i)%7, lo, hi, g, label)
						for retry := 0; err != nil && old && isDeadlock(err) && retry < 100; retry++ {
							deadlocks.Add(1)
							done, err = bulkOp(e.db, (w+i)%7, lo, hi, g, label)
						}
						if err != nil {
							errs <- fmt.Errorf("worker %d op %d: %w", w, i, err)
							return
						}
						steps[w] = append(steps[w], done...)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if old {
				t.Logf("%d operations deadlocked and ran again", deadlocks.Load())
			}

			// Each committed statement changed every row of its set once: the re-inserts' table
			// lock keeps any statement from skipping a row.
			want := map[int]*changeCounts{}
			for id := 1; id <= stockRows; id++ {
				want[id] = &changeCounts{}
			}
			var total changeCounts
			for _, ws := range steps {
				for _, s := range ws {
					if s.affected != int64(len(s.ids)) {
						t.Fatalf("a statement meant for rows %v changed %d", s.ids, s.affected)
					}
					for _, id := range s.ids {
						want[id][s.kind]++
						total[s.kind]++
					}
				}
			}
			for k, n := range total {
				if n == 0 {
					t.Fatalf("no change of kind %d committed: %v", k, total)
				}
			}

			after := e.stockImages()
			for id := 1; id <= stockRows; id++ {
				rows := e.audit("resource_type = 'stocks' AND resource_id = $1", strconv.Itoa(id))
				slices.SortStableFunc(rows, func(a, b auditRow) int { return stockRank(t, a) - stockRank(t, b) })
				if len(rows) == 0 || rows[0].Kind != "insert" || !reflect.DeepEqual(rows[0].After, before[id]) {
					t.Fatalf("stock %d: first record is not the row as created %v:%s", id, before[id], dump(rows))
				}
				var got changeCounts
				for k := 1; k < len(rows); k++ {
					prev, r := rows[k-1], rows[k]
					if stockRank(t, prev) >= stockRank(t, r) {
						t.Fatalf("stock %d: records %d and %d leave the same state:%s", id, k-1, k, dump(rows[k-1:k+1]))
					}
					if !reflect.DeepEqual(r.Before, prev.After) {
						t.Fatalf("stock %d: chain broken at record %d:\n  previous after %v\n  before        %v%s",
							id, k, prev.After, r.Before, dump(rows))
					}
					kind := reinsert
					switch {
					case r.Kind == "update":
						kind = increment
						if restored := r.Before["deleted_at"] != nil; restored != (r.Metadata["restored"] == true) {
							t.Fatalf("stock %d: record %d restores %v, metadata %v", id, k, restored, r.Metadata)
						}
					case r.Kind == "delete" && r.Metadata["soft_delete"] == true && r.After["deleted_at"] != nil:
						kind = softDelete
					case r.Kind == "delete" && r.After == nil:
						kind = hardDelete
					case r.Kind != "insert":
						t.Fatalf("stock %d: unexpected record %d:%s", id, k, dump(rows[k:k+1]))
					}
					if kind == increment || kind == reinsert {
						from := r.Before
						if kind == reinsert {
							from = prev.Before // the image the hard delete removed
						}
						if from == nil || qtyOf(t, r.After) != qtyOf(t, from)+1 {
							t.Fatalf("stock %d: record %d does not add one:%s", id, k, dump(rows[k-1:k+1]))
						}
					}
					got[kind]++
				}
				if last := rows[len(rows)-1].After; !reflect.DeepEqual(last, after[id]) {
					t.Fatalf("stock %d: last after %v, stored %v", id, last, after[id])
				}
				if got != *want[id] {
					t.Fatalf("stock %d: records by kind %v, committed changes %v", id, got, *want[id])
				}
				if rose := qtyOf(t, after[id]) - qtyOf(t, before[id]); rose != got[increment]+got[reinsert] {
					t.Fatalf("stock %d: qty rose by %d, %d increments recorded", id, rose, got[increment]+got[reinsert])
				}
			}
		})
	}
}

// isDeadlock reports whether err is PostgreSQL's deadlock_detected.
func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// bulkOp runs one of the test's operations over rows lo..hi or group g and returns its
// statements if it committed. Before PostgreSQL 18, a transaction's first statement locks every
// row the transaction goes on to change, in primary key order like every other statement (the
// plugin's read), so that transactions do not deadlock on each other.
func bulkOp(db *gorm.DB, op, lo, hi, g int, label string) ([]bulkStep, error) {
	inRange := make([]int, 0, hi-lo+1)
	var inGroup, both []int
	for id := lo; id <= hi; id++ {
		inRange = append(inRange, id)
	}
	for id := 1; id <= stockRows; id++ {
		if id%stockGroups == g {
			inGroup = append(inGroup, id)
			if id >= lo && id <= hi {
				both = append(both, id)
			}
		}
	}
	rng := func(tx *gorm.DB) *gorm.DB { return tx.Model(&Stock{}).Where("id BETWEEN ? AND ?", lo, hi) }
	var steps []bulkStep
	step := func(res *gorm.DB, kind changeKind, ids []int) error {
		if res.Error == nil {
			steps = append(steps, bulkStep{kind: kind, ids: ids, affected: res.RowsAffected})
		}
		return res.Error
	}
	switch op {
	case 0: // a range, no transaction of the application's
		return steps, step(rng(db).Update("qty", gorm.Expr("qty + 1")), increment, inRange)
	case 1: // a group, with a map
		return steps, step(db.Model(&Stock{}).Where("grp = ?", g).
			Updates(map[string]any{"qty": gorm.Expr("qty + 1"), "label": label}), increment, inGroup)
	case 2: // a range, then part of it again, in one transaction
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := step(rng(tx).Update("qty", gorm.Expr("qty + ?", 1)), increment, inRange); err != nil {
				return err
			}
			return step(rng(tx).Where("grp = ?", g).Updates(map[string]any{"qty": gorm.Expr("qty + 1"), "label": label}), increment, both)
		})
		return steps, err
	case 3: // as 2, rolled back
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := rng(tx).Update("qty", gorm.Expr("qty + 1")).Error; err != nil {
				return err
			}
			if err := rng(tx).Where("grp = ?", g).Updates(map[string]any{"qty": gorm.Expr("qty + 1"), "label": label}).Error; err != nil {
				return err
			}
			return errAbort
		})
		if errors.Is(err, errAbort) {
			return nil, nil
		}
		return nil, err
	case 4: // soft delete of a range, restored in the same transaction
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := step(rng(tx).Update("qty", gorm.Expr("qty + 1")), increment, inRange); err != nil {
				return err
			}
			if err := step(tx.Where("id BETWEEN ? AND ?", lo, hi).Delete(&Stock{}), softDelete, inRange); err != nil {
				return err
			}
			return step(tx.Unscoped().Model(&Stock{}).Where("id BETWEEN ? AND ?", lo, hi).
				Updates(map[string]any{"deleted_at": nil, "qty": gorm.Expr("qty + 1"), "label": label}), increment, inRange)
		})
		return steps, err
	case 5: // soft delete in a savepoint that rolls back; the outer transaction commits
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := step(rng(tx).Update("qty", gorm.Expr("qty + 1")), increment, inRange); err != nil {
				return err
			}
			err := tx.Transaction(func(tx *gorm.DB) error {
				if err := tx.Where("id BETWEEN ? AND ?", lo, hi).Delete(&Stock{}).Error; err != nil {
					return err
				}
				return errAbort
			})
			if errors.Is(err, errAbort) {
				return nil
			}
			return err
		})
		return steps, err
	case 6: // hard delete and re-insert of a range
		err := db.Transaction(func(tx *gorm.DB) error {
			// A re-insert is a new row version: a statement already waiting for the old one
			// would skip the row. The table lock waits those out and holds new ones back until
			// they can see the re-inserted rows, so every statement changes its whole set.
			if err := tx.Exec("LOCK TABLE stocks IN EXCLUSIVE MODE").Error; err != nil {
				return err
			}
			var rows []Stock
			if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id BETWEEN ? AND ?", lo, hi).
				Order("id").Find(&rows).Error; err != nil {
				return err
			}
			ids := make([]int, len(rows))
			for i := range rows {
				ids[i] = int(rows[i].ID)
				rows[i].Qty++
				rows[i].Label = label
			}
			if err := step(tx.Unscoped().Where("id IN ?", ids).Delete(&Stock{}), hardDelete, ids); err != nil {
				return err
			}
			return step(tx.Create(&rows), reinsert, ids)
		})
		return steps, err
	}
	return nil, fmt.Errorf("no operation %d", op)
}

// stockImages returns every stocks row as PostgreSQL renders it in JSON, by id.
func (e *env) stockImages() map[int]map[string]any {
	e.t.Helper()
	rows, err := e.pg.Pool.Query(context.Background(), `SELECT id, to_jsonb(s)::text FROM stocks s`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]map[string]any{}
	for rows.Next() {
		var id int
		var doc string
		if err := rows.Scan(&id, &doc); err != nil {
			e.t.Fatal(err)
		}
		var img map[string]any
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		if err := dec.Decode(&img); err != nil {
			e.t.Fatal(err)
		}
		out[id] = img
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func qtyOf(t *testing.T, img map[string]any) int {
	t.Helper()
	n, err := strconv.Atoi(str(img["qty"]))
	if err != nil {
		t.Fatalf("qty of %v: %v", img, err)
	}
	return n
}

// stockRank orders a stock's records by the state each leaves: qty counts the committed
// increments, and a deleted row (soft or hard) sits between its qty and the next.
func stockRank(t *testing.T, r auditRow) int {
	t.Helper()
	switch {
	case r.After == nil:
		return 2*qtyOf(t, r.Before) + 1
	case r.After["deleted_at"] != nil:
		return 2*qtyOf(t, r.After) + 1
	default:
		return 2 * qtyOf(t, r.After)
	}
}
