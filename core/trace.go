package core

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// TraceFromContext returns the W3C trace id and span id of the OpenTelemetry span in ctx (as 32
// and 16 lowercase hexadecimal digits), or two empty strings when ctx carries no valid span
// context. It reads the span context only: no tracer, exporter or SDK is involved, so a program
// without OpenTelemetry pays one context lookup.
func TraceFromContext(ctx context.Context) (traceID, spanID string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// stampTrace fills r's TraceID and SpanID from the span in ctx when r has neither.
func stampTrace(ctx context.Context, r *Record) {
	if r.TraceID != "" || r.SpanID != "" {
		return
	}
	r.TraceID, r.SpanID = TraceFromContext(ctx)
}
