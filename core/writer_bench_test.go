package core_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// benchRecord is shaped like a typical ORM update record (~1 kB stored, three JSON images).
func benchRecord(i int) *core.Record {
	img := func(v int) map[string]any {
		return map[string]any{
			"id": i, "name": "Customer number " + fmt.Sprint(i), "email": fmt.Sprintf("c%d@example.com", i),
			"plan": "business", "seats": v, "country": "DE", "notes": strings.Repeat("n", 200),
			"created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:05:00Z",
		}
	}
	return &core.Record{
		Kind: core.KindUpdate, ResourceType: "customers", ResourceID: fmt.Sprint(i),
		Tenant:    core.Tenant{ID: "tenant-42", Slug: "acme"},
		Actor:     core.Actor{ID: "user-7", Type: core.ActorTenantUser, Email: "u7@example.com", Auth: "jwt:HS256"},
		Before:    img(1),
		After:     img(2),
		Diff:      map[string]core.Change{"seats": {From: 1, To: 2}},
		RequestID: "0192f3a4-7b1c-7000-8000-000000000001",
	}
}

// reportCPU starts measuring the CPU time of this process (the database's is not in it); the
// function it returns reports it per op as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := core.ProcessCPUForBenchmark()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(core.ProcessCPUForBenchmark()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func truncate(b *testing.B, db *pgtest.DB) {
	b.Helper()
	// The chains' heads go with the rows, so that each run's chains verify from their start.
	if _, err := db.Pool.Exec(context.Background(), `TRUNCATE audit_logs, audit_chain_heads`); err != nil {
		b.Fatal(err)
	}
	// A checkpoint that the WAL of earlier runs brings on in the middle of a run (every 1 GB by
	// default, about two runs of 100,000 rows) slows that run alone: each run starts after one.
	if _, err := db.Pool.Exec(context.Background(), `CHECKPOINT`); err != nil {
		b.Logf("CHECKPOINT before the run: %v", err)
	}
}

// BenchmarkWriteThroughput compares, in one run, the Writer (Enqueue + Flush, redaction and JSON
// encoding included) with raw pgx CopyFrom of the same records encoded the same way, and with one
// INSERT per row. One op is one row; rows/s is the figure to compare.
func BenchmarkWriteThroughput(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	const batch = 500

	b.Run("writer", func(b *testing.B) {
		truncate(b, db)
		recs := make([]*core.Record, b.N)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
			core.WriterOptions{BatchSize: batch, QueueSize: b.N + 1, FlushInterval: time.Millisecond})
		b.ResetTimer()
		for _, r := range recs {
			if err := w.Enqueue(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		if err := w.Close(ctx); err != nil {
			b.Fatal(err)
		}
	})

	b.Run("raw-copy", func(b *testing.B) {
		truncate(b, db)
		recs := make([]*core.Record, b.N)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		red := core.NewRedactor(nil, nil)
		b.ResetTimer()
		for start := 0; start < b.N; start += batch {
			end := min(start+batch, b.N)
			rows := make([][]any, 0, end-start)
			for _, r := range recs[start:end] {
				rows = append(rows, core.RowValuesForBenchmark(red, r))
			}
			if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{db.Schema, "audit_logs"}, core.Columns, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("insert-per-row", func(b *testing.B) {
		truncate(b, db)
		tw := core.NewTxWriter(db.Schema, nil)
		exec := core.PgxExecer(db.Pool)
		recs := make([]*core.Record, b.N)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		b.ResetTimer()
		for _, r := range recs {
			if err := tw.Write(ctx, exec, r); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// BenchmarkEnqueue is the cost on the request path: validation, defaults (id, time) and an append
// under the queue's mutex. Records are built before the timer starts, and the batch is as large
// as the run, so that the writer's goroutine only collects records (no redaction, no allocation)
// while Enqueue is measured.
func BenchmarkEnqueue(b *testing.B) {
	run := func(b *testing.B, parallel bool) {
		recs := make([]*core.Record, b.N)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		w := core.NewWriter(discardSink{}, core.WriterOptions{QueueSize: b.N + 1, BatchSize: b.N + 1, FlushInterval: time.Hour})
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Enqueue(recs[next.Add(1)-1]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for _, r := range recs {
				if err := w.Enqueue(r); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		_ = w.Close(context.Background())
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}

type discardSink struct{}

func (discardSink) Write(context.Context, []*core.Record) error { return nil }

// failingSink stands for a database that is down: every write fails as a transient error.
type failingSink struct{}

func (failingSink) Write(ctx context.Context, _ []*core.Record) error {
	return errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
}

// BenchmarkMemoryWhileDatabaseDown enqueues 200,000 records of ~1 kB into writers whose database
// is down, with three queue sizes, and reports the live heap afterwards: it follows the queue
// size, not the number of records offered.
func BenchmarkMemoryWhileDatabaseDown(b *testing.B) {
	for _, qs := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("queue=%d", qs), func(b *testing.B) {
			for range b.N {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				w := core.NewWriter(failingSink{}, core.WriterOptions{QueueSize: qs, BatchSize: 500,
					FlushInterval: time.Millisecond, MinBackoff: time.Hour, Logger: discardLogger()})
				accepted := 0
				for i := range 200000 {
					if w.Enqueue(benchRecord(i)) == nil {
						accepted++
					}
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
				b.ReportMetric(float64(accepted), "accepted")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				_ = w.Close(ctx)
				cancel()
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkTxWriterBatch is the synchronous path the ORM integrations' InTransaction option uses:
// one op writes 1,000 records with one INSERT inside a transaction.
func BenchmarkTxWriterBatch(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	tw := core.NewTxWriter(db.Schema, nil)
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		recs := make([]*core.Record, 1000)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		b.StartTimer()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := tw.Write(ctx, core.PgxExecer(tx), recs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSinkRetriedBatch measures what a batch costs PostgresSink when an earlier attempt may
// have committed part of it: "copy" is a batch of 500 new records (one COPY); "retried" is a batch
// of 500 whose first record is already stored, so the COPY fails with a unique violation and the
// batch goes through the staging table and INSERT … ON CONFLICT DO NOTHING. One op is one row.
func BenchmarkSinkRetriedBatch(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
	const batch = 500
	newBatch := func(n int) []*core.Record {
		recs := make([]*core.Record, n)
		for i := range recs {
			recs[i] = benchRecord(i)
			core.NormalizeForBenchmark(recs[i])
		}
		return recs
	}
	for _, retried := range []bool{false, true} {
		name := "copy"
		if retried {
			name = "retried"
		}
		b.Run(name, func(b *testing.B) {
			truncate(b, db)
			for start := 0; start < b.N; start += batch {
				b.StopTimer()
				recs := newBatch(min(batch, b.N-start))
				if retried {
					if err := sink.Write(ctx, recs[:1]); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if err := sink.Write(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs`).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n != b.N {
				b.Fatalf("%d rows stored, want %d", n, b.N)
			}
		})
	}
}

// BenchmarkWriterVsCopy compares, in one run, the Writer with pgx CopyFrom of the same rows
// already redacted and encoded before the clock starts, which is the floor for storing them: the
// records are built before the clock starts for both. "copy-1conn" copies batches of 500 on one
// connection and "copy-2conn" on two at once; "writer-1worker" is the Writer with one worker (one
// connection), "writer" with its default workers; "nochain" variants store the records outside
// the hash chain (PostgresSinkOptions.DisableChain), as raw COPY does; "copy-2conn-chained"
// copies on two connections the rows with the links the chained writer adds, linked before the
// clock starts. One op is one row; rows/s is the figure to compare, cpu-ns/op this process's CPU
// time per row (PostgreSQL's is not in it).
func BenchmarkWriterVsCopy(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	const batch = 500
	records := func(n int) []*core.Record {
		recs := make([]*core.Record, n)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		return recs
	}
	copyRows := func(b *testing.B, conns int, chained bool) {
		truncate(b, db)
		red := core.NewRedactor(nil, nil)
		rows := make([][]any, b.N)
		for i, r := range records(b.N) {
			rows[i] = core.RowValuesForBenchmark(red, r)
		}
		cols := core.Columns
		if chained {
			var err error
			if rows, err = core.LinkRowsForBenchmark(rows); err != nil {
				b.Fatal(err)
			}
			cols = append(slices.Clip(cols), core.ChainColumns...)
		}
		var batches [][][]any
		for i, row := range rows {
			if i%batch == 0 {
				batches = append(batches, make([][]any, 0, batch))
			}
			batches[len(batches)-1] = append(batches[len(batches)-1], row)
		}
		b.ResetTimer()
		defer reportCPU(b)()
		var next atomic.Int64
		errs := make(chan error, conns)
		for range conns {
			go func() {
				for i := int(next.Add(1) - 1); i < len(batches); i = int(next.Add(1) - 1) {
					if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{db.Schema, "audit_logs"}, cols, pgx.CopyFromRows(batches[i])); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range conns {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	}
	writer := func(b *testing.B, workers int, noChain bool) {
		truncate(b, db)
		recs := records(b.N)
		sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, DisableChain: noChain})
		w := core.NewWriter(sink, core.WriterOptions{BatchSize: batch, QueueSize: b.N + 1, FlushInterval: time.Millisecond, Workers: workers})
		b.ResetTimer()
		stopCPU := reportCPU(b)
		for _, r := range recs {
			if err := w.Enqueue(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		stopCPU()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		if err := w.Close(ctx); err != nil {
			b.Fatal(err)
		}
		if n := db.Count(b); n != b.N {
			b.Fatalf("%d rows stored, want %d", n, b.N)
		}
		if !noChain { // every row is a link of the one chain, in order
			// The batches linked ahead of their transaction (the others took the heads' locks first).
			b.ReportMetric(float64(core.LinkedAheadForBenchmark(sink)), "ahead-batches")
			// Of those, the batches linked by the Writer's encoding goroutine, not by the worker.
			b.ReportMetric(float64(core.PrelinkedForBenchmark(sink)), "prelinked-batches")
			rep, err := core.Verify(ctx, db.Pool, "tenant-42", core.VerifyOptions{Schema: db.Schema})
			if err != nil {
				b.Fatal(err)
			}
			if !rep.OK || rep.Rows != int64(b.N) {
				b.Fatalf("verify: ok %v, %d rows of %d, problems %v", rep.OK, rep.Rows, b.N, rep.Problems)
			}
		}
	}
	b.Run("copy-1conn", func(b *testing.B) { copyRows(b, 1, false) })
	// The rows the chained writer stores, linked before the clock starts: what PostgreSQL's
	// side of a chained batch costs (three more columns and the chain's index) without the
	// chain's transaction.
	b.Run("copy-1conn-chained", func(b *testing.B) { copyRows(b, 1, true) })
	b.Run("writer-1worker", func(b *testing.B) { writer(b, 1, false) })
	b.Run("writer-1worker-nochain", func(b *testing.B) { writer(b, 1, true) })
	b.Run("copy-2conn", func(b *testing.B) { copyRows(b, 2, false) })
	b.Run("copy-2conn-chained", func(b *testing.B) { copyRows(b, 2, true) })
	b.Run("writer", func(b *testing.B) { writer(b, 0, false) })
	b.Run("writer-nochain", func(b *testing.B) { writer(b, 0, true) })
}

// BenchmarkRowCost measures what PostgreSQL spends storing one audit row, chained, as the
// migrations leave audit_logs and with parts of it taken away: COPY of pre-encoded rows on one
// connection, in batches of 500, so that the rate is the backend's. pg-cpu-ns/op is the CPU time
// of that backend (from /proc, on Linux with PostgreSQL on the same machine; left out
// otherwise); the WAL writer and checkpointer are not in it.
//
//	go test -run '^$' -bench 'RowCost' -benchtime 50000x ./core
func BenchmarkRowCost(b *testing.B) {
	type variant struct {
		name string
		drop []string
	}
	indexes := []string{"audit_logs_search_idx", "audit_logs_tenant_time_idx", "audit_logs_tenant_resource_idx",
		"audit_logs_tenant_actor_idx", "audit_logs_request_id_idx", "audit_logs_trace_idx", "audit_logs_occurred_brin_idx"}
	triggers := []string{`DROP TRIGGER audit_logs_notify ON audit_logs`, `DROP TRIGGER audit_stats_touch_insert ON audit_logs`}
	variants := []variant{{"as-migrated", nil}}
	var all []string
	for _, ix := range indexes {
		variants = append(variants, variant{"without-" + strings.TrimPrefix(ix, "audit_logs_"), []string{`DROP INDEX ` + ix}})
		all = append(all, `DROP INDEX `+ix)
	}
	variants = append(variants, variant{"without-insert-triggers", triggers},
		variant{"primary-key-and-chain-only", append(all, triggers...)},
		variant{"as-migrated-again", nil}) // the first and last runs show how much the order moves them
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			db := pgtest.New(b)
			ctx := context.Background()
			for _, q := range v.drop {
				if _, err := db.Pool.Exec(ctx, q); err != nil {
					b.Fatalf("%s: %v", q, err)
				}
			}
			truncate(b, db)
			red := core.NewRedactor(nil, nil)
			rows := make([][]any, b.N)
			for i := range rows {
				rows[i] = core.RowValuesForBenchmark(red, benchRecord(i))
			}
			rows, err := core.LinkRowsForBenchmark(rows)
			if err != nil {
				b.Fatal(err)
			}
			cols := append(slices.Clip(core.Columns), core.ChainColumns...)
			conn, err := db.Pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Release()
			var pid int
			if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				b.Fatal(err)
			}
			cpu0, cpuOK := backendCPU(pid)
			b.ResetTimer()
			for i := 0; i < len(rows); i += 500 {
				batch := rows[i:min(i+500, len(rows))]
				if _, err := conn.CopyFrom(ctx, pgx.Identifier{db.Schema, "audit_logs"}, cols, pgx.CopyFromRows(batch)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			if cpu1, ok := backendCPU(pid); ok && cpuOK {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "pg-cpu-ns/op")
			}
		})
	}
}

// backendCPU returns the CPU time a process on this machine used so far (user and system), read
// from /proc/<pid>/stat in clock ticks of 10 ms; false where that cannot be read.
func backendCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command (in parentheses, which may hold blanks): state is field 3,
	// utime and stime are fields 14 and 15.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}
