package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// BenchmarkWriterPII compares the chained Writer without erasure, with the actor's values
// encrypted (one subject for every record), and with the images' email and name encrypted too
// (a new resource subject, so a new key, for every record: the worst case).
//
//	go test -run '^$' -bench BenchmarkWriterPII -benchtime 20000x ./core/
func BenchmarkWriterPII(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	key := make([]byte, core.MasterKeySize)
	for _, v := range []struct {
		name   string
		on     bool
		fields []string
	}{
		{"off", false, nil},
		{"actor", true, nil},
		{"actor-and-images", true, []string{"email", "name"}},
	} {
		b.Run(v.name, func(b *testing.B) {
			if _, err := db.Pool.Exec(ctx, `TRUNCATE audit_logs, audit_chain_heads, audit_subject_keys`); err != nil {
				b.Fatal(err)
			}
			var pii *core.PIICipher
			if v.on {
				var err error
				if pii, err = core.NewPIICipher(key, v.fields); err != nil {
					b.Fatal(err)
				}
			}
			recs := make([]*core.Record, b.N)
			for i := range recs {
				recs[i] = benchRecord(i)
			}
			sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, PII: pii})
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
