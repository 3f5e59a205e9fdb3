package core_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/chaintest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// BenchmarkVerify verifies a chain of 500,000 records (AUDITKIT_VERIFY_BENCH_ROWS to change it),
// written by COPY with the hashes core computes, and reports rows/s and allocations per row.
//
//	go test -run '^$' -bench BenchmarkVerify -benchtime 3x ./core/
func BenchmarkVerify(b *testing.B) {
	n := 500_000
	if s := os.Getenv("AUDITKIT_VERIFY_BENCH_ROWS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	db := pgtest.New(b)
	ctx := context.Background()
	if _, err := chaintest.Append(ctx, db.Pool, "acme", n); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE audit_logs`); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		rep, err := core.Verify(ctx, db.Pool, "acme", core.VerifyOptions{Schema: db.Schema})
		if err != nil || !rep.OK || rep.Rows != int64(n) {
			b.Fatalf("%+v, %v", rep, err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	rows := float64(n) * float64(b.N)
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/rows, "allocs/row")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/rows, "B/row")
}
