package gormaudit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/sinktest"
)

const fcQueue = 4

// fcEnv is an env whose Writer, with a tiny queue, writes through a sinktest.Gated.
type fcEnv struct {
	*env
	w    *core.Writer
	sink *sinktest.Gated
}

func newFCEnv(t *testing.T, cfg envConfig, policy core.FailurePolicy) *fcEnv {
	t.Helper()
	sink := &sinktest.Gated{}
	w := core.NewWriter(sink, core.WriterOptions{QueueSize: fcQueue, BatchSize: 1, Workers: 1,
		FlushInterval: time.Millisecond, FailurePolicy: policy})
	cfg.opts.Writer = w
	cfg.opts.CaptureRawSQL = true
	e := newEnv(t, cfg, &Item{})
	t.Cleanup(func() { // before the database's pool closes
		sink.Open()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	sink.Inner = core.NewPostgresSink(e.pg.Pool, core.PostgresSinkOptions{Schema: e.pg.Schema})
	return &fcEnv{env: e, w: w, sink: sink}
}

// fcHeld is how many records the Writer (one worker, batches of one) holds outside its queue
// once the sink stalls: the batch the worker is writing and the one waiting for the worker.
const fcHeld = 2

// fill stalls the sink and takes all the room of the Writer's queue with records, without
// dropping any: a record is enqueued only where Reserve shows room for it. It returns once the
// queue is full and the Writer also holds fcHeld records outside it, so that the writer can take
// none out of the queue any more: the room stays refused.
func (f *fcEnv) fill() int {
	f.t.Helper()
	f.sink.Stall()
	n := 0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := f.w.Reserve(1)
		if err != nil {
			// The writer may still be taking records into its stalled batches, making room: full
			// only when it holds all it can.
			if h := f.w.Health(); h.QueueDepth >= h.QueueSize+fcHeld {
				return n
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err := f.w.EnqueueReserved(res, &core.Record{Kind: core.KindCustom, Action: "filler"}); err != nil {
			f.t.Fatal(err)
		}
		res.Release()
		n++
	}
	f.t.Fatal("the queue never filled")
	return n
}

// items returns the items table as another connection sees it.
func (f *fcEnv) items() string {
	f.t.Helper()
	var s string
	err := f.pg.Pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(id || ':' || sku || ':' || qty, ',' ORDER BY id), '') FROM items`).Scan(&s)
	must(f.t, err)
	return s
}

// stored flushes the Writer and counts the stored audit rows matching cond.
func (f *fcEnv) stored(cond string, args ...any) int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(f.t, f.w.Flush(ctx))
	var n int
	q := "SELECT count(*) FROM audit_logs"
	if cond != "" {
		q += " WHERE " + cond
	}
	must(f.t, f.pg.Pool.QueryRow(ctx, q, args...).Scan(&n))
	return n
}

// released checks that no room stays reserved once the queue drained.
func (f *fcEnv) released() {
	f.t.Helper()
	f.stored("")
	res, err := f.w.Reserve(fcQueue)
	if err != nil {
		free := 0
		for n := 1; n <= fcQueue; n++ {
			if r, err := f.w.Reserve(n); err == nil {
				free = n
				r.Release()
			}
		}
		f.t.Fatalf("room is still reserved after the queue drained (%d free, %+v): %v", free, f.w.Stats(), err)
	}
	res.Release()
}

// writes are the audited writes each test makes, by name.
func fcWrites() []struct {
	name string
	do   func(db *gorm.DB) error
} {
	return []struct {
		name string
		do   func(db *gorm.DB) error
	}{
		{"create", func(db *gorm.DB) error { return db.Create(&Item{SKU: "new", Qty: 1}).Error }},
		{"update", func(db *gorm.DB) error { return db.Model(&Item{ID: 1}).Update("qty", 99).Error }},
		{"save", func(db *gorm.DB) error { return db.Save(&Item{ID: 2, SKU: "b", Qty: 42}).Error }},
		{"delete", func(db *gorm.DB) error { return db.Delete(&Item{}, 1).Error }},
		{"bulk update", func(db *gorm.DB) error {
			return db.Model(&Item{}).Where("qty >= ?", 0).Update("qty", 7).Error
		}},
		{"bulk delete", func(db *gorm.DB) error { return db.Where("qty >= ?", 0).Delete(&Item{}).Error }},
		{"transaction", func(db *gorm.DB) error {
			return db.Transaction(func(tx *gorm.DB) error {
				it := Item{SKU: "tx", Qty: 1}
				if err := tx.Create(&it).Error; err != nil {
					return err
				}
				return tx.Model(&it).Update("qty", 5).Error
			})
		}},
		{"begin commit", func(db *gorm.DB) error {
			tx := db.Begin()
			if err := tx.Create(&Item{SKU: "begun", Qty: 1}).Error; err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit().Error
		}},
		{"raw exec", func(db *gorm.DB) error { return db.Exec("UPDATE items SET qty = qty + 1").Error }},
		{"raw scan", func(db *gorm.DB) error {
			var ids []int
			return db.Raw("INSERT INTO items (sku, qty) VALUES ('raw', 1) RETURNING id").Scan(&ids).Error
		}},
	}
}

func TestFailClosedRefusesWhenFull(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFCEnv(t, cfg, core.FailClosed)
			must(t, f.db.Create(&[]Item{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 2}}).Error)
			seeded := f.stored("")
			filled := f.fill()
			before := f.items()
			for _, wr := range fcWrites() {
				err := wr.do(f.db.WithContext(context.Background()))
				if !errors.Is(err, core.ErrAuditUnavailable) {
					t.Errorf("%s: error %v, want one wrapping ErrAuditUnavailable", wr.name, err)
				}
				if got := f.items(); got != before {
					t.Errorf("%s: the table changed from %q to %q", wr.name, before, got)
				}
			}
			if s := f.w.Stats(); s.Dropped != 0 {
				t.Errorf("Stats.Dropped = %d, want 0", s.Dropped)
			}
			f.sink.Open()
			if n := f.stored(""); n != seeded+filled {
				t.Errorf("%d audit rows, want %d (seed %d, fillers %d)", n, seeded+filled, seeded, filled)
			}
			f.released()
		})
	}
}

func TestFailClosedRollbackMessage(t *testing.T) {
	f := newFCEnv(t, envConfig{}, core.FailClosed)
	f.fill()
	err := f.db.Transaction(func(tx *gorm.DB) error { return tx.Create(&Item{SKU: "x"}).Error })
	if err == nil || !strings.Contains(err.Error(), "rolled back") || !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("error %v, want one saying the transaction was rolled back because the queue is full", err)
	}
}

func TestFailClosedPerCallSite(t *testing.T) {
	t.Run("closed call site on an open writer", func(t *testing.T) {
		t.Parallel()
		f := newFCEnv(t, envConfig{}, core.FailOpen)
		must(t, f.db.Create(&[]Item{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 2}}).Error)
		f.stored("")
		f.fill()
		before := f.items()
		ctx := core.WithFailurePolicy(context.Background(), core.FailClosed)
		for _, wr := range fcWrites() {
			if err := wr.do(f.db.WithContext(ctx)); !errors.Is(err, core.ErrAuditUnavailable) {
				t.Errorf("%s: error %v, want one wrapping ErrAuditUnavailable", wr.name, err)
			}
		}
		if got := f.items(); got != before {
			t.Errorf("the table changed from %q to %q", before, got)
		}
		if s := f.w.Stats(); s.Dropped != 0 {
			t.Errorf("Stats.Dropped = %d, want 0", s.Dropped)
		}
		// The rest of the application stays fail-open: the write proceeds, its record is lost.
		must(t, f.db.Create(&Item{SKU: "open"}).Error)
		if s := f.w.Stats(); s.Dropped != 1 {
			t.Errorf("Stats.Dropped = %d after a fail-open create, want 1", s.Dropped)
		}
	})
	t.Run("open call site on a closed writer", func(t *testing.T) {
		t.Parallel()
		f := newFCEnv(t, envConfig{}, core.FailClosed)
		f.fill()
		ctx := core.WithFailurePolicy(context.Background(), core.FailOpen)
		must(t, f.db.WithContext(ctx).Create(&Item{SKU: "open"}).Error)
		if got := f.items(); !strings.HasSuffix(got, ":open:0") {
			t.Errorf("the table holds %q, want the created item", got)
		}
		if s := f.w.Stats(); s.Dropped != 1 {
			t.Errorf("Stats.Dropped = %d, want 1", s.Dropped)
		}
		if err := f.db.Create(&Item{SKU: "closed"}).Error; !errors.Is(err, core.ErrAuditUnavailable) {
			t.Errorf("a create under the writer's policy: error %v, want ErrAuditUnavailable", err)
		}
	})
}

func TestFailClosedWithRoom(t *testing.T) {
	for name, cfg := range txConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFCEnv(t, cfg, core.FailClosed)
			must(t, f.db.Create(&[]Item{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 2}}).Error)
			// The bulk writes record one row per item they change; the others a known number.
			want := map[string]int{"create": 1, "update": 1, "save": 1, "delete": 1, "transaction": 2,
				"begin commit": 1, "raw exec": 1, "raw scan": 1}
			for _, wr := range fcWrites() {
				before := f.stored("")
				var changing int
				must(t, f.pg.Pool.QueryRow(context.Background(), "SELECT count(*) FROM items WHERE qty <> 7").Scan(&changing))
				if wr.name == "bulk delete" {
					must(t, f.pg.Pool.QueryRow(context.Background(), "SELECT count(*) FROM items").Scan(&changing))
				}
				must(t, wr.do(f.db))
				n, ok := want[wr.name]
				if !ok {
					n = changing
				}
				if got := f.stored("") - before; got != n {
					t.Errorf("%s: %d audit rows stored, want %d", wr.name, got, n)
				}
			}
			if s := f.w.Stats(); s.Dropped != 0 || s.Invalid != 0 {
				t.Errorf("Stats = %+v, want nothing dropped", s)
			}
			f.released()
		})
	}
}

func TestFailClosedCollectorCarriesReservation(t *testing.T) {
	f := newFCEnv(t, envConfig{}, core.FailClosed)
	c := core.NewCollector()
	ctx := core.NewContext(context.Background(), c)
	db := f.db.WithContext(ctx)
	must(t, db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&Item{SKU: "a"}).Error; err != nil {
			return err
		}
		return tx.Create(&Item{SKU: "b"}).Error
	}))
	must(t, db.Model(&Item{}).Where("sku = ?", "a").Update("qty", 3).Error)
	if c.Len() != 3 {
		t.Fatalf("the collector holds %d records, want 3", c.Len())
	}
	res := c.TakeReservation()
	if n := res.Remaining(); n != 3 {
		t.Fatalf("the reservation holds %d, want 3", n)
	}
	// The room is the Writer's: while the collector holds it, only the rest is free.
	if r, err := f.w.Reserve(fcQueue - 2); err == nil {
		r.Release()
		t.Fatal("room held for the collector's records was given to another reservation")
	}
	res.Release()
	f.released()
}

func TestFailClosedConcurrent(t *testing.T) {
	cfg := envConfig{}
	sink := &sinktest.Gated{}
	sink.Delay = 3 * time.Millisecond
	w := core.NewWriter(sink, core.WriterOptions{QueueSize: 50, BatchSize: 5, Workers: 1,
		FlushInterval: time.Millisecond, FailurePolicy: core.FailClosed})
	cfg.opts.Writer = w
	e := newEnv(t, cfg, &Item{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	sink.Inner = core.NewPostgresSink(e.pg.Pool, core.PostgresSinkOptions{Schema: e.pg.Schema})

	const workers, each = 8, 40
	type outcome struct {
		sku string
		ok  bool
	}
	out := make(chan outcome, workers*each)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				sku := fmt.Sprintf("g%d-%d", g, i)
				var err error
				if i%2 == 0 {
					err = e.db.Create(&Item{SKU: sku, Qty: i}).Error
				} else {
					err = e.db.Transaction(func(tx *gorm.DB) error {
						it := Item{SKU: sku}
						if err := tx.Create(&it).Error; err != nil {
							return err
						}
						return tx.Model(&it).Update("qty", i).Error
					})
				}
				if err != nil && !errors.Is(err, core.ErrAuditUnavailable) {
					t.Errorf("%s: %v", sku, err)
				}
				out <- outcome{sku, err == nil}
			}
		}()
	}
	wg.Wait()
	close(out)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, w.Flush(ctx))
	refused := 0
	for o := range out {
		var rows, recs int
		must(t, e.pg.Pool.QueryRow(ctx, "SELECT count(*) FROM items WHERE sku = $1", o.sku).Scan(&rows))
		must(t, e.pg.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_logs WHERE kind = 'insert' AND after->>'sku' = $1", o.sku).Scan(&recs))
		switch {
		case o.ok && (rows != 1 || recs != 1):
			t.Errorf("%s succeeded: %d rows, %d insert records, want 1 and 1", o.sku, rows, recs)
		case !o.ok && (rows != 0 || recs != 0):
			t.Errorf("%s was refused: %d rows, %d insert records, want none", o.sku, rows, recs)
		}
		if !o.ok {
			refused++
		}
	}
	if s := w.Stats(); s.Dropped != 0 {
		t.Errorf("Stats.Dropped = %d, want 0", s.Dropped)
	}
	t.Logf("%d of %d writes refused", refused, workers*each)
	res, err := w.Reserve(50)
	if err != nil {
		t.Fatalf("room is still reserved after the queue drained: %v", err)
	}
	res.Release()
}
