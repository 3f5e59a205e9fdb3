package store_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// TestSearchPagesMatchTheModel is a differential test of full-text pages, which walk the
// tenant/time index first and hand over to the search index when a word is rare: words from one
// record in three to a handful in all, and none, in tenants with many records across months
// (ties on the months' first instants), are paged in both orders, with cursors, alone and with
// other conditions, on a partitioned table and a plain one. Every page sequence must equal the
// test's own model: the same records in the same order, none twice, none missing.
func TestSearchPagesMatchTheModel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	part, plain := pgtest.New(t), plainDB(t)
	if _, err := schema.CreatePartitions(ctx, part.Pool, monthStart(8), monthStart(-1), schema.WithSchema(part.Schema)); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Pool.Exec(ctx, `DELETE FROM audit_logs WHERE action = 'seed'`); err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(7, 13))
	// Each record carries one word: its frequency decides whether the walk finds a page.
	words := []struct {
		w    string
		freq float64 // cumulative
	}{{"zcommon", 0.35}, {"zsome", 0.45}, {"zfew", 0.47}, {"zrare", 0.4725}, {"zother", 1}}
	var all []*core.Record
	for tenant, ks := range map[string][]int{"a": {0, 1, 2, 5}, "b": {0, 6}, "c": {3}} {
		for _, k := range ks {
			for _, r := range spreadRecords(tenant, k, 400) {
				x := rng.Float64()
				for _, w := range words {
					if x < w.freq {
						r.Metadata = map[string]any{"note": w.w}
						break
					}
				}
				all = append(all, r)
			}
		}
	}
	for _, db := range []*pgtest.DB{part, plain} {
		sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
		for c := range slices.Chunk(all, 500) {
			if err := sink.Write(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	stores := map[string]*store.Store{}
	for name, db := range map[string]*pgtest.DB{"partitioned": part, "plain": plain} {
		st, err := store.New(db.Pool, store.Options{Schema: db.Schema, CursorKey: bytes.Repeat([]byte("k"), 32)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		stores[name] = st
	}

	var rareInA int
	for _, r := range all {
		if r.Tenant.ID == "a" && r.Metadata["note"] == "zrare" {
			rareInA++
		}
	}
	if rareInA == 0 || rareInA > 20 {
		t.Fatalf("tenant a has %d records of the rare word: the test does not cross what it should", rareInA)
	}

	type tc struct {
		f     store.Filter
		limit int
	}
	var cases []tc
	for _, w := range append([]string{"znone"}, "zcommon", "zsome", "zfew", "zrare") {
		for _, limit := range []int{1, 7, 40} {
			cases = append(cases, tc{store.Filter{Search: w}, limit})
		}
		cases = append(cases,
			tc{store.Filter{Search: w, Kinds: []core.Kind{core.KindInsert, core.KindUpdate}}, 9},
			tc{store.Filter{Search: w, From: monthStart(2).Add(time.Hour), To: monthStart(0).Add(-time.Hour)}, 6},
			tc{store.Filter{Search: w, To: monthStart(1)}, 15},
			tc{store.Filter{Search: w, ActorID: "u-1"}, 5}, // not covered by the tenant/time index: one query
		)
	}
	scopes := []store.Scope{store.TenantScope("a"), store.TenantScope("b"), store.TenantScope("c"), store.TenantScope("nobody"), store.AllTenantsScope()}
	for _, sc := range scopes {
		for _, c := range cases {
			for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
				want := expected(all, sc, c.f, order)
				q := store.Query{Filter: c.f, Order: order, Limit: c.limit}
				for name, st := range stores {
					got := listAll(t, st, sc, q)
					if !slices.Equal(got, want) {
						t.Errorf("%s %s %v %s, pages of %d: %d records differ from the %d expected (first difference at %d)",
							name, sc, c.f.Values().Encode(), order, c.limit, len(got), len(want), firstDiff(got, want))
					}
				}
			}
		}
	}
}
