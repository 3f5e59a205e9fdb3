package core_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// BenchmarkWriterChain compares the Writer's throughput with the hash chain on and off, in one
// run, on records of one tenant (every batch appends to the same chain) and of eight. One op is
// one row; rows/s is the figure to compare. Run the variants interleaved:
//
//	go test -run '^$' -bench WriterChain -benchtime 20000x -count 6 ./core/
func BenchmarkWriterChain(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	for _, v := range []struct {
		name    string
		disable bool
		tenants int
	}{
		{"unchained", true, 1},
		{"chained", false, 1},
		{"chained-8-tenants", false, 8},
	} {
		b.Run(v.name, func(b *testing.B) {
			if _, err := db.Pool.Exec(ctx, `TRUNCATE audit_logs, audit_chain_heads`); err != nil {
				b.Fatal(err)
			}
			recs := make([]*core.Record, b.N)
			for i := range recs {
				recs[i] = benchRecord(i)
				recs[i].Tenant.ID = fmt.Sprintf("tenant-%d", i%v.tenants)
			}
			sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, DisableChain: v.disable})
			w := core.NewWriter(sink, core.WriterOptions{BatchSize: 500, QueueSize: b.N + 1, FlushInterval: time.Millisecond})
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
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			if err := w.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
