package store_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// TestSearchPagesMatchTheModel is a differential test of full-text pages: words from one record
// in three (which PostgreSQL finds by walking a tenant's records in time order, testing the text
// before the document) to a handful in all, words in capitals, parts of words, and words no
// record has, in tenants with many records across months (ties on the months' first instants),
// are paged in both orders, with cursors, alone and with other conditions, on a partitioned table
// and a plain one. Every page sequence must equal the test's own model: the same records in the
// same order, none twice, none missing.
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
	}{{"zcommon", 0.35}, {"zsome", 0.45}, {"zfew", 0.47}, {"zrare", 0.475}, {"zother", 1}}
	var all []*core.Record
	for _, tm := range []struct {
		tenant string
		months []int
	}{{"a", []int{0, 1, 2, 5}}, {"b", []int{0, 6}}, {"c", []int{3}}} {
		tenant := tm.tenant
		for _, k := range tm.months {
			for _, r := range spreadRecords(tenant, k, 200) {
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
	rareIDs := map[uuid.UUID]bool{}
	for _, r := range all {
		if r.Metadata["note"] == "zrare" {
			rareIDs[r.ID] = true
			if r.Tenant.ID == "a" {
				rareInA++
			}
		}
	}
	if rareInA == 0 || rareInA > 20 {
		t.Fatalf("tenant a has %d records of the rare word: the test does not cross what it should", rareInA)
	}
	if testing.Verbose() {
		t.Logf("tenant a has %d records of the rare word", rareInA)
	}

	type tc struct {
		f     store.Filter
		limit int
	}
	var cases []tc
	for _, w := range []string{"znone", "zcommon", "ZCommon", "zcom", "ommon", "zsome", "zfew", "zrare", "ZRARE", "zcommon zsome", "zsome.", "-zrare"} {
		limits := []int{50}
		if strings.Contains(w, "rare") || strings.Contains(w, "few") {
			limits = append(limits, 1, 7)
		}
		for _, limit := range limits {
			cases = append(cases, tc{store.Filter{Search: w}, limit})
		}
		if w == "-zrare" {
			continue // every record but a few: the pages above suffice
		}
		cases = append(cases,
			tc{store.Filter{Search: w, Kinds: []core.Kind{core.KindInsert, core.KindUpdate}}, 9},
			tc{store.Filter{Search: w, From: monthStart(2).Add(time.Hour), To: monthStart(0).Add(-time.Hour)}, 6},
			tc{store.Filter{Search: w, To: monthStart(1)}, 15},
			tc{store.Filter{Search: w, ActorID: "u-1"}, 5},
		)
	}
	scopes := []store.Scope{store.TenantScope("a"), store.TenantScope("b"), store.TenantScope("c"), store.TenantScope("nobody"), store.AllTenantsScope()}
	for _, sc := range scopes {
		for _, c := range cases {
			for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
				model := c.f
				switch model.Search {
				case "ZCommon":
					model.Search = "zcommon"
				case "ZRARE":
					model.Search = "zrare"
				case "zsome.":
					model.Search = "zsome"
				case "-zrare": // every record but those with the word
					model.Search = ""
				}
				want := expected(all, sc, model, order)
				if c.f.Search == "-zrare" {
					want = slices.DeleteFunc(want, func(id uuid.UUID) bool { return rareIDs[id] })
				}
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
