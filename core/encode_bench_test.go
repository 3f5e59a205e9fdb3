package core

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// encodeBenchRecord is shaped like the ORM update record of the writer's benchmarks (~1.1 kB
// stored, three JSON images), normalised as Enqueue leaves it. Like the rows of a table, records
// repeat some of their values (plan, country, notes, the times) and not others (name, email).
func encodeBenchRecord(i int) *Record {
	return encodeBenchRecordOf(i, false)
}

// encodeBenchRecordOf is encodeBenchRecord; with distinct, none of the image's strings is the
// one of the record before.
func encodeBenchRecordOf(i int, distinct bool) *Record {
	img := func(v int) map[string]any {
		m := map[string]any{
			"id": i, "name": "Customer number " + fmt.Sprint(i), "email": fmt.Sprintf("c%d@example.com", i),
			"plan": "business", "seats": v, "country": "DE", "notes": strings.Repeat("n", 200),
			"created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:05:00Z",
		}
		if distinct {
			m["plan"], m["country"] = fmt.Sprint("business-", i), fmt.Sprint("D", i)
			m["notes"] = fmt.Sprint(strings.Repeat("n", 196), i%10000)
			m["created_at"] = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).Format(time.RFC3339)
			m["updated_at"] = time.Date(2026, 11, 24, 10, 5, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		}
		return m
	}
	r := &Record{
		Kind: KindUpdate, ResourceType: "customers", ResourceID: fmt.Sprint(i),
		Tenant:    Tenant{ID: "tenant-42", Slug: "acme"},
		Actor:     Actor{ID: "user-7", Type: ActorTenantUser, Email: "u7@example.com", Auth: "jwt:HS256"},
		Before:    img(1),
		After:     img(2),
		Diff:      map[string]Change{"seats": {From: 1, To: 2}},
		RequestID: "0192f3a4-7b1c-7000-8000-000000000001",
	}
	r.normalize(time.Now())
	return r
}

// BenchmarkRecordEncode is the writer's CPU per record before COPY, against the floor every Go
// implementation pays: "marshal-images" is encoding/json.Marshal of the record's three JSON
// images alone (before, after, diff), unredacted; "redact-copy" is the row as the writer built it
// before the fused encoder (Redactor.Record, then json.Marshal of each redacted copy); "fused" is
// the row as the writer builds it now, in batches of 500, redacting while it encodes;
// "fused-distinct" the same for records none of whose strings repeats the record before (what
// judging a repeated string once saves, see keyShape). One op is one record; cpu-ns/op is the
// process's CPU time per record (the garbage collector's included), which other programs on a
// busy machine do not inflate as they inflate ns/op.
func BenchmarkRecordEncode(b *testing.B) {
	recs := make([]*Record, 1000)
	distinct := make([]*Record, 1000)
	for i := range recs {
		recs[i] = encodeBenchRecord(i)
		distinct[i] = encodeBenchRecordOf(i, true)
	}
	red := NewRedactor(nil, nil)
	b.Run("marshal-images", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; b.Loop(); i++ {
			r := recs[i%len(recs)]
			for _, v := range []any{r.Before, r.After, r.Diff} {
				if _, err := json.Marshal(v); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("redact-copy", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; b.Loop(); i++ {
			if _, err := rowValues(red.Record(recs[i%len(recs)])); err != nil {
				b.Fatal(err)
			}
		}
	})
	fused := func(recs []*Record) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			var batch *rowBatch
			for i := 0; b.Loop(); i++ {
				if i%500 == 0 { // the writer's default batch
					batch = newRowBatch(red, 500)
				}
				if _, err := batch.row(recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("fused", fused(recs))
	b.Run("fused-distinct", fused(distinct))
}

// reportCPU starts measuring the process's CPU time; the function it returns reports it per op.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
