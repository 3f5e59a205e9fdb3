package store

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

var statsReadSchema = flag.String("statsread.schema", "", "BenchmarkStatsRead: schema of a data set made by loadgen load (for example stats_1m)")

// BenchmarkStatsRead measures Stats over the last 30 days on a data set made by loadgen, across
// all tenants and for one tenant, with day and hour buckets, answered from a span's sums
// (migration 0009; the first request of a span sums it in the background), from weeks, days and
// hours (0008) and from days and hours (0007), interleaved request by request in one process. It
// counts the closed hours first.
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
	s, pool := loadgenStore(b, schemaName)
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
		lat := map[statsReads][]time.Duration{}
		cpu := map[statsReads]time.Duration{}
		for i := range runs + 5 {
			for _, reads := range readsOrder(i) {
				to := time.Now().UTC()
				q := StatsQuery{Filter: Filter{From: to.AddDate(0, 0, -30), To: to}, Bucket: c.bucket}
				c0 := cpuTime()
				t := time.Now()
				if _, err := s.stats(ctx, c.sc(), q, reads); err != nil {
					b.Fatal(err)
				}
				if i >= 5 {
					lat[reads] = append(lat[reads], time.Since(t))
					cpu[reads] += cpuTime() - c0
				}
			}
		}
		for _, reads := range readsOrder(0) {
			l := lat[reads]
			slices.Sort(l)
			p := func(q int) string { return fmt.Sprintf("%.1f ms", float64(l[(len(l)-1)*q/100].Microseconds())/1000) }
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %.2f ms |\n", c.name, c.bucket, readsName(reads), p(50), p(95), p(100), float64(cpu[reads].Microseconds())/1000/float64(len(l)))
		}
	}

	// The server's CPU time per request, which the load of other processes changes far less
	// than latency: one connection without parallel workers, its process's user and system
	// time read from /proc before and after each request, interleaved.
	cfg, err := pgxpool.ParseConfig(pgtest.URL())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["max_parallel_workers_per_gather"] = "0"
	one, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer one.Close()
	s1, err := New(one, Options{Schema: schemaName})
	if err != nil {
		b.Fatal(err)
	}
	defer s1.Close()
	var pid int
	if err := one.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		b.Fatal(err)
	}
	if _, err := backendCPU(pid); err != nil {
		fmt.Printf("\nno server CPU time (the server's processes are not readable here: %v)\n", err)
		return
	}
	fmt.Printf("\nserver CPU time per request (one connection, no parallel workers, %d requests each, interleaved):\n\n| scope | bucket | reads | server CPU per request |\n|---|---|---|---:|\n", runs)
	for _, c := range []struct {
		name   string
		sc     func() Scope
		bucket Bucket
	}{
		{"all tenants", AllTenantsScope, BucketDay},
		{"one tenant", func() Scope { return TenantScope(fmt.Sprintf("tenant-%03d", rng.IntN(100))) }, BucketDay},
	} {
		cpu := map[statsReads]time.Duration{}
		for i := range runs + 5 {
			for _, reads := range readsOrder(i) {
				to := time.Now().UTC()
				q := StatsQuery{Filter: Filter{From: to.AddDate(0, 0, -30), To: to}, Bucket: c.bucket}
				c0, err := backendCPU(pid)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s1.stats(ctx, c.sc(), q, reads); err != nil {
					b.Fatal(err)
				}
				c1, err := backendCPU(pid)
				if err != nil {
					b.Fatal(err)
				}
				if i >= 5 {
					cpu[reads] += c1 - c0
				}
			}
		}
		for _, reads := range readsOrder(0) {
			fmt.Printf("| %s | %s | %s | %.1f ms |\n", c.name, c.bucket, readsName(reads), float64(cpu[reads].Microseconds())/1000/runs)
		}
	}
}

// readsOrder is the order of the levels of counts in round i: rotated each round.
func readsOrder(i int) []statsReads {
	all := []statsReads{statsReadsSpans, statsReadsWeeks, statsReadsDaysHours}
	i %= len(all)
	return append(all[i:len(all):len(all)], all[:i]...)
}

func readsName(r statsReads) string {
	switch r {
	case statsReadsSpans:
		return "span, hours at the edges (0009)"
	case statsReadsWeeks:
		return "weeks, days, hours (0008)"
	}
	return "days, hours (0007)"
}

// backendCPU is the user and system CPU time of a server process on this machine, from
// /proc/<pid>/stat (in clock ticks, 100 a second on Linux; only averages over many requests mean anything).
func backendCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (which is in parentheses): state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
