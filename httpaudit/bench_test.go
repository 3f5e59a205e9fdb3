package httpaudit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/httpaudit"
)

// benchWriter is a minimal http.ResponseWriter reused across iterations, so that the figures
// measure the mux and the middleware rather than httptest.ResponseRecorder.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }

type discardSink struct{}

func (discardSink) Write(context.Context, []*core.Record) error { return nil }

// benchMux serves GET /customers/{id} with a JSON answer, behind the middleware when opts is not
// nil.
func benchMux(opts *httpaudit.Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "name": "Ada Lovelace"})
	})
	if opts == nil {
		return mux
	}
	return httpaudit.Middleware(*opts)(mux)
}

// BenchmarkRequestPath measures what a request itself pays, without and with the middleware, in
// one run: the writer only queues records while the timer runs, and "stores" them (into a
// discarding sink) in pauses every 1024 requests. cpu-ns/op is the CPU time of the whole process
// per request (user+system), which, unlike wall time, does not grow while the process waits for a
// core on a shared machine.
func BenchmarkRequestPath(b *testing.B) {
	w := core.NewWriter(discardSink{}, core.WriterOptions{QueueSize: 4096, BatchSize: 100000, FlushInterval: time.Hour,
		Logger: discardLogger()})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = w.Close(ctx)
	}()
	flush := func() {
		if err := w.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, h http.Handler, flush func()) {
		req, _ := http.NewRequest("GET", "/customers/42?expand=orders", nil)
		req.RemoteAddr = "203.0.113.7:51234"
		req.Header.Set("User-Agent", "bench/1.0")
		rw := &benchWriter{h: http.Header{}}
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU()
		for i := 0; i < b.N; i++ {
			clear(rw.h)
			h.ServeHTTP(rw, req)
			if flush != nil && i%1024 == 1023 {
				b.StopTimer()
				paused := processCPU()
				flush()
				cpu += processCPU() - paused // the writer's work is not the request's
				b.StartTimer()
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		if rw.status != 0 && rw.status != http.StatusOK {
			b.Fatalf("status %d", rw.status)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, benchMux(nil), nil) })
	b.Run("audit", func(b *testing.B) {
		run(b, benchMux(&httpaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}}), flush)
	})
}
