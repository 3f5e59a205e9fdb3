package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
)

var actualRows = regexp.MustCompile(`actual time=[0-9.]+\.\.[0-9.]+ rows=([0-9]+)`)

// BenchmarkHistory reads a row with 10,000 versions, in a table of 1,000,000 records (100
// tenants, 20 tables, 5,000 ids each, a year of history): AsOf at random times, and pages of 50
// of History from random cursors. Loading takes a minute or more; the full-text search index,
// which neither uses, is dropped first so that the load is faster. AsOf's plan is checked to read
// one index entry, not the row's history.
//
//	go test ./core/store -run '^$' -bench 'History/' -benchtime 2000x
func BenchmarkHistory(b *testing.B) {
	const total, versions = 1_000_000, 10_000
	db := pgtest.New(b)
	ctx := context.Background()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []string{
		`DROP INDEX audit_logs_search_idx`,
		// The rest of the table: kinds and images like the ORM integrations' records.
		fmt.Sprintf(`INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id, actor_id, resource_type, resource_id, after, diff)
			SELECT gen_random_uuid(), $1::timestamptz + (g * interval '31 second'), 'update', 'table' || (g %% 20) || '.update',
				'tenant-' || (g %% 100), 'user-' || (g %% 977), 'table' || (g %% 20), ((g / 2000) %% 5000)::text,
				jsonb_build_object('id', (g / 2000) %% 5000, 'name', 'name ' || g, 'qty', g %% 17),
				jsonb_build_object('qty', jsonb_build_object('from', 0, 'to', g %% 17))
			FROM generate_series(1, %d) g`, total-versions),
		// The row with many versions, spread over the same year.
		fmt.Sprintf(`INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id, actor_id, resource_type, resource_id, after, diff)
			SELECT gen_random_uuid(), $1::timestamptz + (g * interval '3131 second'), CASE WHEN g = 1 THEN 'insert' ELSE 'update' END::audit_kind,
				'items.update', 'tenant-7', 'user-1', 'items', '42', jsonb_build_object('id', 42, 'version', g),
				jsonb_build_object('version', jsonb_build_object('from', g - 1, 'to', g))
			FROM generate_series(1, %d) g`, versions),
		`ANALYZE audit_logs`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, start)
		}
		if _, err := db.Pool.Exec(ctx, q, args...); err != nil {
			b.Fatalf("%s: %v", q[:40], err)
		}
	}
	st, err := store.New(db.Pool, store.Options{Schema: db.Schema})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sc := store.TenantScope("tenant-7")
	first, end := start.Add(3131*time.Second), start.Add(versions*3131*time.Second)

	// The statement AsOf runs reads one entry of the index (occurred_at descending) from t, and
	// the records of that microsecond: no sort, no scan of the row's versions.
	var plan strings.Builder
	cond := `tenant_id = $1 AND resource_type = 'items' AND resource_id = '42' AND kind::text = ANY('{insert,update,delete}')
		AND (resource_type IS NULL OR resource_type NOT IN ('audit_logs', 'audit_tenants'))`
	rows, err := db.Pool.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) SELECT id FROM audit_logs WHERE `+cond+`
		AND occurred_at = (SELECT occurred_at FROM audit_logs WHERE `+cond+` AND occurred_at <= $2 ORDER BY occurred_at DESC LIMIT 1)
		ORDER BY id DESC LIMIT 1`, "tenant-7", start.Add(end.Sub(start)/2))
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			b.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if rows.Err() != nil {
		b.Fatal(rows.Err())
	}
	// Whatever the partitions, the plan reads the row's index at t and no node handles more
	// than the records of one microsecond.
	found := false
	for _, line := range strings.Split(plan.String(), "\n") {
		found = found || strings.Contains(line, "Index Scan") && strings.Contains(line, "resource") && strings.Contains(line, "rows=1 loops=1")
		if m := actualRows.FindStringSubmatch(line); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > 10 {
				b.Fatalf("a node of AsOf's plan handles %d rows:\n%s", n, plan.String())
			}
		}
	}
	if !found {
		b.Fatalf("AsOf does not read one entry of the tenant/resource index:\n%s", plan.String())
	}
	b.Logf("plan:\n%s", plan.String())
	b.Run("AsOf", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			t := first.Add(time.Duration(rng.Int64N(int64(end.Sub(first)))))
			sn, err := st.AsOf(ctx, sc, "items", "42", t)
			if err != nil {
				b.Fatal(err)
			}
			if sn.Record.OccurredAt.After(t) {
				b.Fatalf("record at %s for %s", sn.Record.OccurredAt, t)
			}
		}
	})

	// Cursors at random places of the history, taken from pages of one record.
	var cursors []string
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		p, err := st.History(ctx, sc, "items", "42", store.HistoryQuery{Limit: 1, Cursor: ""})
		if err != nil {
			b.Fatal(err)
		}
		for range rng.IntN(20) {
			if p, err = st.History(ctx, sc, "items", "42", store.HistoryQuery{Limit: 1 + rng.IntN(500), Cursor: p.NextCursor}); err != nil {
				b.Fatal(err)
			}
		}
		cursors = append(cursors, p.NextCursor)
	}
	b.Run("Page", func(b *testing.B) {
		i := 0
		for b.Loop() {
			p, err := st.History(ctx, sc, "items", "42", store.HistoryQuery{Limit: 50, Cursor: cursors[i%len(cursors)]})
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Records) != 50 {
				b.Fatalf("%d records", len(p.Records))
			}
			i++
		}
	})
	// The same pages through List, whose cursors History shares: one statement ordered by
	// (occurred_at, id), which sorts the history beyond the cursor.
	b.Run("PageByList", func(b *testing.B) {
		f := store.Filter{ResourceType: "items", ResourceID: "42", Kinds: []core.Kind{core.KindInsert, core.KindUpdate, core.KindDelete}}
		i := 0
		for b.Loop() {
			p, err := st.List(ctx, sc, store.Query{Filter: f, Limit: 50, Cursor: cursors[i%len(cursors)]})
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Records) != 50 {
				b.Fatalf("%d records", len(p.Records))
			}
			i++
		}
	})
}
