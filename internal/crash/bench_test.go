package crash

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// writerMode is a Writer set-up the benchmarks compare.
type writerMode struct {
	name  string
	spool bool
	sync  core.SpoolSync
}

var writerModes = []writerMode{
	{name: "memory"},
	{name: "spool-batch", spool: true, sync: core.SpoolSyncBatch},
	{name: "spool-interval", spool: true, sync: core.SpoolSyncInterval},
	{name: "spool-never", spool: true, sync: core.SpoolSyncNever},
}

// openWriter opens a Writer in mode on db, with a spool in a temporary directory when the mode
// has one, and a queue large enough that no record is refused.
func openWriter(b *testing.B, db *pgtest.DB, m writerMode, queue int) *core.Writer {
	b.Helper()
	opts := core.WriterOptions{
		QueueSize: queue,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if m.spool {
		opts.Spool = core.SpoolOptions{Dir: b.TempDir(), Sync: m.sync}
	}
	w, err := core.OpenWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), opts)
	if err != nil {
		b.Fatal(err)
	}
	return w
}

// updateRecord is shaped like the record gormaudit makes of an UPDATE of one customer row: before
// and after images of a dozen columns and a diff of three; about 1.1 kB as stored.
func updateRecord(i int) *core.Record {
	row := func(email, status string, credit int) map[string]any {
		return map[string]any{
			"id": i, "tenant_id": "acme", "name": fmt.Sprintf("Customer %d", i), "email": email,
			"street": "12 Analytical Engine Road", "city": "London", "postcode": "NW1 6XE", "country": "GB",
			"status": status, "credit_cents": credit, "notes": strings.Repeat("n", 60),
			"created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-05T10:00:00Z",
		}
	}
	return &core.Record{
		Kind: core.KindUpdate, Action: "customers.update",
		Tenant:       core.Tenant{ID: "acme", Slug: "acme"},
		Actor:        core.Actor{ID: "alice", Type: core.ActorTenantUser, Email: "alice@acme.example"},
		ResourceType: "customers", ResourceID: fmt.Sprint(i),
		RequestID: fmt.Sprintf("req-%d", i),
		Before:    row("ada@example.com", "active", 10000),
		After:     row("ada@lovelace.example", "suspended", 5000),
		Diff: map[string]core.Change{
			"email":        {From: "ada@example.com", To: "ada@lovelace.example"},
			"status":       {From: "active", To: "suspended"},
			"credit_cents": {From: 10000, To: 5000},
		},
	}
}

// BenchmarkWriterModes enqueues b.N update records into a Writer on PostgreSQL and flushes them,
// without a spool and with each spool sync mode. records/s is what reached the table per second
// of Enqueue and Flush. Run the modes interleaved:
//
//	go test -run '^$' -bench WriterModes -count 6 ./internal/crash/
func BenchmarkWriterModes(b *testing.B) {
	db := pgtest.New(b)
	for _, m := range writerModes {
		b.Run(m.name, func(b *testing.B) {
			recs := make([]*core.Record, b.N)
			for i := range recs {
				recs[i] = updateRecord(i)
			}
			w := openWriter(b, db, m, b.N+1000)
			ctx := context.Background()
			b.ReportAllocs()
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
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := w.Close(cctx); err != nil {
				b.Fatal(err)
			}
			if st := w.Stats(); st.Written != uint64(b.N) || st.Dropped != 0 {
				b.Fatalf("written %d of %d, dropped %d", st.Written, b.N, st.Dropped)
			}
			if _, err := db.Pool.Exec(ctx, `TRUNCATE audit_logs`); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkEnqueueLatency measures Enqueue alone, from 8 goroutines each enqueuing 500 records a
// second (4,000/s in all, a rate the Writer sustains, so that the queue never fills), without a
// spool, with the default spool (sync batch) and with a spool that is never fsynced (which tells
// the cost of the append from that of the fsyncs running beside it), while the Writer writes to
// PostgreSQL in the background. It reports the median and the 99th percentile of one call.
func BenchmarkEnqueueLatency(b *testing.B) {
	const (
		goroutines = 8
		interval   = 2 * time.Millisecond // per goroutine
	)
	db := pgtest.New(b)
	for _, m := range []writerMode{writerModes[0], writerModes[1], writerModes[3]} {
		b.Run(m.name, func(b *testing.B) {
			recs := make([]*core.Record, b.N)
			for i := range recs {
				recs[i] = updateRecord(i)
			}
			w := openWriter(b, db, m, b.N+1000)
			ctx := context.Background()
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			b.ResetTimer()
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tick := time.NewTicker(interval)
					defer tick.Stop()
					for i := g; i < b.N; i += goroutines {
						<-tick.C
						t0 := time.Now()
						err := w.Enqueue(recs[i])
						lat[i] = time.Since(t0)
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if err := w.Close(cctx); err != nil {
				b.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, `TRUNCATE audit_logs`); err != nil {
				b.Fatal(err)
			}
		})
	}
}
