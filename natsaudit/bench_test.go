package natsaudit_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

// BenchmarkPipeline stores b.N records written by a Writer, directly with COPY ("direct") and
// through the stream and an Ingester ("jetstream"), both chained, and reports records/s from the
// first Enqueue to the last record in PostgreSQL. jetstream also reports how fast the writer
// published (publish-rec/s) and the ingest latency: from the stream storing a message to the
// commit of its batch, largest (lag-max-ms) and median over the run (lag-p50-ms). Run the two
// alternately, with a fixed count of records:
//
//	go test -run '^$' -bench Pipeline -benchtime 20000x -count 4 ./natsaudit/
//
// rate1000 and rate5000 pace the writer at 1,000 and 5,000 records/s to show the latency under a
// steady load below and above what the database takes.
func BenchmarkPipeline(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		db := pgtest.New(b)
		w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
			core.WriterOptions{FlushInterval: 10 * time.Millisecond, QueueSize: b.N, Logger: quietLogger()})
		recs := benchRecords(b.N)
		b.ResetTimer()
		start := time.Now()
		for _, r := range recs {
			if err := w.Enqueue(r); err != nil {
				b.Fatal(err)
			}
		}
		closeBenchWriter(b, w)
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rec/s")
	})
	b.Run("jetstream", func(b *testing.B) { benchJetStream(b, 0) })
	b.Run("rate1000", func(b *testing.B) { benchJetStream(b, 1000) })
	b.Run("rate5000", func(b *testing.B) { benchJetStream(b, 5000) })
}

func benchJetStream(b *testing.B, rate int) {
	ctx := context.Background()
	nc := connect(b, natsURL())
	n := newNames(b, nc)
	if _, err := natsaudit.EnsureStream(ctx, nc, n.streamOptions()); err != nil {
		b.Fatal(err)
	}
	sink, err := natsaudit.NewSink(nc, n.sinkOptions())
	if err != nil {
		b.Fatal(err)
	}
	w := core.NewWriter(sink, core.WriterOptions{FlushInterval: 10 * time.Millisecond, QueueSize: b.N, Logger: quietLogger()})
	db := pgtest.New(b)
	in := startIngest(b, connect(b, natsURL()), n, db, func(o *natsaudit.IngestOptions) { o.Logger = quietLogger() })
	recs := benchRecords(b.N)
	var lags []time.Duration
	sampled := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(sampled)
		var last time.Time
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if st := in.Stats(); !st.LastCommit.Equal(last) {
				last = st.LastCommit
				lags = append(lags, st.Latency)
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	for i, r := range recs {
		if rate > 0 && i%50 == 0 {
			// Paced by the clock, in steps of 50 records: a ticker would lose ticks on a busy machine.
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		}
		if err := w.Enqueue(r); err != nil {
			b.Fatal(err)
		}
	}
	closeBenchWriter(b, w)
	published := time.Since(start)
	for in.Stats().Written < uint64(b.N) {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("ingest stats %+v after 5 minutes, want %d written", in.Stats(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	<-sampled
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rec/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "publish-rec/s")
	b.ReportMetric(float64(in.Stats().MaxLatency.Milliseconds()), "lag-max-ms")
	if len(lags) > 0 {
		slices.Sort(lags)
		b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "lag-p50-ms")
	}
	if got := db.Count(b); got != b.N {
		b.Fatalf("%d records stored, want %d", got, b.N)
	}
}

func benchRecords(n int) []*core.Record {
	recs := make([]*core.Record, n)
	for i := range recs {
		recs[i] = newRecord(i)
	}
	return recs
}

func closeBenchWriter(b *testing.B, w *core.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
