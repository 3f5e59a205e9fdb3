package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/chaintest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// spanContext returns ctx with a sampled remote span context, as an OpenTelemetry propagator
// leaves it after reading a W3C traceparent header.
func spanContext(ctx context.Context, traceHex, spanHex string) context.Context {
	tid, err := trace.TraceIDFromHex(traceHex)
	if err != nil {
		panic(err)
	}
	sid, err := trace.SpanIDFromHex(spanHex)
	if err != nil {
		panic(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithSpanContext(ctx, sc)
}

const (
	traceA = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanA  = "00f067aa0ba902b7"
)

func TestTraceFromContext(t *testing.T) {
	if tr, sp := core.TraceFromContext(context.Background()); tr != "" || sp != "" {
		t.Fatalf("no span: %q %q", tr, sp)
	}
	ctx := spanContext(context.Background(), traceA, spanA)
	if tr, sp := core.TraceFromContext(ctx); tr != traceA || sp != spanA {
		t.Fatalf("got %q %q", tr, sp)
	}

	r := &core.Record{Kind: core.KindCustom}
	core.StampFromContext(ctx, r)
	if r.TraceID != traceA || r.SpanID != spanA {
		t.Fatalf("stamped %q %q", r.TraceID, r.SpanID)
	}
	// A record that already names its trace keeps it.
	own := &core.Record{Kind: core.KindCustom, TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"}
	core.StampFromContext(ctx, own)
	if own.TraceID != "0af7651916cd43dd8448eb211c80319c" || own.SpanID != "b7ad6b7169203331" {
		t.Fatalf("overwritten: %q %q", own.TraceID, own.SpanID)
	}
	// ORM records joining a request's collector take the span of the change, not of the request.
	c := core.NewCollector()
	if err := core.Dispatch(core.NewContext(ctx, c), nil, &core.Record{Kind: core.KindUpdate}); err != nil {
		t.Fatal(err)
	}
	if recs := c.Records(); len(recs) != 1 || recs[0].TraceID != traceA || recs[0].SpanID != spanA {
		t.Fatalf("collected %+v", recs)
	}
}

func TestRecordValidateTraceIDs(t *testing.T) {
	for _, tc := range []struct {
		trace, span string
		ok          bool
	}{
		{"", "", true},
		{traceA, spanA, true},
		{traceA, "", true},
		{"4BF92F3577B34DA6A3CE929D0E0E4736", spanA, false}, // uppercase is not the W3C form
		{"00000000000000000000000000000000", spanA, false}, // all zero is invalid
		{traceA, "0000000000000000", false},
		{traceA[:31], spanA, false},
		{traceA + "0", spanA, false},
		{traceA, "00f067aa0ba902bz", false},
		{"4bf92f3577b34da6a3ce929d0e0e473\u00e9", spanA, false},
	} {
		r := &core.Record{Kind: core.KindCustom, TraceID: tc.trace, SpanID: tc.span}
		err := r.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, core.ErrInvalidRecord)) {
			t.Errorf("trace %q span %q: %v", tc.trace, tc.span, err)
		}
	}
}

// TestTraceIsStoredFilteredAndChained: a record's trace context is stored, found by the trace_id
// filter, and covered by the hash chain; chains that began before trace context existed (record
// version 2) go on verifying, in the database, in Go from an export and in Python.
func TestTraceIsStoredFilteredAndChained(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// 30 version 2 records first, as an older release wrote them.
	if _, err := chaintest.Append(ctx, db.Pool, "acme", 30); err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 16, FlushInterval: 5 * time.Millisecond})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	traced := spanContext(ctx, traceA, spanA)
	for i := range 40 {
		r := &core.Record{Kind: core.KindUpdate, Tenant: core.Tenant{ID: "acme"}, ResourceType: "invoices",
			ResourceID: fmt.Sprint(i), Diff: map[string]core.Change{"total": {From: i, To: i + 1}}}
		if i%2 == 0 {
			core.StampFromContext(traced, r)
		}
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := store.New(db.Pool, store.Options{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	page, err := st.List(ctx, store.TenantScope("acme"), store.Query{Filter: store.Filter{TraceID: traceA}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 20 {
		t.Fatalf("trace_id filter found %d records, want 20", len(page.Records))
	}
	for _, r := range page.Records {
		if r.TraceID != traceA || r.SpanID != spanA || r.Version != core.RecordVersion {
			t.Fatalf("record %s: trace %q span %q version %d", r.ID, r.TraceID, r.SpanID, r.Version)
		}
	}
	if _, err := store.ParseFilter(map[string][]string{"trace_id": {"ABC"}}); err == nil {
		t.Fatal("a malformed trace_id filter was accepted")
	}

	verify := func() *core.VerifyReport {
		t.Helper()
		rep, err := core.Verify(ctx, db.Pool, "acme", core.VerifyOptions{Schema: db.Schema})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	export := func() []byte {
		t.Helper()
		var buf bytes.Buffer
		if _, err := st.Export(ctx, store.TenantScope("acme"), store.Filter{}, store.ExportOptions{Format: store.FormatChain}, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if rep := verify(); !rep.OK || rep.Rows != 70 {
		t.Fatalf("mixed versions: %+v", rep)
	}
	clean := export()
	m, err := core.NewExportManifest(bytes.NewReader(clean), "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := core.VerifyExport(bytes.NewReader(clean), m, nil); err != nil || !rep.OK || rep.Rows != 70 {
		t.Fatalf("export of mixed versions: %+v, %v", rep, err)
	}
	if ok, seq := runPython(t, clean); !ok {
		t.Fatalf("verify_chain.py rejects the mixed export at seq %d", seq)
	}

	// Editing the trace id of a version 3 record breaks its hash.
	execSQL(t, db.Pool, `UPDATE audit_logs SET trace_id = '0af7651916cd43dd8448eb211c80319c' WHERE tenant_id = 'acme' AND seq = 31`)
	if got := firstOfEach(verify()); !slices.Equal(got, []found{{core.ProblemHashMismatch, 31}}) {
		t.Fatalf("edited trace id: %+v", got)
	}
	if ok, seq := runPython(t, export()); ok || seq != 31 {
		t.Fatalf("verify_chain.py on an edited trace id: ok %v, seq %d", ok, seq)
	}
	execSQL(t, db.Pool, `UPDATE audit_logs SET trace_id = $1 WHERE tenant_id = 'acme' AND seq = 31`, traceA)
	if rep := verify(); !rep.OK {
		t.Fatalf("restored: %+v", rep)
	}
	// A trace id added to a version 2 record, which its hash does not cover, is reported too.
	execSQL(t, db.Pool, `UPDATE audit_logs SET span_id = $1 WHERE tenant_id = 'acme' AND seq = 7`, spanA)
	if got := firstOfEach(verify()); !slices.Equal(got, []found{{core.ProblemMalformed, 7}}) {
		t.Fatalf("trace context on a version 2 record: %+v", got)
	}
	tampered := export()
	if rep, err := core.VerifyExport(bytes.NewReader(tampered), m, nil); err != nil || rep.OK {
		t.Fatalf("export with trace context on a version 2 record: %+v, %v", rep, err)
	}
	if ok, seq := runPython(t, tampered); ok || seq != 7 {
		t.Fatalf("verify_chain.py on trace context of a version 2 record: ok %v, seq %d", ok, seq)
	}
}
