package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// plainDB returns a migrated schema whose audit_logs is not partitioned: what an installation
// made before migration 0006 has until it is converted.
func plainDB(tb testing.TB) *pgtest.DB {
	tb.Helper()
	db := pgtest.NewEmpty(tb)
	ctx := context.Background()
	ms, err := schema.Migrations()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+schema.VersionTable+` (version integer PRIMARY KEY, name text NOT NULL,
		checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		tb.Fatal(err)
	}
	for _, m := range ms {
		if m.Version == 6 {
			// A record makes migration 0006 leave the table as it is.
			if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action) VALUES (gen_random_uuid(), now(), 'custom', 'seed')`); err != nil {
				tb.Fatal(err)
			}
			break
		}
		if _, err := db.Pool.Exec(ctx, m.SQL); err != nil {
			tb.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO `+schema.VersionTable+` (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := schema.Migrate(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil {
		tb.Fatal(err)
	}
	if ok, err := schema.Partitioned(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil || ok {
		tb.Fatalf("plain table partitioned: %v %v", ok, err)
	}
	return db
}

// BenchmarkPartitionCopy compares the chained COPY writer (core.PostgresSink, batches of 1000
// records of 20 tenants) on a partitioned audit_logs and on a plain one. Run with -count to
// interleave them.
func BenchmarkPartitionCopy(b *testing.B) {
	for _, layout := range []string{"plain", "partitioned"} {
		b.Run(layout, func(b *testing.B) {
			var db *pgtest.DB
			if layout == "plain" {
				db = plainDB(b)
			} else {
				db = pgtest.New(b)
			}
			sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
			ctx := context.Background()
			batch := make([]*core.Record, 1000)
			n := 0
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				for i := range batch {
					n++
					batch[i] = &core.Record{ID: core.NewID(), OccurredAt: time.Now(), Kind: core.KindUpdate, Action: "invoice.update",
						Severity: core.SeverityInfo, Actor: core.Actor{ID: "u-" + strconv.Itoa(n%50), Type: core.ActorTenantUser},
						Tenant: core.Tenant{ID: "t-" + strconv.Itoa(n%20)}, ResourceType: "invoices", ResourceID: strconv.Itoa(n),
						RequestID: "req-" + strconv.Itoa(n), Metadata: map[string]any{"n": n}}
				}
				b.StartTimer()
				if err := sink.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkPartitionRetentionAndPages builds AUDITKIT_BENCH_ROWS records (default 1,000,000) of
// 20 tenants spread over 11 months, once in a partitioned audit_logs and once in a plain one,
// then measures pages (pageTimes) and the retention of the records older than two months:
// partition drops on the partitioned table, the batched delete of ApplyRetention on the plain
// one. Run with -benchtime 1x.
func BenchmarkPartitionRetentionAndPages(b *testing.B) {
	rows := 1_000_000
	if v := os.Getenv("AUDITKIT_BENCH_ROWS"); v != "" {
		var err error
		if rows, err = strconv.Atoi(v); err != nil || rows < 1000 {
			b.Fatalf("AUDITKIT_BENCH_ROWS=%q: want a number of at least 1000", v)
		}
	}
	ctx := context.Background()
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	part, plain := pgtest.New(b), plainDB(b)
	if _, err := schema.CreatePartitions(ctx, part.Pool, month.AddDate(0, -12, 0), month, schema.WithSchema(part.Schema)); err != nil {
		b.Fatal(err)
	}
	fill := func(db *pgtest.DB) time.Duration {
		start := time.Now()
		if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id, actor_id, resource_type, resource_id, request_id, metadata)
			SELECT gen_random_uuid(), now() - (g % 330) * interval '1 day' - (g % 86400) * interval '1 second', 'custom', 'doc.touched',
			       't-' || (g % 20), 'u-' || (g % 50), 'docs', (g % 1000)::text, 'req-' || g, '{"k": "v"}'
			FROM generate_series(1, $1::int) g`, rows); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE audit_logs`); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.Logf("filled the partitioned table in %s, the plain one in %s", fill(part).Round(time.Second), fill(plain).Round(time.Second))

	for b.Loop() {
		pageTimes(b, part, plain, rows)

		cutoff := month.AddDate(0, -2, 0)
		st, err := store.New(part.Pool, store.Options{Schema: part.Schema})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		drops, err := st.DropPartitions(ctx, cutoff, store.PartitionDropOptions{})
		dropTime := time.Since(start)
		st.Close()
		if err != nil {
			b.Fatal(err)
		}
		var dropped int64
		for _, d := range drops {
			dropped += d.Rows - d.Kept
		}
		deleted, deleteTime := batchedDelete(b, plain.Pool, plain.Schema, cutoff)
		b.ReportMetric(dropTime.Seconds(), "drop-s")
		b.ReportMetric(deleteTime.Seconds(), "delete-s")
		b.Logf("retention before %s: %d partitions dropped (%d records) in %s; batched delete of %d records in %s (%.0fx)",
			cutoff.Format(time.DateOnly), len(drops), dropped, dropTime.Round(time.Millisecond), deleted,
			deleteTime.Round(time.Millisecond), deleteTime.Seconds()/dropTime.Seconds())
		// The two tables are filled relative to now() a minute or so apart, and the delete's
		// cutoff is computed a moment later (now - MaxAge): a few records near the cutoff may
		// fall on either side of it in one table and not in the other.
		if diff := deleted - dropped; diff < -dropped/1000 || diff > dropped/1000 {
			b.Errorf("the drop removed %d records, the delete %d", dropped, deleted)
		}
	}
}

// batchedDelete runs the default retention policy's batched delete (ApplyRetention) with the
// cutoff given and returns how many records it deleted and how long it took.
func batchedDelete(b *testing.B, pool *pgxpool.Pool, schemaName string, cutoff time.Time) (int64, time.Duration) {
	b.Helper()
	st, err := store.New(pool, store.Options{Schema: schemaName})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	reports, err := st.ApplyRetention(context.Background(), store.RetentionPolicy{MaxAge: time.Since(cutoff)})
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, r := range reports {
		n += r.Deleted
	}
	if n == 0 {
		b.Fatal(fmt.Sprintf("the batched delete removed nothing before %s", cutoff))
	}
	return n, elapsed
}

// pageTimes measures, interleaved, first and second pages of 50 records of a random tenant
// (p50 and p95 over 200 of each) on the partitioned table read window by window, on the same
// table read with one unbounded statement per page, and on the plain table; then a page
// filtered by one request id (one record, which no window holds until the last) the same three
// ways. Each round runs the three in a rotating order, so that load from elsewhere falls on all
// three alike.
func pageTimes(b *testing.B, part, plain *pgtest.DB, rows int) {
	b.Helper()
	ctx := context.Background()
	newStore := func(db *pgtest.DB) *store.Store {
		st, err := store.New(db.Pool, store.Options{Schema: db.Schema})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		return st
	}
	windowed, unwindowed, flat := newStore(part), newStore(part), newStore(plain)
	store.UnwindowedPages(unwindowed)
	names := []string{"partitioned, windows", "partitioned, unbounded", "plain"}
	stores := []*store.Store{windowed, unwindowed, flat}
	for _, kind := range []string{"tenant page", "request id"} {
		rng := rand.New(rand.NewPCG(1, 2))
		times := make([][]time.Duration, len(stores))
		for i := range 400 {
			var sc store.Scope
			q := store.Query{Limit: 50}
			want := 50
			if kind == "tenant page" {
				sc = store.TenantScope("t-" + strconv.Itoa(rng.IntN(20)))
			} else {
				g := 1 + rng.IntN(rows)
				sc, q.Filter.RequestID, want = store.TenantScope("t-"+strconv.Itoa(g%20)), "req-"+strconv.Itoa(g), 1
			}
			for k := range stores {
				k = (k + i) % len(stores)
				q := q
				if kind == "tenant page" && i%2 == 1 {
					p, err := stores[k].List(ctx, sc, q)
					if err != nil {
						b.Fatal(err)
					}
					q.Cursor = p.NextCursor
				}
				start := time.Now()
				p, err := stores[k].List(ctx, sc, q)
				times[k] = append(times[k], time.Since(start))
				if err != nil || len(p.Records) != want {
					b.Fatalf("%s %s: %d records, %v", names[k], kind, len(p.Records), err)
				}
			}
		}
		for k, ts := range times {
			slices.Sort(ts)
			p50, p95 := ts[len(ts)/2], ts[len(ts)*95/100]
			b.Logf("%s of %d records, %s: p50 %s p95 %s", kind, rows, names[k], p50, p95)
			if kind == "tenant page" {
				b.ReportMetric(float64(p95.Microseconds())/1000, "page-p95-ms-"+strings.ReplaceAll(strings.ReplaceAll(names[k], ", ", "-"), " ", ""))
			}
		}
	}
}
