package ginaudit_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// The http record and the ORM records of a request carry the trace and span ids of the span the
// application's OpenTelemetry middleware (otelgin, registered before the audit middleware) put
// into the request's context.
func TestTraceContextOfTheRequest(t *testing.T) {
	traceID, err := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	if err != nil {
		t.Fatal(err)
	}
	spanID, err := trace.SpanIDFromHex("b7ad6b7169203331")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
		r := gin.New()
		r.Use(gin.RecoveryWithWriter(io.Discard), func(c *gin.Context) {
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})
			c.Request = c.Request.WithContext(trace.ContextWithSpanContext(c.Request.Context(), sc))
			c.Next()
		}, ginaudit.Middleware(ginaudit.Options{Writer: w, Logger: discardLogger(), Config: core.Config{LogAnonymous: true}}))
		r.POST("/orders", func(c *gin.Context) {
			if err := core.Dispatch(c.Request.Context(), w, &core.Record{Kind: core.KindInsert, ResourceType: "orders", ResourceID: "o-1"}); err != nil {
				t.Error(err)
			}
			c.Status(http.StatusCreated)
		})
		return r
	})
	h.do("POST", "/orders", nil)
	h.rows() // flushes
	rs, err := h.db.Pool.Query(context.Background(), `SELECT kind::text, coalesce(trace_id,''), coalesce(span_id,'') FROM audit_logs ORDER BY (kind <> 'http')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	n := 0
	for rs.Next() {
		var kind, tid, sid string
		if err := rs.Scan(&kind, &tid, &sid); err != nil {
			t.Fatal(err)
		}
		n++
		if tid != traceID.String() || sid != spanID.String() {
			t.Errorf("%s record: trace %q span %q", kind, tid, sid)
		}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d records, want the http record and the insert", n)
	}
}
