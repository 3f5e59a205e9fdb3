package store

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

var statsReadSchema = flag.String("statsread.schema", "", "BenchmarkStatsRead: schema of a data set made by loadgen load (for example stats_1m)")

// BenchmarkStatsRead measures Stats over the last 30 days on a data set made by loadgen, across
// all tenants and for one tenant, with day and hour buckets, answered from the counts of
// migration 0008 (weeks, days, hours) and, interleaved request by request in the same process,
// from days and hours only (the reads of migration 0007). It counts the closed hours first.
//
//	loadgen load -schema stats_1m -rows 1000000 -tenants 100 -days 30
//	go test ./core/store -run '^$' -bench StatsRead -benchtime 1x -statsread.schema stats_1m
func BenchmarkStatsRead(b *testing.B) {
	if *statsReadSchema == "" {
		b.Skip("needs -statsread.schema, the schema of a loadgen data set")
	}
	for b.Loop() {
		benchStatsRead(b, *statsReadSchema)
	}
}

func benchStatsRead(b *testing.B, schemaName string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	s, err := New(pool, Options{Schema: schemaName})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var first, last time.Time
	if err := pool.QueryRow(ctx, `SELECT min(occurred_at), max(occurred_at) FROM `+s.logs).Scan(&first, &last); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := s.RefreshStats(ctx, first, time.Now()); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("counting the closed hours (and summing days and weeks) took %s\n", time.Since(t0).Round(10*time.Millisecond))
	rng := rand.New(rand.NewPCG(1, 2))
	const runs = 60
	fmt.Printf("| scope | bucket | reads | p50 | p95 | max | CPU of this process per request |\n|---|---|---|---:|---:|---:|---:|\n")
	for _, c := range []struct {
		name   string
		sc     func() Scope
		bucket Bucket
	}{
		{"all tenants", AllTenantsScope, BucketDay},
		{"all tenants", AllTenantsScope, BucketHour},
		{"one tenant", func() Scope { return TenantScope(fmt.Sprintf("tenant-%03d", rng.IntN(100))) }, BucketDay},
		{"one tenant", func() Scope { return TenantScope(fmt.Sprintf("tenant-%03d", rng.IntN(100))) }, BucketHour},
	} {
		lat := map[bool][]time.Duration{}
		cpu := map[bool]time.Duration{}
		for i := range runs + 5 {
			for _, weeks := range []bool{i%2 == 0, i%2 != 0} {
				to := time.Now().UTC()
				q := StatsQuery{Filter: Filter{From: to.AddDate(0, 0, -30), To: to}, Bucket: c.bucket}
				c0 := cpuTime()
				t := time.Now()
				if _, err := s.stats(ctx, c.sc(), q, weeks); err != nil {
					b.Fatal(err)
				}
				if i >= 5 {
					lat[weeks] = append(lat[weeks], time.Since(t))
					cpu[weeks] += cpuTime() - c0
				}
			}
		}
		for _, weeks := range []bool{true, false} {
			name := "weeks, days, hours (0008)"
			if !weeks {
				name = "days, hours (0007)"
			}
			l := lat[weeks]
			slices.Sort(l)
			p := func(q int) string { return fmt.Sprintf("%.1f ms", float64(l[(len(l)-1)*q/100].Microseconds())/1000) }
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %.2f ms |\n", c.name, c.bucket, name, p(50), p(95), p(100), float64(cpu[weeks].Microseconds())/1000/float64(len(l)))
		}
	}
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
