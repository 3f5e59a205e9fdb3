package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// The windows of a page tile the part of the time line the page can reach, in the page's
// order, without overlap or gap, the first one containing where the page starts and the last one
// reaching the query's own bound (or none), whatever the bounds, the filter's range, the cursor
// and now.
func TestPageWindowsTileTheTimeLine(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 5000 {
		var bounds []time.Time
		for h := rng.IntN(5); h < 200; h += 1 + rng.IntN(30) {
			bounds = append(bounds, at(h))
		}
		if i%7 == 0 {
			bounds = nil
		}
		var f Filter
		if rng.IntN(3) == 0 {
			f.From = at(rng.IntN(240) - 20)
		}
		if rng.IntN(3) == 0 {
			f.To = at(rng.IntN(240) - 20)
			if !f.From.IsZero() && !f.From.Before(f.To) {
				f.To = f.From.Add(time.Hour)
			}
		}
		order := NewestFirst
		if rng.IntN(2) == 0 {
			order = OldestFirst
		}
		var after *position
		if rng.IntN(2) == 0 {
			p := position{at: at(rng.IntN(240) - 20).Add(time.Duration(rng.IntN(3)-1) * time.Microsecond)}
			after = &p
		}
		now := at(rng.IntN(240) - 20)

		w := newPageWindows(bounds, f, order, after, now)
		var got []Filter
		for {
			wf, ok := w.window()
			if !ok {
				break
			}
			got = append(got, wf)
			if len(got) > 2*len(bounds)+2 {
				t.Fatalf("case %d: more windows than bounds: %d for %d bounds", i, len(got), len(bounds))
			}
		}
		if len(got) == 0 {
			t.Fatalf("case %d: no window", i)
		}
		if len(bounds) == 0 && len(got) != 1 {
			t.Fatalf("case %d: %d windows without partitions, want the query itself", i, len(got))
		}
		first, last := got[0], got[len(got)-1]
		// The query's own bound on the far side is the last window's; its near side is the
		// first window's (the cursor bounds it further in SQL). A first window that ends before
		// the cursor's time must end at the query's own bound (the page is then empty).
		if order == NewestFirst {
			if !last.From.Equal(f.From) || !first.To.Equal(f.To) {
				t.Fatalf("case %d: newest first: windows span [%v, %v), query [%v, %v)", i, last.From, first.To, f.From, f.To)
			}
			if after != nil && !first.From.Equal(f.From) && !first.From.Before(after.at) {
				t.Fatalf("case %d: the first window [%v, ...) misses the cursor's time %v", i, first.From, after.at)
			}
		} else {
			if !last.To.Equal(f.To) || !first.From.Equal(f.From) {
				t.Fatalf("case %d: oldest first: windows span [%v, %v), query [%v, %v)", i, first.From, last.To, f.From, f.To)
			}
			if after != nil && !first.To.Equal(f.To) && !first.To.After(after.at) {
				t.Fatalf("case %d: the first window [..., %v) misses the cursor's time %v", i, first.To, after.at)
			}
		}
		for j := 1; j < len(got); j++ {
			prev, cur := got[j-1], got[j]
			var edgeA, edgeB time.Time // where prev ends and cur starts, in the page's order
			if order == NewestFirst {
				edgeA, edgeB = prev.From, cur.To
			} else {
				edgeA, edgeB = prev.To, cur.From
			}
			if edgeA.IsZero() || !edgeA.Equal(edgeB) {
				t.Fatalf("case %d: window %d ends at %v, window %d starts at %v", i, j-1, edgeA, j, edgeB)
			}
			if !cur.From.IsZero() && !cur.To.IsZero() && !cur.From.Before(cur.To) {
				t.Fatalf("case %d: window %d is empty: [%v, %v)", i, j, cur.From, cur.To)
			}
		}
		// Everything but the query's range is unchanged.
		for _, wf := range got {
			wf.From, wf.To = f.From, f.To
			if wf.canonical() != f.canonical() {
				t.Fatalf("case %d: a window changed the filter: %q, want %q", i, wf.canonical(), f.canonical())
			}
		}
	}
}

// A first page of a tenant on a partitioned audit_logs without a time range is planned over the
// partitions of its first window (and the default partition, which can hold any time), not over
// every partition.
func TestFirstPageWindowPrunesPartitions(t *testing.T) {
	db := pgtest.New(t)
	s, err := New(db.Pool, Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if _, err := schema.CreatePartitions(ctx, db.Pool, month.AddDate(0, -12, 0), month, schema.WithSchema(db.Schema)); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	for _, order := range []Order{NewestFirst, OldestFirst} {
		w := newPageWindows(s.pageBounds(ctx), Filter{}, order, nil, time.Now())
		f, ok := w.window()
		if !ok || (f.From.IsZero() && f.To.IsZero()) {
			t.Fatalf("%s: the first window is unbounded: %v", order, f)
		}
		b := s.listSQL(TenantScope("t-0"), f, order, nil, 50)
		text := explain(t, db.Pool, "EXPLAIN (COSTS OFF) "+b.sb.String(), b.args...)
		scanned := map[string]bool{}
		for _, m := range partitionScan.FindAllStringSubmatch(text, -1) {
			scanned[m[1]] = true
		}
		// Newest first: the current month and the months created ahead, and the default
		// partition. Oldest first: the oldest month and the default partition.
		if len(scanned) == 0 || len(scanned) > total-10 {
			t.Errorf("%s: the first window [%v, %v) scans %d of %d partitions:\n%s", order, f.From, f.To, len(scanned), total, text)
		}
		if !scanned["audit_logs_default"] {
			t.Errorf("%s: the default partition is not scanned:\n%s", order, text)
		}
	}
}

var partitionScan = regexp.MustCompile(`on (audit_logs_(?:p\d+|default))\b`)

// Concurrent pages share the cached partition bounds and read them again when they expire;
// run with -race.
func TestPageBoundsConcurrentReads(t *testing.T) {
	db := pgtest.New(t)
	s, err := New(db.Pool, Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id)
		SELECT gen_random_uuid(), now() - g * interval '1 day', 'custom', 'doc.touched', 't-0' FROM generate_series(1, 90) g`); err != nil {
		t.Fatal(err)
	}
	want := len(s.pageBounds(ctx))
	if want < 2 {
		t.Fatalf("%d partition bounds on a partitioned table", want)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 10 {
				if g%2 == 0 && i%3 == 0 {
					s.partBounds.mu.Lock()
					s.partBounds.read = time.Time{} // expired: the next page reads them again
					s.partBounds.mu.Unlock()
				}
				p, err := s.List(ctx, TenantScope("t-0"), Query{Limit: 40})
				if err == nil && len(p.Records) != 40 {
					err = fmt.Errorf("%d records, want 40", len(p.Records))
				}
				if err == nil && len(s.pageBounds(ctx)) != want {
					err = fmt.Errorf("%d partition bounds, want %d", len(s.pageBounds(ctx)), want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
