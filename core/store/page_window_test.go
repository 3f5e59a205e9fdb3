package store_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// spreadRecords makes n varied records of tenant in the month k months back, spread over the
// month, with three records tied on the month's first instant and three on the instant before.
func spreadRecords(tenant string, k, n int) []*core.Record {
	start, end := monthStart(k), monthStart(k-1)
	out := make([]*core.Record, 0, n+6)
	for i := range n + 6 {
		var at time.Time
		switch {
		case i < 3:
			at = start
		case i < 6:
			at = start.Add(-time.Microsecond)
		default:
			at = start.Add(time.Duration(i-5) * end.Sub(start) / time.Duration(n+1))
		}
		r := &core.Record{
			ID:           core.NewID(),
			OccurredAt:   at,
			Kind:         kinds[i%len(kinds)],
			Action:       actions[(i/2)%len(actions)],
			Severity:     sevs[i%len(sevs)],
			Tenant:       core.Tenant{ID: tenant},
			Actor:        core.Actor{ID: fmt.Sprintf("u-%d", i%4), Type: core.ActorTenantUser},
			ResourceType: resources[i%len(resources)],
			ResourceID:   fmt.Sprint(i % 10),
			RequestID:    fmt.Sprintf("req-%d-%d", k, i%40),
			Status:       []int{200, 201, 404, 500, 302}[i%5],
			IP:           netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i%2, i%7+1)),
			Metadata:     map[string]any{"note": fmt.Sprintf("word%d", i%9)},
		}
		out = append(out, r)
	}
	return out
}

// TestPagesAcrossPartitionsMatchThePlainTable is a differential test of the windowed page
// queries: the same records, spread over many months with empty months between them, a dropped
// month whose records wait in the default partition, strays before and after every partition,
// and ties on occurred_at at the partition bounds, are stored in a partitioned audit_logs and in
// a plain one. Every page of every tenant, for a set of filters from broad to matching a few
// records, in both orders, with cursors, must be the same on both and equal the test's own
// model: the same records in the same order, none twice, none missing. History pages and
// exports are compared the same way.
func TestPagesAcrossPartitionsMatchThePlainTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	part, plain := pgtest.New(t), plainDB(t)
	if _, err := schema.CreatePartitions(ctx, part.Pool, monthStart(14), monthStart(0), schema.WithSchema(part.Schema)); err != nil {
		t.Fatal(err)
	}
	// A month without its partition (dropped while empty): its records go to the default one.
	gap := "audit_logs_p" + monthStart(8).Format("20060102")
	if _, err := part.Pool.Exec(ctx, `ALTER TABLE audit_logs DETACH PARTITION `+gap+`; DROP TABLE `+gap); err != nil {
		t.Fatal(err)
	}

	// plainDB leaves a record behind to keep the table plain; the model does not have it.
	if _, err := plain.Pool.Exec(ctx, `DELETE FROM audit_logs WHERE action = 'seed'`); err != nil {
		t.Fatal(err)
	}

	var all []*core.Record
	months := map[string][]int{
		"a": {-1, 0, 1, 2, 5, 8, 11, 13}, // -1: next month, a partition created ahead
		"b": {10, 12},                    // old records only: the newest page needs wide windows
		"c": {0, 13},
		"":  {3, 8},
	}
	for tenant, ks := range months {
		for _, k := range ks {
			all = append(all, spreadRecords(tenant, k, 30)...)
		}
	}
	// Strays: before every partition and after every one.
	for i, at := range []time.Time{monthStart(30), monthStart(30), monthStart(-40), monthStart(-40).Add(time.Hour)} {
		for _, tenant := range []string{"a", "c"} {
			r := spreadRecords(tenant, 0, 1)[6]
			r.OccurredAt, r.RequestID = at, fmt.Sprintf("stray-%d", i)
			all = append(all, r)
		}
	}
	// One row's history across the months, with ties at a bound.
	for i, k := range []int{13, 11, 8, 8, 8, 5, 2, 1, 1, 0, 0, -1} {
		at := monthStart(k).Add(time.Duration(i%3) * time.Hour)
		if i == 3 || i == 4 {
			at = monthStart(k) // tied with record 2
		}
		kind := core.KindUpdate
		if i == 0 {
			kind = core.KindInsert
		}
		all = append(all, &core.Record{ID: core.NewID(), OccurredAt: at, Kind: kind, Action: "accounts.update", Severity: core.SeverityInfo, Actor: core.Actor{ID: "u-9", Type: core.ActorTenantUser},
			Tenant: core.Tenant{ID: "a"}, ResourceType: "accounts", ResourceID: "acc-1",
			Diff: map[string]core.Change{"n": {From: i, To: i + 1}}, After: map[string]any{"n": i + 1}})
	}
	for _, db := range []*pgtest.DB{part, plain} {
		sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
		for c := range slices.Chunk(all, 200) {
			if err := sink.Write(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	var inDefault, partitions int
	if err := part.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs_default`).Scan(&inDefault); err != nil {
		t.Fatal(err)
	}
	if err := part.Pool.QueryRow(ctx, `SELECT count(DISTINCT tableoid) FROM audit_logs`).Scan(&partitions); err != nil {
		t.Fatal(err)
	}
	// The default partition holds the 8 strays and the dropped month's records: 33 of tenant a, 33
	// without a tenant, 3 of the history.
	if inDefault != 8+33+33+3 || partitions < 10 {
		t.Fatalf("the records are in %d partitions, %d in the default one: the test does not cross what it should", partitions, inDefault)
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

	filters := []struct {
		f     store.Filter
		limit int
	}{
		{store.Filter{}, 9},
		{store.Filter{}, 50},
		{store.Filter{Kinds: []core.Kind{core.KindInsert, core.KindUpdate}}, 13},
		{store.Filter{Action: "user.delete"}, 5},
		{store.Filter{ActionPrefix: "invoice."}, 20},
		{store.Filter{Severities: []core.Severity{core.SeverityCritical}, StatusMin: 300}, 4},
		{store.Filter{ResourceType: "users", ResourceID: "4"}, 2},
		{store.Filter{RequestID: "req-8-7"}, 1},
		{store.Filter{RequestID: "stray-1"}, 1},
		{store.Filter{IP: netip.MustParsePrefix("10.0.1.0/24"), ActorID: "u-1"}, 6},
		{store.Filter{IP: netip.MustParsePrefix("10.0.1.0/24"), ResourceType: "orders"}, 6},
		{store.Filter{Kinds: []core.Kind{core.KindDelete}, Action: "user.login", StatusMax: 300}, 3},
		{store.Filter{Search: "word3"}, 8},
		{store.Filter{From: monthStart(5), To: monthStart(1)}, 11},
		{store.Filter{From: monthStart(8).Add(-time.Microsecond)}, 17},
		{store.Filter{To: monthStart(2)}, 17},
		{store.Filter{From: monthStart(12), To: monthStart(12).Add(time.Microsecond)}, 2},
	}
	scopes := []store.Scope{store.TenantScope("a"), store.TenantScope("b"), store.TenantScope("c"), store.TenantScope("nobody"), store.AllTenantsScope()}
	for _, sc := range scopes {
		for _, tc := range filters {
			for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
				want := expected(all, sc, tc.f, order)
				q := store.Query{Filter: tc.f, Order: order, Limit: tc.limit}
				for name, st := range stores {
					got := listAll(t, st, sc, q)
					if !slices.Equal(got, want) {
						t.Errorf("%s %s %v %s, pages of %d: %d records differ from the %d expected (first difference at %d)",
							name, sc, tc.f.Values().Encode(), order, tc.limit, len(got), len(want), firstDiff(got, want))
					}
				}
			}
		}
	}

	// History of one row, and a field's history, page by page.
	hf := store.Filter{ResourceType: "accounts", ResourceID: "acc-1", Kinds: []core.Kind{core.KindInsert, core.KindUpdate, core.KindDelete}}
	for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
		want := expected(all, store.TenantScope("a"), hf, order)
		if len(want) != 12 {
			t.Fatalf("the model has %d history records, want 12", len(want))
		}
		for name, st := range stores {
			for _, limit := range []int{1, 2, 5} {
				var got, gotField []uuid.UUID
				q := store.HistoryQuery{Order: order, Limit: limit}
				for range 100 {
					p, err := st.History(ctx, store.TenantScope("a"), "accounts", "acc-1", q)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range p.Records {
						got = append(got, r.ID)
					}
					if q.Cursor = p.NextCursor; q.Cursor == "" {
						break
					}
				}
				q.Cursor = ""
				for range 100 {
					p, err := st.FieldHistory(ctx, store.TenantScope("a"), "accounts", "acc-1", "n", q)
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range p.Changes {
						gotField = append(gotField, c.Record.ID)
					}
					if q.Cursor = p.NextCursor; q.Cursor == "" {
						break
					}
				}
				if !slices.Equal(got, want) || !slices.Equal(gotField, want) {
					t.Errorf("%s history %s, pages of %d: %v and field history %v, want %v", name, order, limit, got, gotField, want)
				}
			}
		}
	}

	// Exports of a tenant and of all tenants, in both orders.
	for _, sc := range []store.Scope{store.TenantScope("a"), store.TenantScope("b"), store.AllTenantsScope()} {
		for _, order := range []store.Order{store.NewestFirst, store.OldestFirst} {
			want := expected(all, sc, store.Filter{}, order)
			for name, st := range stores {
				var buf bytes.Buffer
				n, err := st.Export(ctx, sc, store.Filter{}, store.ExportOptions{Format: store.FormatNDJSON, Order: order}, &buf)
				if err != nil {
					t.Fatal(err)
				}
				got := ndjsonIDs(t, buf.Bytes())
				if sc.AllTenants {
					// Across tenants the export groups by tenant: compare as sets here, the
					// order within each tenant is checked by the tenant exports.
					slices.SortFunc(got, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
					want = slices.Clone(want)
					slices.SortFunc(want, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
				}
				if n != int64(len(want)) || !slices.Equal(got, want) {
					t.Errorf("%s export %s %s: %d records (first difference at %d), want %d", name, sc, order, n, firstDiff(got, want), len(want))
				}
			}
		}
	}
}

// ndjsonIDs returns the ids of an NDJSON export, in order.
func ndjsonIDs(t *testing.T, b []byte) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			ID uuid.UUID `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		ids = append(ids, r.ID)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}
