package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// BenchmarkWriteCost measures what the read side's migration costs the writer: COPY batches of
// 500 audit-sized records through core.PostgresSink into audit_logs as migration 0001 leaves it,
// with 0002's search index only, with all of 0002 (no live-stream listener registered), and with
// a registered listener (the trigger then notifies). Sub-benchmarks interleave when run with
// -count; compare rows/s within one run.
//
//	go test ./core/store -run '^$' -bench WriteCost -benchtime 40x -count 4
func BenchmarkWriteCost(b *testing.B) {
	migs, err := schema.Migrations()
	if err != nil {
		b.Fatal(err)
	}
	var readSide string
	for _, m := range migs {
		if m.Version == 2 {
			readSide = m.SQL
		}
	}
	searchOnly := ""
	for _, stmt := range strings.Split(readSide, ";\n") {
		if strings.Contains(stmt, "CREATE FUNCTION audit_search_document") || strings.Contains(stmt, "CREATE INDEX audit_logs_search_idx") {
			searchOnly += stmt + ";\n"
		}
	}
	variants := []struct{ name, sql string }{
		{"0001_only", ""},
		{"0001+search_index", searchOnly},
		{"0001+0002", readSide},
		{"0001+0002+listener", readSide + "\nINSERT INTO audit_stream_listeners VALUES (gen_random_uuid(), now() + interval '1 day');"},
	}
	batch := writeCostBatch(500)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := pgtest.Create(ctx, "bench_writecost", false)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Drop(ctx)
			if _, err := db.Pool.Exec(ctx, migs[0].SQL+";\n"+v.sql); err != nil {
				b.Fatal(err)
			}
			sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				for _, r := range batch {
					r.ID = core.NewID()
				}
				if err := sink.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// writeCostBatch makes records of the size the performance anchors use (~1.1 kB stored).
func writeCostBatch(n int) []*core.Record {
	red := core.NewRedactor(nil, nil)
	out := make([]*core.Record, n)
	for i := range out {
		r := &core.Record{
			OccurredAt: time.Now(), Kind: core.KindUpdate, Action: "invoices.update", Severity: core.SeverityInfo,
			Tenant:       core.Tenant{ID: fmt.Sprintf("tenant-%d", rand.IntN(100))},
			Actor:        core.Actor{ID: fmt.Sprintf("u-%d", rand.IntN(500)), Type: core.ActorTenantUser, Email: "user@example.com", Auth: "jwt:HS256"},
			ResourceType: "invoices", ResourceID: fmt.Sprint(rand.IntN(100000)), RequestID: "req-0123456789",
			Before: map[string]any{"amount": 100, "status": "draft", "customer": "acme corporation", "notes": strings.Repeat("lorem ipsum ", 20)},
			After:  map[string]any{"amount": 120, "status": "sent", "customer": "acme corporation", "notes": strings.Repeat("lorem ipsum ", 20)},
			Diff:   map[string]core.Change{"amount": {From: 100, To: 120}, "status": {From: "draft", To: "sent"}},
			Method: "PUT", Route: "/invoices/:id", Path: fmt.Sprintf("/invoices/%d", i), Status: 200,
			Duration: 1200 * time.Microsecond, IP: netip.MustParseAddr("10.1.2.3"), UserAgent: "Mozilla/5.0",
			Metadata: map[string]any{"source": "web", "feature": "billing.v2"},
		}
		out[i] = red.Record(r)
	}
	return out
}
