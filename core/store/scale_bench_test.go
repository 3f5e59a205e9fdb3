package store

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
)

var (
	scaleRows      = flag.Int("scale.rows", 1_000_000, "BenchmarkScale: rows to generate in audit_logs")
	scaleKeep      = flag.Bool("scale.keep", false, "BenchmarkScale: keep the generated database and print its name")
	scaleDB        = flag.String("scale.db", "", "BenchmarkScale: measure a database kept by -scale.keep instead of generating one")
	scaleRetention = flag.Bool("scale.retention", false, "BenchmarkScale: end with retention (a batched delete, then a partition drop); it deletes most of the rows")
)

// BenchmarkScale measures the read side and the writer against an audit_logs of -scale.rows rows
// (100 tenants over 30 days, half HTTP records, half row changes with before/after images, like
// cmd/loadgen's), generated in PostgreSQL with INSERT … SELECT generate_series in a database of
// its own, which it drops at the end. It prints one table: the load, filtered pages (tenant + 7
// days + one filter, 50 per page, through List), an export of every row (rows/s, peak Go heap),
// the writer's COPY rows/s into the full table, and stats over 30 days (all tenants and one).
// With -scale.retention it ends with retention on the same rows: a batched delete of the first
// three days (ApplyRetention's statement), then DropPartitions of the month before the current
// one, so that both are measured at the table's size. -scale.keep keeps the database (its name is
// printed) and -scale.db measures a kept one again without generating it. It runs only when
// asked for:
//
//	go test ./core/store -run '^$' -bench Scale -benchtime 1x -timeout 3h -scale.rows 10000000
func BenchmarkScale(b *testing.B) {
	for b.Loop() {
		benchScale(b, *scaleRows)
	}
}

func benchScale(b *testing.B, rows int) {
	ctx := context.Background()
	var pool *pgxpool.Pool
	if *scaleDB != "" {
		pool = existingDatabase(b, *scaleDB)
	} else {
		pool = ownDatabase(b, "auditkit_scale")
	}
	s, err := New(pool, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	report := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	var start, end time.Time
	if *scaleDB != "" {
		if err := pool.QueryRow(ctx, `SELECT count(*), min(occurred_at), max(occurred_at) FROM audit_logs`).Scan(&rows, &start, &end); err != nil {
			b.Fatal(err)
		}
		report("## audit_logs with %d rows (database %s, generated earlier)", rows, *scaleDB)
	} else {
		start, end = scaleGenerate(ctx, b, pool, rows, report)
	}
	if *scaleKeep && *scaleDB == "" {
		keepDatabase(b, pool)
	}

	// Filtered pages.
	rng := rand.New(rand.NewPCG(7, 11))
	week := Filter{From: end.AddDate(0, 0, -7), To: end.Add(time.Minute)}
	type filter struct {
		name string
		f    func() Filter
	}
	with := func(g func(f *Filter)) func() Filter {
		return func() Filter { f := week; g(&f); return f }
	}
	filters := []filter{
		{"no time range", func() Filter { return Filter{} }},
		{"actor_id", with(func(f *Filter) { f.ActorID = fmt.Sprintf("user-%02d", rng.IntN(50)) })},
		{"action", with(func(f *Filter) { f.Action = scaleResources[rng.IntN(len(scaleResources))] + ".update" })},
		{"action_prefix", with(func(f *Filter) { f.ActionPrefix = scaleResources[rng.IntN(len(scaleResources))] + "." })},
		{"kind", with(func(f *Filter) { f.Kinds = []core.Kind{core.KindDelete} })},
		{"severity", with(func(f *Filter) { f.Severities = []core.Severity{core.SeverityError, core.SeverityCritical} })},
		{"status_min", with(func(f *Filter) { f.StatusMin = 500 })},
		{"ip", with(func(f *Filter) { f.IP = netip.MustParsePrefix(fmt.Sprintf("10.0.%d.0/24", rng.IntN(2))) })},
		{"q_common", with(func(f *Filter) { f.Search = []string{"billing", "crm", "reports", "admin", "search"}[rng.IntN(5)] })},
	}
	const pages = 100
	report("| filter | p50 | p95 | p99 | records per page |\n|---|---:|---:|---:|---:|")
	var all []time.Duration
	for _, fl := range filters {
		var lat []time.Duration
		got := 0
		for i := range pages + 10 {
			sc := TenantScope(fmt.Sprintf("tenant-%03d", rng.IntN(100)))
			t := time.Now()
			p, err := s.List(ctx, sc, Query{Filter: fl.f(), Limit: 50})
			if err != nil {
				b.Fatal(err)
			}
			if i >= 10 {
				lat = append(lat, time.Since(t))
				got += len(p.Records)
			}
		}
		all = append(all, lat...)
		p := scalePercentiles(lat)
		report("| %s | %s | %s | %s | %.1f |", fl.name, scaleMS(p[50]), scaleMS(p[95]), scaleMS(p[99]), float64(got)/pages)
	}
	p := scalePercentiles(all)
	report("| **all** | %s | **%s** | %s | |\n", scaleMS(p[50]), scaleMS(p[95]), scaleMS(p[99]))

	// Export of every row, storage order, NDJSON.
	runtime.GC()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})
	t2 := time.Now()
	n, err := s.Export(ctx, AllTenantsScope(), Filter{IncludeMeta: true}, ExportOptions{Format: FormatNDJSON}, io.Discard)
	d := time.Since(t2)
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	report("export: %d rows in %s, %.0f rows/s, peak Go heap %.1f MiB\n", n, d.Round(10*time.Millisecond), float64(n)/d.Seconds(), float64(peak)/(1<<20))

	// The writer into the full table (every index, the triggers).
	sink := core.NewPostgresSink(pool, core.PostgresSinkOptions{})
	batch := scaleWriterBatch(500)
	t3 := time.Now()
	const batches = 40
	for range batches {
		for _, r := range batch {
			r.ID = core.NewID()
			r.OccurredAt = time.Now()
		}
		if err := sink.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	report("writer: %.0f rows/s (%d COPY batches of %d, chained)\n", float64(batches*len(batch))/time.Since(t3).Seconds(), batches, len(batch))

	// Stats over 30 days: counting the closed hours once, then requests.
	t4 := time.Now()
	if err := s.RefreshStats(ctx, start, end); err != nil {
		b.Fatal(err)
	}
	report("stats: counting the 30 days' closed hours once took %s", time.Since(t4).Round(10*time.Millisecond))
	report("| scope | bucket | p50 | p95 | max |\n|---|---|---:|---:|---:|")
	for _, c := range []struct {
		name   string
		sc     func() Scope
		bucket Bucket
	}{
		{"all tenants", AllTenantsScope, BucketDay},
		{"all tenants", AllTenantsScope, BucketHour},
		{"one tenant", func() Scope { return TenantScope(fmt.Sprintf("tenant-%03d", rng.IntN(100))) }, BucketDay},
	} {
		var lat []time.Duration
		for i := range 25 {
			t := time.Now()
			to := time.Now().UTC()
			if _, err := s.Stats(ctx, c.sc(), StatsQuery{Filter: Filter{From: to.AddDate(0, 0, -30), To: to}, Bucket: c.bucket}); err != nil {
				b.Fatal(err)
			}
			if i >= 5 {
				lat = append(lat, time.Since(t))
			}
		}
		p := scalePercentiles(lat)
		report("| %s | %s | %s | %s | %s |", c.name, c.bucket, scaleMS(p[50]), scaleMS(p[95]), scaleMS(p[100]))
	}
	var scanned time.Duration
	for range 3 {
		to := time.Now().UTC()
		t := time.Now()
		var st Stats
		f := Filter{From: to.AddDate(0, 0, -30), To: to}
		if err := s.scanStats(ctx, AllTenantsScope(), f, BucketDay, 10, &st, map[int64]int64{}); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(t); scanned == 0 || d < scanned {
			scanned = d
		}
	}
	report("| all tenants, one scan of audit_logs (no counts), best of 3 | day | | | %s |\n", scaleMS(scanned))

	if *scaleRetention {
		scaleRetentionPhase(ctx, b, s, start, report)
	}
}

// scaleRetentionPhase measures both ways of retention on the same table: ApplyRetention's
// batched delete of the records of the first three days, then DropPartitions of every partition
// before the current month.
func scaleRetentionPhase(ctx context.Context, b *testing.B, s *Store, start time.Time, report func(string, ...any)) {
	cutoff := start.Add(72 * time.Hour)
	t := time.Now()
	reps, err := s.ApplyRetention(ctx, RetentionPolicy{MaxAge: time.Since(cutoff)})
	if err != nil {
		b.Fatal(err)
	}
	deleteTook := time.Since(t)
	var deleted int64
	for _, r := range reps {
		deleted += r.Deleted
	}
	deleteRate := float64(deleted) / deleteTook.Seconds()
	report("retention, batched delete (ApplyRetention, records before %s): %d records in %s, %.0f records/s",
		cutoff.Format(time.DateTime), deleted, deleteTook.Round(10*time.Millisecond), deleteRate)
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	t = time.Now()
	drops, err := s.DropPartitions(ctx, month, PartitionDropOptions{})
	if err != nil {
		b.Fatal(err)
	}
	dropTook := time.Since(t)
	var dropped int64
	for _, d := range drops {
		dropped += d.Rows - d.Kept
	}
	report("retention, partition drop (DropPartitions before %s): %d partitions, %d records in %s; the batched delete's rate would take %s for them",
		month.Format(time.DateOnly), len(drops), dropped, dropTook.Round(10*time.Millisecond),
		(time.Duration(float64(dropped)/deleteRate) * time.Second).Round(time.Second))
}

// scaleGenerate fills pool's audit_logs with rows rows over the 30 days before now, builds its
// indexes and returns the time range.
func scaleGenerate(ctx context.Context, b *testing.B, pool *pgxpool.Pool, rows int, report func(string, ...any)) (start, end time.Time) {
	report("## audit_logs with %d rows", rows)

	// Load without the secondary indexes, then build them, as a bulk load would.
	var defs []string
	if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(indexdef), '{}') FROM pg_indexes
		WHERE schemaname = 'public' AND tablename = 'audit_logs' AND indexname <> 'audit_logs_pkey'`).Scan(&defs); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'audit_logs' AND indexname <> 'audit_logs_pkey' LOOP
			EXECUTE format('DROP INDEX %I', r.indexname);
		END LOOP; END $$`); err != nil {
		b.Fatal(err)
	}
	end = time.Now().UTC().Add(-time.Minute)
	start = end.AddDate(0, 0, -30)
	step := fmt.Sprintf("%d microseconds", (end.Sub(start) / time.Duration(rows)).Microseconds())
	// The partitions a deployment running for a month would have (migration 0006).
	if _, err := pool.Exec(ctx, `SELECT audit_create_partitions('audit_logs', $1, $2)`, start, end); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	const chunk = 500_000
	for lo := 1; lo <= rows; lo += chunk {
		if _, err := pool.Exec(ctx, scaleInsert, start, step, lo, min(lo+chunk-1, rows)); err != nil {
			b.Fatal(err)
		}
	}
	loaded := time.Since(t0)
	t1 := time.Now()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '512MB'`); err != nil {
		b.Fatal(err)
	}
	for _, def := range defs {
		// A partitioned table's index reads "ON ONLY audit_logs": built that way it would cover no
		// partition.
		def = strings.Replace(def, " ON ONLY ", " ON ", 1)
		if _, err := conn.Exec(ctx, def); err != nil {
			b.Fatalf("%s: %v", def, err)
		}
	}
	if _, err := conn.Exec(ctx, `VACUUM (ANALYZE) audit_logs`); err != nil {
		b.Fatal(err)
	}
	conn.Release()
	var size, heap string
	if err := pool.QueryRow(ctx, `SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))), pg_size_pretty(sum(pg_relation_size(c.oid)))
		FROM pg_class c WHERE c.oid = 'audit_logs'::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass)`).Scan(&size, &heap); err != nil {
		b.Fatal(err)
	}
	report("generated in %s, indexes and VACUUM ANALYZE in %s; %s with indexes (table %s)\n",
		loaded.Round(time.Second), time.Since(t1).Round(time.Second), size, heap)

	return start, end
}

var scaleResources = []string{"invoices", "customers", "orders", "users", "projects", "tickets", "payments", "subscriptions", "documents", "teams"}

// scaleInsert generates rows $3 to $4 of the data set, one every $2 from $1, tenants interleaved.
const scaleInsert = `
INSERT INTO audit_logs (id, occurred_at, kind, action, severity, tenant_id, tenant_slug, actor_id, actor_type, actor_email,
                        actor_auth, resource_type, resource_id, before, after, diff, request_id, method, route, path, query,
                        status, duration_us, ip, user_agent, metadata)
SELECT (lpad(to_hex((extract(epoch FROM g.t) * 1000)::bigint), 12, '0') || '7' || substr(g.h, 1, 3) || '8' || substr(g.h, 4, 15))::uuid,
       g.t, g.kind::audit_kind,
       CASE g.kind WHEN 'http' THEN 'http.request'
                   WHEN 'custom' THEN (ARRAY['user.login', 'user.logout', 'invoice.sent', 'export.requested', 'tenant.settings_changed', 'api_key.rotated'])[1 + g.i % 6]
                   ELSE g.res || '.' || g.kind END,
       (CASE WHEN g.kind = 'http' AND g.status >= 500 THEN 'error'
             WHEN g.kind = 'http' AND g.status IN (401, 403) THEN 'warning'
             WHEN g.rs < 0.9 THEN 'info' WHEN g.rs < 0.96 THEN 'warning' WHEN g.rs < 0.995 THEN 'error' ELSE 'critical' END)::audit_severity,
       'tenant-' || lpad(g.tn::text, 3, '0'), 't' || lpad(g.tn::text, 3, '0'),
       'user-' || lpad(g.actor::text, 2, '0'), 'tenant_user', 'user-' || lpad(g.actor::text, 2, '0') || '@tenant-' || g.tn || '.example', 'jwt:RS256',
       g.res, g.rid::text,
       CASE WHEN g.kind IN ('update', 'delete') THEN g.image END,
       CASE WHEN g.kind IN ('update', 'insert') THEN g.image END,
       CASE WHEN g.kind = 'update' THEN '{"status": {"from": "open", "to": "sent"}, "amount": {"from": 10, "to": 12}}'::jsonb END,
       'req-' || substr(g.h, 20, 13),
       CASE WHEN g.kind = 'http' THEN (ARRAY['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'])[1 + g.i % 6] END,
       CASE WHEN g.kind = 'http' THEN '/api/v1/' || g.res || '/:id' END,
       CASE WHEN g.kind = 'http' THEN '/api/v1/' || g.res || '/' || g.rid END,
       CASE WHEN g.kind = 'http' AND g.i % 4 = 0 THEN '{"page": ["2"], "sort": ["-updated_at"]}'::jsonb END,
       CASE WHEN g.kind = 'http' THEN g.status END,
       CASE WHEN g.kind = 'http' THEN 200 + g.i % 50000 END,
       CASE WHEN g.kind = 'http' THEN ('10.' || (g.i % 2) || '.' || (g.i / 7 % 2) || '.' || (1 + g.i % 250))::inet END,
       CASE WHEN g.kind = 'http' THEN 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15' END,
       jsonb_build_object('source', (ARRAY['web', 'api', 'job', 'cli'])[1 + g.i % 4],
                          'feature', (ARRAY['billing', 'crm', 'reports', 'admin', 'search'])[1 + g.i / 3 % 5],
                          'trace_id', substr(g.h, 1, 16), 'client', (ARRAY['web-app', 'mobile', 'partner-api'])[1 + g.i % 3])
FROM (SELECT x.*,
             CASE WHEN x.rk < 0.5 THEN 'http' WHEN x.rk < 0.75 THEN 'update' WHEN x.rk < 0.87 THEN 'insert'
                  WHEN x.rk < 0.92 THEN 'delete' ELSE 'custom' END AS kind,
             (ARRAY[200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201, 201, 204, 400, 401, 403, 404, 404, 500])[1 + x.i % 25] AS status,
             jsonb_build_object('id', x.rid, 'name', x.res || ' ' || x.rid || ' of the account', 'status', (ARRAY['draft', 'open', 'sent', 'paid', 'closed'])[1 + x.i % 5],
                                'amount', x.i % 100000, 'currency', 'EUR', 'owner', 'user-' || (x.i % 50), 'tags', jsonb_build_array('web', 'billing'),
                                'notes', 'Imported from the legacy system; reviewed by the finance team on the last working day of the quarter.',
                                'updated_by', 'user-' || (x.i % 47), 'version', x.i % 20) AS image
      FROM (SELECT i, $1::timestamptz + (i - 1) * $2::interval + make_interval(secs => (random() * 60 - 30)) AS t,
                   md5(i::text) AS h, (i * 7919) % 100 AS tn, random() AS rk, random() AS rs,
                   (random() * 49)::int AS actor, (ARRAY['invoices', 'customers', 'orders', 'users', 'projects', 'tickets', 'payments', 'subscriptions', 'documents', 'teams'])[1 + (random() * 9)::int] AS res,
                   (random() * 5000)::int AS rid
            FROM generate_series($3::bigint, $4::bigint) AS i) x) g`

// scaleWriterBatch makes records of the size the writer benchmarks use (~1.1 kB stored).
func scaleWriterBatch(n int) []*core.Record {
	red := core.NewRedactor(nil, nil)
	out := make([]*core.Record, n)
	for i := range out {
		r := &core.Record{
			Kind: core.KindUpdate, Action: "invoices.update", Severity: core.SeverityInfo,
			Tenant:       core.Tenant{ID: fmt.Sprintf("tenant-%03d", rand.IntN(100))},
			Actor:        core.Actor{ID: fmt.Sprintf("user-%02d", rand.IntN(50)), Type: core.ActorTenantUser, Email: "user@example.com", Auth: "jwt:HS256"},
			ResourceType: "invoices", ResourceID: fmt.Sprint(rand.IntN(100000)), RequestID: "req-0123456789",
			Before: map[string]any{"amount": 100, "status": "draft", "customer": "acme corporation", "notes": strings.Repeat("lorem ipsum ", 20)},
			After:  map[string]any{"amount": 120, "status": "sent", "customer": "acme corporation", "notes": strings.Repeat("lorem ipsum ", 20)},
			Diff:   map[string]core.Change{"amount": {From: 100, To: 120}, "status": {From: "draft", To: "sent"}},
			Method: "PUT", Route: "/invoices/:id", Path: fmt.Sprintf("/invoices/%d", i), Status: 200,
			Duration: 1200 * time.Microsecond, IP: netip.MustParseAddr("10.1.2.3"), UserAgent: "Mozilla/5.0",
			Metadata: map[string]any{"source": "web", "feature": "billing.v2"},
		}
		out[i] = red.Record(r)
	}
	return out
}

// scalePercentiles returns the 50th, 95th, 99th and 100th percentiles (nearest rank).
func scalePercentiles(d []time.Duration) map[int]time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	out := map[int]time.Duration{}
	for _, p := range []int{50, 95, 99, 100} {
		i := (p*len(s)+99)/100 - 1
		out[p] = s[max(0, min(i, len(s)-1))]
	}
	return out
}

func scaleMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
