package entaudit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
	"github.com/auditkit/auditkit/internal/sinktest"
)

const fcQueue = 4

// fcEnv is an env whose hook writes through a Writer with a tiny queue and a sinktest.Gated.
type fcEnv struct {
	*env
	t     *testing.T
	fw    *core.Writer
	sink  *sinktest.Gated
	queue int
}

func newFCEnv(t *testing.T, policy core.FailurePolicy, queue int, sink *sinktest.Gated, options ...envOption) *fcEnv {
	t.Helper()
	w := core.NewWriter(sink, core.WriterOptions{QueueSize: queue, BatchSize: 1, Workers: 1,
		FlushInterval: time.Millisecond, FailurePolicy: policy})
	e := newEnv(t, append(options, withOptions(func(o *entaudit.Options) { o.Writer = w }))...)
	sink.Inner = core.NewPostgresSink(e.db.Pool, core.PostgresSinkOptions{Schema: e.db.Schema})
	t.Cleanup(func() { // before the database's pool closes
		sink.Open()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return &fcEnv{env: e, t: t, fw: w, sink: sink, queue: queue}
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
		res, err := f.fw.Reserve(1)
		if err != nil {
			// The writer may still be taking records into its stalled batches, making room: full
			// only when it holds all it can.
			if h := f.fw.Health(); h.QueueDepth >= h.QueueSize+fcHeld {
				return n
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err := f.fw.EnqueueReserved(res, &core.Record{Kind: core.KindCustom, Action: "filler"}); err != nil {
			f.t.Fatal(err)
		}
		res.Release()
		n++
	}
	f.t.Fatal("the queue never filled")
	return n
}

// users returns the users table as another connection sees it.
func (f *fcEnv) users() string {
	f.t.Helper()
	var s string
	err := f.db.Pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(id || ':' || email || ':' || age, ',' ORDER BY id), '') FROM users`).Scan(&s)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// stored flushes the Writer and counts the stored audit rows.
func (f *fcEnv) stored() int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.fw.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
	var n int
	if err := f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_logs").Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// released checks that no room stays reserved once the queue drained.
func (f *fcEnv) released() {
	f.t.Helper()
	f.stored()
	res, err := f.fw.Reserve(f.queue)
	if err != nil {
		f.t.Fatalf("room is still reserved after the queue drained: %v", err)
	}
	res.Release()
}

type fcWrite struct {
	name    string
	records int // records it makes with room, on the seeded rows (users 1 and 2)
	do      func(ctx context.Context, c *entest.Client) error
}

// fcWrites are the audited writes each test makes; with room they run in this order.
func fcWrites() []fcWrite {
	return []fcWrite{
		{"create", 1, func(ctx context.Context, c *entest.Client) error {
			return c.User.Create().SetName("n").SetEmail("n@x").Exec(ctx)
		}},
		{"bulk create", 2, func(ctx context.Context, c *entest.Client) error {
			return c.User.CreateBulk(c.User.Create().SetName("b1").SetEmail("b1@x"),
				c.User.Create().SetName("b2").SetEmail("b2@x")).Exec(ctx)
		}},
		{"update", 1, func(ctx context.Context, c *entest.Client) error {
			return c.User.UpdateOneID(1).SetAge(99).Exec(ctx)
		}},
		{"bulk update", 4, func(ctx context.Context, c *entest.Client) error {
			return c.User.Update().Where(user.AgeLT(50)).SetAge(7).Exec(ctx)
		}},
		{"delete", 1, func(ctx context.Context, c *entest.Client) error {
			return c.User.DeleteOneID(1).Exec(ctx)
		}},
		{"transaction", 2, func(ctx context.Context, c *entest.Client) error {
			tx, err := c.Tx(ctx)
			if err != nil {
				return err
			}
			u, err := tx.User.Create().SetName("t").SetEmail("t@x").Save(ctx)
			if err == nil {
				err = tx.User.UpdateOne(u).SetAge(3).Exec(ctx)
			}
			if err != nil {
				return errors.Join(err, tx.Rollback())
			}
			return tx.Commit()
		}},
		{"bulk delete", 5, func(ctx context.Context, c *entest.Client) error {
			_, err := c.User.Delete().Where(user.AgeGTE(0)).Exec(ctx)
			return err
		}},
	}
}

func (f *fcEnv) seed() {
	f.t.Helper()
	ctx := context.Background()
	f.client.User.Create().SetName("a").SetEmail("a@x").SetAge(1).ExecX(ctx)
	f.client.User.Create().SetName("b").SetEmail("b@x").SetAge(2).ExecX(ctx)
}

func TestFailClosedRefusesWhenFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []envOption
	}{{"wrapped", nil}, {"unwrapped", []envOption{unwrapped()}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFCEnv(t, core.FailClosed, fcQueue, &sinktest.Gated{}, tc.opts...)
			f.seed()
			seeded := f.stored()
			filled := f.fill()
			before := f.users()
			for _, wr := range fcWrites() {
				err := wr.do(context.Background(), f.client)
				if !errors.Is(err, core.ErrAuditUnavailable) {
					t.Errorf("%s: error %v, want one wrapping ErrAuditUnavailable", wr.name, err)
				}
				if got := f.users(); got != before {
					t.Errorf("%s: the table changed from %q to %q", wr.name, before, got)
				}
			}
			if s := f.fw.Stats(); s.Dropped != 0 {
				t.Errorf("Stats.Dropped = %d, want 0", s.Dropped)
			}
			f.sink.Open()
			if n := f.stored(); n != seeded+filled {
				t.Errorf("%d audit rows, want %d (seed %d, fillers %d)", n, seeded+filled, seeded, filled)
			}
			f.released()
		})
	}
}

func TestFailClosedRollbackMessage(t *testing.T) {
	f := newFCEnv(t, core.FailClosed, fcQueue, &sinktest.Gated{})
	f.fill()
	ctx := context.Background()
	tx, err := f.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.Create().SetName("x").SetEmail("x@x").ExecX(ctx)
	err = tx.Commit()
	if err == nil || !strings.Contains(err.Error(), "rolled back") || !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("Commit: %v, want an error saying the transaction was rolled back because the queue is full", err)
	}
}

func TestFailClosedPerCallSite(t *testing.T) {
	t.Run("closed call site on an open writer", func(t *testing.T) {
		t.Parallel()
		f := newFCEnv(t, core.FailOpen, fcQueue, &sinktest.Gated{})
		f.seed()
		f.stored()
		f.fill()
		before := f.users()
		ctx := core.WithFailurePolicy(context.Background(), core.FailClosed)
		for _, wr := range fcWrites() {
			if err := wr.do(ctx, f.client); !errors.Is(err, core.ErrAuditUnavailable) {
				t.Errorf("%s: error %v, want one wrapping ErrAuditUnavailable", wr.name, err)
			}
		}
		if got := f.users(); got != before {
			t.Errorf("the table changed from %q to %q", before, got)
		}
		if s := f.fw.Stats(); s.Dropped != 0 {
			t.Errorf("Stats.Dropped = %d, want 0", s.Dropped)
		}
		// The rest of the application stays fail-open: the write proceeds, its record is lost.
		f.client.User.Create().SetName("o").SetEmail("o@x").ExecX(context.Background())
		if s := f.fw.Stats(); s.Dropped != 1 {
			t.Errorf("Stats.Dropped = %d after a fail-open create, want 1", s.Dropped)
		}
	})
	t.Run("open call site on a closed writer", func(t *testing.T) {
		t.Parallel()
		f := newFCEnv(t, core.FailClosed, fcQueue, &sinktest.Gated{})
		f.seed()
		f.stored()
		f.fill()
		ctx := core.WithFailurePolicy(context.Background(), core.FailOpen)
		f.client.User.UpdateOneID(1).SetAge(5).ExecX(ctx)
		if got := f.users(); !strings.Contains(got, "1:a@x:5") {
			t.Errorf("the table holds %q, want the update", got)
		}
		if s := f.fw.Stats(); s.Dropped != 1 {
			t.Errorf("Stats.Dropped = %d, want 1", s.Dropped)
		}
		if err := f.client.User.UpdateOneID(1).SetAge(6).Exec(context.Background()); !errors.Is(err, core.ErrAuditUnavailable) {
			t.Errorf("an update under the writer's policy: error %v, want ErrAuditUnavailable", err)
		}
	})
}

func TestFailClosedWithRoom(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []envOption
	}{{"wrapped", nil}, {"unwrapped", []envOption{unwrapped()}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Room for the largest write (a bulk delete of 5 rows): a transaction whose records
			// need more room than the queue has can never commit under FailClosed.
			f := newFCEnv(t, core.FailClosed, 8, &sinktest.Gated{}, tc.opts...)
			f.seed()
			for _, wr := range fcWrites() {
				before := f.stored()
				if err := wr.do(context.Background(), f.client); err != nil {
					t.Fatalf("%s: %v", wr.name, err)
				}
				if got := f.stored() - before; got != wr.records {
					t.Errorf("%s: %d audit rows stored, want %d", wr.name, got, wr.records)
				}
			}
			if s := f.fw.Stats(); s.Dropped != 0 || s.Invalid != 0 {
				t.Errorf("Stats = %+v, want nothing dropped", s)
			}
			f.released()
		})
	}
}

func TestFailClosedCollectorCarriesReservation(t *testing.T) {
	f := newFCEnv(t, core.FailClosed, fcQueue, &sinktest.Gated{})
	c := core.NewCollector()
	ctx := core.NewContext(context.Background(), c)
	tx, err := f.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u := tx.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	tx.User.UpdateOne(u).SetAge(3).ExecX(ctx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	f.client.User.UpdateOneID(u.ID).SetAge(4).ExecX(ctx)
	if c.Len() != 3 {
		t.Fatalf("the collector holds %d records, want 3", c.Len())
	}
	res := c.TakeReservation()
	if n := res.Remaining(); n != 3 {
		t.Fatalf("the reservation holds %d, want 3", n)
	}
	if r, err := f.fw.Reserve(fcQueue - 2); err == nil {
		r.Release()
		t.Fatal("room held for the collector's records was given to another reservation")
	}
	res.Release()
	f.released()
}

func TestFailClosedConcurrent(t *testing.T) {
	f := newFCEnv(t, core.FailClosed, 50, &sinktest.Gated{Delay: 3 * time.Millisecond})
	const workers, each = 8, 40
	type outcome struct {
		email string
		ok    bool
	}
	out := make(chan outcome, workers*each)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range each {
				email := fmt.Sprintf("g%d-%d@x", g, i)
				var err error
				switch i % 3 {
				case 0:
					err = f.client.User.Create().SetName("c").SetEmail(email).Exec(ctx)
				case 1:
					var tx *entest.Tx
					if tx, err = f.client.Tx(ctx); err == nil {
						var u *entest.User
						if u, err = tx.User.Create().SetName("t").SetEmail(email).Save(ctx); err == nil {
							err = tx.User.UpdateOne(u).SetAge(i).Exec(ctx)
						}
						if err != nil {
							_ = tx.Rollback()
						} else {
							err = tx.Commit()
						}
					}
				default:
					err = f.client.User.CreateBulk(f.client.User.Create().SetName("b").SetEmail(email)).Exec(ctx)
				}
				if err != nil && !errors.Is(err, core.ErrAuditUnavailable) {
					t.Errorf("%s: %v", email, err)
				}
				out <- outcome{email, err == nil}
			}
		}()
	}
	wg.Wait()
	close(out)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.fw.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for o := range out {
		var rows, recs int
		if err := f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE email = $1", o.email).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if err := f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_logs WHERE kind = 'insert' AND after->>'email' = $1",
			o.email).Scan(&recs); err != nil {
			t.Fatal(err)
		}
		switch {
		case o.ok && (rows != 1 || recs != 1):
			t.Errorf("%s succeeded: %d rows, %d insert records, want 1 and 1", o.email, rows, recs)
		case !o.ok && (rows != 0 || recs != 0):
			t.Errorf("%s was refused: %d rows, %d insert records, want none", o.email, rows, recs)
		}
		if !o.ok {
			refused++
		}
	}
	if s := f.fw.Stats(); s.Dropped != 0 {
		t.Errorf("Stats.Dropped = %d, want 0", s.Dropped)
	}
	t.Logf("%d of %d writes refused", refused, workers*each)
	res, err := f.fw.Reserve(f.queue)
	if err != nil {
		t.Fatalf("room is still reserved after the queue drained: %v", err)
	}
	res.Release()
}
