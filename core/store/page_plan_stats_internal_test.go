package store

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// A tenant's page filtered by what the tenant/time index includes can read the index in order and
// evaluate the filter on it without reading the table (an index-only scan), and then reads only
// the page's rows by key. Filters it does not cover keep the plain shape. Whether the planner
// prefers that plan depends on how much of the table VACUUM has marked all-visible, which other
// tests' open transactions in the shared database hold back, so the plan is checked with bitmap
// scans and sorts off: it must exist. BENCHMARKS.md has the timings on a vacuumed table.
func TestFilteredPagePlanReadsKeysFromIndex(t *testing.T) {
	db := pgtest.New(t)
	pool := db.Pool
	s, err := New(pool, Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	// 20,000 rows over 20 tenants, one every 30 seconds; about 5% of a tenant's rows match each
	// filter below.
	if _, err := pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, severity, tenant_id, actor_id, resource_type, status, ip, metadata)
		SELECT gen_random_uuid(), now() - make_interval(secs => 30 * i),
		       CASE WHEN i % 97 < 5 THEN 'delete' ELSE 'http' END::audit_kind,
		       CASE WHEN i % 97 < 5 THEN 'invoices.delete' ELSE 'http.request' END,
		       CASE WHEN i % 89 < 5 THEN 'error' ELSE 'info' END::audit_severity,
		       't-' || (i % 20), 'u-' || (i % 53), 'invoices', CASE WHEN i % 83 < 5 THEN 500 ELSE 200 END,
		       ('10.0.' || (i % 7) || '.1')::inet, jsonb_build_object('note', repeat('some text of the size records carry ', 5))
		FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE audit_logs`); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	week := Filter{From: now.Add(-7 * 24 * time.Hour), To: now}
	covered := []Filter{
		{Kinds: []core.Kind{core.KindDelete}},
		{Severities: []core.Severity{core.SeverityError, core.SeverityCritical}},
		{StatusMin: 500},
		{IP: netip.MustParsePrefix("10.0.3.0/24")},
		{Action: "invoices.delete"},
		{ActionPrefix: "invoices."},
	}
	for _, f := range covered {
		f.From, f.To = week.From, week.To
		if !coveredByTenantTime(f) {
			t.Fatalf("filter %v is not taken for covered", f.Values().Encode())
		}
		text := explainPage(t, s, f)
		// On a partitioned audit_logs each partition has its own copy of the index, named after it
		// (audit_logs_tenant_time_idx_p20261201).
		if !tenantTimeIndexOnly.MatchString(text) || strings.Contains(text, "Seq Scan") || strings.Contains(text, "Bitmap") || strings.Contains(text, "->  Sort") {
			t.Errorf("filter %v: the page's keys do not come from the tenant/time index alone:\n%s", f.Values().Encode(), text)
		}
		page, err := s.List(ctx, TenantScope("t-0"), Query{Filter: f, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Records) == 0 || page.NextCursor == "" {
			t.Errorf("filter %v: %d records, cursor %q", f.Values().Encode(), len(page.Records), page.NextCursor)
		}
		for i, r := range page.Records {
			if r.TenantID != "t-0" || (i > 0 && !r.OccurredAt.Before(page.Records[i-1].OccurredAt)) {
				t.Fatalf("filter %v: record %d of tenant %q at %v out of order", f.Values().Encode(), i, r.TenantID, r.OccurredAt)
			}
		}
	}
	for _, f := range []Filter{{ActorID: "u-1"}, {Search: "note"}, {Changed: []string{"email"}}} {
		if coveredByTenantTime(f) {
			t.Errorf("filter %v is taken for covered", f.Values().Encode())
		}
	}
}

var tenantTimeIndexOnly = regexp.MustCompile(`Index Only Scan using audit_logs_tenant_time_idx\w* on`)

func explainPage(t *testing.T, s *Store, f Filter) string {
	t.Helper()
	ctx := context.Background()
	b := s.listSQL(TenantScope("t-0"), f, NewestFirst, nil, 50)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	return explain(t, tx, "EXPLAIN (ANALYZE, COSTS OFF) "+b.sb.String(), b.args...)
}

// explain runs an EXPLAIN statement through q and returns its plan as one text.
func explain(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, stmt string, args ...any) string {
	t.Helper()
	rows, err := q.Query(context.Background(), stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
