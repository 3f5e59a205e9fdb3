package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// BenchmarkStatsWriteCost measures what migration 0007 costs the writer: COPY batches of 500
// audit-sized records through core.PostgresSink into audit_logs migrated up to 0006, and up to
// 0007 (its triggers and the wider tenant/time index) with no hour counted yet, with the hours
// before now counted (the triggers compare each row with the last counted hour), and with every
// record landing in a counted hour (each batch notes its hours as changed: the late-record
// path), and up to 0008 with the hours counted (0008 adds nothing to audit_logs: the same as
// 0007_hours_counted). Sub-benchmarks interleave when run with -count; compare rows/s within one run.
//
//	go test ./core/store -run '^$' -bench StatsWriteCost -benchtime 40x -count 4
func BenchmarkStatsWriteCost(b *testing.B) {
	migs, err := schema.Migrations()
	if err != nil {
		b.Fatal(err)
	}
	variants := []struct {
		name  string
		upTo  int
		setup string
		late  bool
	}{
		{"up_to_0006", 6, "", false},
		{"0007", 7, "", false},
		{"0007_hours_counted", 7, `INSERT INTO audit_stats_units (grain, start, rolled_mark)
			SELECT 'h', h, 0 FROM generate_series(date_trunc('hour', now()) - interval '48 hours', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h`, false},
		{"0008_hours_counted", 8, `INSERT INTO audit_stats_units (grain, start, rolled_mark)
			SELECT 'h', h, 0 FROM generate_series(date_trunc('hour', now()) - interval '48 hours', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h`, false},
		{"0007_late_records", 7, `INSERT INTO audit_stats_units (grain, start, rolled_mark)
			SELECT 'h', h, 0 FROM generate_series(date_trunc('hour', now()) - interval '48 hours', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h`, true},
	}
	batch := writeCostBatch(500)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := pgtest.Create(ctx, "bench_statswrite", false)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Drop(ctx)
			for _, m := range migs {
				if m.Version > v.upTo {
					break
				}
				if _, err := db.Pool.Exec(ctx, m.SQL); err != nil {
					b.Fatalf("%s: %v", m.Name, err)
				}
			}
			if v.setup != "" {
				if _, err := db.Pool.Exec(ctx, v.setup); err != nil {
					b.Fatal(err)
				}
			}
			sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
			at := time.Now()
			if v.late {
				at = at.Add(-3 * time.Hour)
			}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				for _, r := range batch {
					r.ID = core.NewID()
					r.OccurredAt = at
				}
				if err := sink.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "rows/s")
			if v.late {
				var n int
				if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "audit_stats_dirty"}.Sanitize()).Scan(&n); err != nil || n == 0 {
					b.Fatalf("late records noted %d changed hours (%v)", n, err)
				}
			}
		})
	}
}
