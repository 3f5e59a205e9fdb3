package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// Leaving the service's own records out keeps a tenant's page on the tenant/time index, even
// when the tenant's newest records are mostly the service's own: the exclusion is a filter on
// the rows the index yields, not a different plan.
func TestIncludeMetaPagePlan(t *testing.T) {
	db := pgtest.New(t)
	s, err := New(db.Pool, Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	// 60,000 rows over 20 tenants; the newest 1,500 of t-0's 3,000 are the service's own.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id, resource_type)
		SELECT gen_random_uuid(), now() - make_interval(secs => i), 'custom', 'x', 't-' || (i % 20),
		       CASE WHEN i % 20 = 0 AND i < 30000 THEN 'audit_logs' ELSE 'invoices' END
		FROM generate_series(1, 60000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE audit_logs`); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Filter{{}, {IncludeMeta: true}, {ActionPrefix: "x"}} {
		var b sqlBuilder
		b.w("SELECT ", selectColumns, " FROM ", s.logs)
		s.where(&b, TenantScope("t-0"), f)
		b.w(" ORDER BY occurred_at DESC, id DESC LIMIT ", b.arg(51))
		text := explain(t, db.Pool, "EXPLAIN (ANALYZE, COSTS OFF) "+b.sb.String(), b.args...)
		if !strings.Contains(text, "audit_logs_tenant_time_idx") || strings.Contains(text, "Seq Scan") || strings.Contains(text, "Sort (") {
			t.Errorf("filter %+v: the page does not read the tenant/time index in order:\n%s", f, text)
		}
		t.Logf("filter %v: %s", f.Values().Encode(), text[strings.LastIndexByte(text, '\n')+1:])
	}
	// The same page, timed through List.
	start := time.Now()
	page, err := s.List(ctx, TenantScope("t-0"), Query{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 50 {
		t.Fatalf("%d records", len(page.Records))
	}
	t.Logf("a default page past 1,500 of the service's own records: %v", time.Since(start).Round(10*time.Microsecond))
}
