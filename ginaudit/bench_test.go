package ginaudit_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// benchWriter is a minimal http.ResponseWriter reused across iterations, so that the figures
// measure Gin and the middleware rather than httptest.ResponseRecorder.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }
func (w *benchWriter) Flush()                      {}

type discardSink struct{}

func (discardSink) Write(context.Context, []*core.Record) error { return nil }

// slowSink takes 50ms per batch: a PostgreSQL under heavy load.
type slowSink struct{}

func (slowSink) Write(ctx context.Context, _ []*core.Record) error {
	select {
	case <-time.After(50 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

const benchJSON = `{"name":"Ada Lovelace","email":"ada@example.com","password":"hunter2","plan":"business","seats":12,"notes":"first customer of the quarter, migrated from the legacy system"}`

// benchEngine returns an engine serving GET and POST /customers/:id, with the middleware when
// opts is not nil.
func benchEngine(opts *ginaudit.Options) *gin.Engine {
	r := gin.New()
	if opts != nil {
		r.Use(ginaudit.Middleware(*opts))
	}
	r.GET("/customers/:id", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "name": "Ada Lovelace"})
	})
	r.POST("/customers/:id", func(c *gin.Context) {
		b, _ := io.ReadAll(c.Request.Body)
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "received": len(b)})
	})
	return r
}

func runBench(b *testing.B, r *gin.Engine, method, auth string, body []byte) {
	runBenchFlushing(b, r, method, auth, body, nil)
}

// runBenchFlushing is runBench; when flush is not nil it is called every 1024 requests with the
// timer stopped, so that the writer's work (redaction, encoding) happens outside the measurement.
func runBenchFlushing(b *testing.B, r *gin.Engine, method, auth string, body []byte, flush func()) {
	req, _ := http.NewRequest(method, "/customers/42?expand=orders", nil)
	req.RemoteAddr = "203.0.113.7:51234"
	req.Header.Set("User-Agent", "bench/1.0")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
	}
	w := &benchWriter{h: http.Header{}}
	rd := bytes.NewReader(body)
	rc := io.NopCloser(rd)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		if body != nil {
			rd.Reset(body)
			req.Body = rc
		}
		r.ServeHTTP(w, req)
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
	if w.status != http.StatusOK {
		b.Fatalf("status %d", w.status)
	}
}

func newBenchWriter(b *testing.B, sink core.Sink) *core.Writer {
	w := core.NewWriter(sink, core.WriterOptions{QueueSize: 100000, BatchSize: 500, FlushInterval: 10 * time.Millisecond, Logger: discardLogger()})
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return w
}

// BenchmarkMiddleware compares, in one run, a Gin handler without and with the middleware:
// without JWT, with HS256 verification, and with request and response bodies captured. The
// difference of ns/op and allocs/op between a variant and its bare counterpart is the cost the
// middleware adds to a request. The writer discards what it receives.
func BenchmarkMiddleware(b *testing.B) {
	tok := hs256(b, with(claims("user-7"), "iss", "https://idp.test", "aud", "api", "tenant_id", "tenant-42", "email", "u7@example.com"))
	body := []byte(benchJSON)
	w := newBenchWriter(b, discardSink{})
	base := core.Config{LogAnonymous: true}
	jwtCfg := hsConfig()
	capture := core.Config{LogAnonymous: true, CaptureRequestBody: true, CaptureResponseBody: true}
	v, err := ginaudit.NewVerifier(context.Background(), jwtCfg.JWT, nil)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("bare", func(b *testing.B) { runBench(b, benchEngine(nil), "GET", "", nil) })
	b.Run("audit", func(b *testing.B) {
		runBench(b, benchEngine(&ginaudit.Options{Writer: w, Config: base}), "GET", "", nil)
	})
	b.Run("bare+verify-HS256", func(b *testing.B) {
		// What verifying a token costs by itself, for comparison with audit+HS256.
		r := gin.New()
		r.GET("/customers/:id", func(c *gin.Context) {
			id, err := v.Verify(c.Request.Context(), c.GetHeader("Authorization")[7:])
			if err != nil {
				c.Status(401)
				return
			}
			c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "name": id.Actor.ID})
		})
		runBench(b, r, "GET", tok, nil)
	})
	b.Run("audit+HS256", func(b *testing.B) {
		runBench(b, benchEngine(&ginaudit.Options{Writer: w, Config: jwtCfg}), "GET", tok, nil)
	})
	b.Run("bare-POST", func(b *testing.B) { runBench(b, benchEngine(nil), "POST", "", body) })
	b.Run("audit-POST+bodies", func(b *testing.B) {
		runBench(b, benchEngine(&ginaudit.Options{Writer: w, Config: capture}), "POST", "", body)
	})
	b.Run("audit-POST-no-bodies", func(b *testing.B) {
		runBench(b, benchEngine(&ginaudit.Options{Writer: w, Config: base}), "POST", "", body)
	})
}

// BenchmarkDatabaseState measures the same audited request while the writer's database is
// healthy, slow (50ms per batch), hanging (a TCP peer that accepts and never answers) and down
// (connection refused). The queue (100,000) holds every record of a run, so each state takes the
// same path through Enqueue; "down-queue-full" has a queue of 1,000, so most records are refused
// (dropped/op). cpu-ns/op is the CPU the whole process spends per request, writer included.
func BenchmarkDatabaseState(b *testing.B) {
	db := pgtest.New(b)
	hang := blackHole(b)
	refused := testnet.ClosedAddr(b) // a port with nothing listening
	pgSink := func(url string) core.Sink {
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		return core.NewPostgresSink(pool, core.PostgresSinkOptions{})
	}
	states := []struct {
		name  string
		queue int
		sink  func() core.Sink
	}{
		{"healthy", 100000, func() core.Sink {
			return core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
		}},
		{"slow", 100000, func() core.Sink { return slowSink{} }},
		{"hanging", 100000, func() core.Sink { return pgSink("postgres://u@" + hang + "/db?connect_timeout=60") }},
		{"down", 100000, func() core.Sink { return pgSink("postgres://u@" + refused + "/db?connect_timeout=1") }},
		{"down-queue-full", 1000, func() core.Sink { return pgSink("postgres://u@" + refused + "/db?connect_timeout=1") }},
	}
	b.Run("bare", func(b *testing.B) { runBench(b, benchEngine(nil), "GET", "", nil) })
	for _, s := range states {
		b.Run(s.name, func(b *testing.B) {
			w := core.NewWriter(s.sink(), core.WriterOptions{QueueSize: s.queue, BatchSize: 500,
				FlushInterval: 10 * time.Millisecond, AttemptTimeout: time.Second, Logger: discardLogger()})
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = w.Close(ctx)
			}()
			runBench(b, benchEngine(&ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}}), "GET", "", nil)
			st := w.Stats()
			b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
		})
	}
}

// BenchmarkRequestPath measures what a request itself pays: the writer only queues records
// while the timer runs, and redacts and "stores" them (into a discarding sink) in pauses every
// 1024 requests. The variants match BenchmarkMiddleware's, plus HS256 with the token cache off.
func BenchmarkRequestPath(b *testing.B) {
	w := core.NewWriter(discardSink{}, core.WriterOptions{QueueSize: 4096, BatchSize: 100000, FlushInterval: time.Hour, Logger: discardLogger()})
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
	tok := hs256(b, with(claims("user-7"), "iss", "https://idp.test", "aud", "api", "tenant_id", "tenant-42", "email", "u7@example.com"))
	body := []byte(benchJSON)
	base := core.Config{LogAnonymous: true}
	capture := core.Config{LogAnonymous: true, CaptureRequestBody: true, CaptureResponseBody: true}
	v, err := ginaudit.NewVerifier(context.Background(), hsConfig().JWT, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Without the token cache every request pays a full verification: the cost of the first
	// request with a token, or of a client that never repeats one.
	uncached, err := ginaudit.NewVerifier(context.Background(), hsConfig().JWT, nil, ginaudit.WithTokenCache(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	verifyOnly := func(v *ginaudit.Verifier) *gin.Engine {
		r := gin.New()
		r.GET("/customers/:id", func(c *gin.Context) {
			id, err := v.Verify(c.Request.Context(), c.GetHeader("Authorization")[7:])
			if err != nil {
				c.Status(401)
				return
			}
			c.JSON(http.StatusOK, gin.H{"id": c.Param("id"), "name": id.Actor.ID})
		})
		return r
	}

	b.Run("bare", func(b *testing.B) { runBench(b, benchEngine(nil), "GET", "", nil) })
	b.Run("audit", func(b *testing.B) {
		runBenchFlushing(b, benchEngine(&ginaudit.Options{Writer: w, Config: base}), "GET", "", nil, flush)
	})
	// With the engine's ContextWithFallback the middleware needs no entry in c.Keys.
	b.Run("bare-fallback", func(b *testing.B) {
		r := benchEngine(nil)
		r.ContextWithFallback = true
		runBench(b, r, "GET", "", nil)
	})
	b.Run("audit-fallback", func(b *testing.B) {
		r := benchEngine(&ginaudit.Options{Writer: w, Config: base})
		r.ContextWithFallback = true
		runBenchFlushing(b, r, "GET", "", nil, flush)
	})
	b.Run("bare+verify-HS256", func(b *testing.B) { runBench(b, verifyOnly(v), "GET", tok, nil) })
	b.Run("audit+HS256", func(b *testing.B) {
		runBenchFlushing(b, benchEngine(&ginaudit.Options{Writer: w, Config: hsConfig()}), "GET", tok, nil, flush)
	})
	b.Run("bare+verify-HS256-uncached", func(b *testing.B) { runBench(b, verifyOnly(uncached), "GET", tok, nil) })
	b.Run("audit+HS256-uncached", func(b *testing.B) {
		runBenchFlushing(b, benchEngine(&ginaudit.Options{Writer: w, Config: hsConfig(), Verifier: uncached}), "GET", tok, nil, flush)
	})
	b.Run("bare-POST", func(b *testing.B) { runBench(b, benchEngine(nil), "POST", "", body) })
	b.Run("audit-POST+bodies", func(b *testing.B) {
		runBenchFlushing(b, benchEngine(&ginaudit.Options{Writer: w, Config: capture}), "POST", "", body, flush)
	})
}
