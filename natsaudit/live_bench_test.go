package natsaudit_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// BenchmarkLiveLatency measures, one record at a time, the time from Writer.Enqueue (the
// application's writer publishing to JetStream, FlushInterval 1ms) to the record's Server-Sent
// Event on a tenant's GET /logs/stream, with the NATS source and with the PostgreSQL source
// (after the ingest process, MaxWait 20ms, stored it). It reports both medians and 95th
// percentiles in milliseconds.
func BenchmarkLiveLatency(b *testing.B) {
	e := newLiveEnv(b, nil)
	tok := liveToken(b, core.ActorTenantUser, "acme")
	pg := e.open(b, "/pg", tok, url.Values{})
	nats := e.open(b, "/nats", tok, url.Values{})
	var dn, dp []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &core.Record{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}, Metadata: map[string]any{"i": i}}
		t0 := time.Now()
		if err := e.app.Enqueue(r); err != nil {
			b.Fatal(err)
		}
		ev := nats.collect(b, 1, 30*time.Second)[r.ID.String()]
		if ev.at.IsZero() {
			b.Fatalf("the NATS stream sent another record than %s", r.ID)
		}
		dn = append(dn, ev.at.Sub(t0))
		ev = pg.collect(b, 1, 30*time.Second)[r.ID.String()]
		if ev.at.IsZero() {
			b.Fatalf("the PostgreSQL stream sent another record than %s", r.ID)
		}
		dp = append(dp, ev.at.Sub(t0))
	}
	b.StopTimer()
	q := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(float64(len(d)-1)*p)]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(dn, 0.5), "nats-p50-ms")
	b.ReportMetric(q(dn, 0.95), "nats-p95-ms")
	b.ReportMetric(q(dp, 0.5), "pg-p50-ms")
	b.ReportMetric(q(dp, 0.95), "pg-p95-ms")
}

// BenchmarkLiveDecode measures what a live stream spends on each message it receives: decoding
// the row (core.RecordFromRow), building the read side's record (store.RecordOf) and evaluating
// the scope and a filter: a Live pays it once for each message its streams receive.
func BenchmarkLiveDecode(b *testing.B) {
	r := liveRecords(2)[1] // an HTTP record with metadata
	r.ID, r.OccurredAt, r.Severity = core.NewID(), time.Now(), core.SeverityInfo
	row, err := core.AppendRecordRow(nil, r)
	if err != nil {
		b.Fatal(err)
	}
	sc, f := store.TenantScope(r.Tenant.ID), store.Filter{ActionPrefix: "user."}
	b.ReportAllocs()
	b.SetBytes(int64(len(row)))
	for b.Loop() {
		rec, err := core.RecordFromRow(row)
		if err != nil {
			b.Fatal(err)
		}
		sr, err := store.RecordOf(rec)
		if err != nil {
			b.Fatal(err)
		}
		if !sc.Contains(sr) || !f.Match(sr) {
			b.Fatal("the record does not match")
		}
	}
}
