package ginaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// gateSink holds every write until it is opened, then passes the batch to next (discards it when
// next is nil): a database that has stopped answering, so that the writer's queue fills.
type gateSink struct {
	open    chan struct{}
	once    sync.Once
	next    core.Sink
	waiting atomic.Int64 // records of the writes waiting for the gate
}

func newGateSink(next core.Sink) *gateSink { return &gateSink{open: make(chan struct{}), next: next} }

func (g *gateSink) Write(ctx context.Context, recs []*core.Record) error {
	g.waiting.Add(int64(len(recs)))
	defer g.waiting.Add(-int64(len(recs)))
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.next == nil {
		return nil
	}
	return g.next.Write(ctx, recs)
}

func (g *gateSink) release() { g.once.Do(func() { close(g.open) }) }

// delaySink takes d per batch before writing it to next: a database under heavy load.
type delaySink struct {
	d    time.Duration
	next core.Sink
}

func (s delaySink) Write(ctx context.Context, recs []*core.Record) error {
	select {
	case <-time.After(s.d):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.next.Write(ctx, recs)
}

// unavailableSink refuses every write as a database without the audit table does.
type unavailableSink struct{}

func (unavailableSink) Write(context.Context, []*core.Record) error {
	return &core.UnavailableError{Err: errors.New(`ERROR: relation "audit_logs" does not exist (SQLSTATE 42P01)`)}
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// policyHarness serves the engine build returns, for a writer with opts on sink (the PostgreSQL
// sink of a fresh schema when sink is nil). The writer is closed when the test ends; a refusal
// to close (an unavailable sink) is expected and ignored.
func policyHarness(t *testing.T, sink core.Sink, opts core.WriterOptions, build func(w *core.Writer, db *pgtest.DB) *gin.Engine) *harness {
	t.Helper()
	return policyHarnessOn(t, func(*pgtest.DB) core.Sink { return sink }, opts, build)
}

// policyHarnessOn is policyHarness with the sink made for the harness's database.
func policyHarnessOn(t *testing.T, newSink func(db *pgtest.DB) core.Sink, opts core.WriterOptions,
	build func(w *core.Writer, db *pgtest.DB) *gin.Engine) *harness {
	t.Helper()
	db := pgtest.New(t)
	sink := newSink(db)
	if sink == nil {
		sink = core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = time.Hour
	}
	opts.Logger = discardLogger()
	w := core.NewWriter(sink, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	r := build(w, db)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	srv.Client().Timeout = 30 * time.Second
	return &harness{t: t, db: db, w: w, engine: r, srv: srv}
}

// fillQueue enqueues records until w, a writer with one worker whose writes gate holds, has no
// room for one more, and stays so: its queue is full while the worker's batch waits at the gate
// and the next batch waits for the worker, so that the writer takes nothing more out of the queue.
func fillQueue(t *testing.T, w *core.Writer, gate *gateSink) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the queue does not fill: %+v", w.Stats())
		}
		// Once the writer holds the next batch it takes nothing out of the queue: a refusal after
		// that is for good.
		held := holdsNextBatch(w, gate)
		res, err := w.Reserve(1)
		if err != nil {
			if held {
				return
			}
			time.Sleep(5 * time.Millisecond) // the queue must stay full, not be between batches
			continue
		}
		res.Release()
		if err := w.Enqueue(&core.Record{Kind: core.KindCustom, Action: "filler"}); err != nil && !errors.Is(err, core.ErrQueueFull) {
			t.Fatal(err)
		}
	}
}

// holdsNextBatch reports whether w, a writer with one worker whose batch waits at gate, also holds
// the batch after it (waiting for the worker): it then takes no more records out of its queue
// until the gate opens.
func holdsNextBatch(w *core.Writer, gate *gateSink) bool {
	atGate := gate.waiting.Load()
	h := w.Health()
	// QueueDepth counts the queue (at most QueueSize) and the batches taken out of it.
	return atGate > 0 && int64(h.QueueDepth-h.QueueSize) > atGate
}

// refusal is the body of a request refused under FailClosed.
type refusal struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// checkRefused fails unless resp is a FailClosed refusal for reason.
func checkRefused(t *testing.T, resp *http.Response, body, reason string) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Retry-After"); got != "5" {
		t.Errorf("Retry-After %q, want 5", got)
	}
	var r refusal
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if r.Error != "audit trail unavailable" || r.Reason != reason {
		t.Errorf("body %+v, want reason %q", r, reason)
	}
	if strings.Contains(body, "auditkit:") || strings.Contains(body, "SQLSTATE") {
		t.Errorf("the body leaks internal details: %s", body)
	}
}

// TestFailClosedRefusesWhenQueueFull: under a fail-closed writer whose queue is full, an audited
// request is answered 503 with Retry-After before its handler runs (nothing is written to the
// application's database), the refusals are logged at most once a second with their count, and
// an excluded path is still served.
func TestFailClosedRefusesWhenQueueFull(t *testing.T) {
	gate := newGateSink(nil)
	var runs atomic.Int64
	logs := &lockedBuffer{}
	h := policyHarness(t, gate, core.WriterOptions{QueueSize: 4, BatchSize: 1, Workers: 1, FailurePolicy: core.FailClosed},
		func(w *core.Writer, db *pgtest.DB) *gin.Engine {
			r := gin.New()
			r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true, ExcludePaths: []string{"/health"}},
				Logger: slog.New(slog.NewJSONHandler(logs, nil))}))
			r.POST("/orders", func(c *gin.Context) {
				runs.Add(1)
				if _, err := db.Pool.Exec(c.Request.Context(), `INSERT INTO orders (note) VALUES ('x')`); err != nil {
					c.String(500, err.Error())
					return
				}
				c.Status(201)
			})
			r.GET("/health", func(c *gin.Context) { c.String(200, "ok") })
			return r
		})
	t.Cleanup(gate.release) // runs before the writer's Close
	if _, err := h.db.Pool.Exec(context.Background(), `CREATE TABLE orders (id serial PRIMARY KEY, note text)`); err != nil {
		t.Fatal(err)
	}
	fillQueue(t, h.w, gate)

	const msg = "requests refused with 503"
	start := time.Now()
	for range 3 {
		resp, body := h.do("POST", "/orders", nil)
		checkRefused(t, resp, body, "the audit queue is full")
	}
	early := logs.lines(msg)
	// The reports' second starts with the first refusal, after start: read within it, the log
	// holds the first report only, and the deferred one holds the other two refusals. A test
	// goroutine descheduled for longer sees a later schedule, which the checks below do not judge.
	withinSecond := time.Since(start) < time.Second
	if n := runs.Load(); n != 0 {
		t.Errorf("the handler ran %d times", n)
	}
	var n int
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&n); err != nil || n != 0 {
		t.Errorf("orders: %d rows (%v), want 0", n, err)
	}
	if resp, body := h.do("GET", "/health", nil); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("excluded path: %d %q", resp.StatusCode, body)
	}
	if st := h.w.Stats(); st.Dropped != 0 {
		t.Errorf("a refused request dropped records: %+v", st)
	}

	// The first refusal is logged at once, the next two when the second has passed, in one line.
	if len(early) == 0 || !strings.Contains(early[0], `"refused_total":1`) {
		t.Fatalf("log right after the refusals: %q", early)
	}
	if !withinSecond {
		t.Logf("the three refusals took %s, more than the reports' second: their grouping is not judged", time.Since(start))
		return
	}
	if len(early) != 1 {
		t.Fatalf("log right after the refusals: %q", early)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(logs.lines(msg)) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the deferred report is due a second after the first
	}
	got := logs.lines(msg)
	if len(got) != 2 || !strings.Contains(got[1], `"refused_since_last_report":2`) || !strings.Contains(got[1], `"refused_total":3`) ||
		!strings.Contains(got[1], "queue is full") {
		t.Errorf("deferred report: %q", got)
	}
}

// countRows returns how many audit rows each request id has, by kind ("http", "insert", ...).
func countRows(t *testing.T, h *harness) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, r := range h.rows() {
		if out[r.RequestID] == nil {
			out[r.RequestID] = map[string]int{}
		}
		out[r.RequestID][r.Kind]++
	}
	return out
}

// checkReleased fails unless the writer holds no reservation: after a flush, the whole queue can
// be reserved.
func checkReleased(t *testing.T, w *core.Writer, queueSize int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := w.Reserve(queueSize)
	if err != nil {
		t.Fatalf("room is still reserved after the requests ended: %v (%+v)", err, w.Stats())
	}
	res.Release()
}

// TestFailClosedStoresRecords: with room in the queue, a fail-closed request's http record and
// the records of its changes (GORM's, and records whose room the handler reserved as an ORM
// integration does) are all stored, and every reservation is given back, also for a request
// that records nothing.
func TestFailClosedStoresRecords(t *testing.T) {
	const queueSize = 50
	var gdb *gorm.DB
	h := policyHarness(t, nil, core.WriterOptions{QueueSize: queueSize, BatchSize: 10, FailurePolicy: core.FailClosed},
		func(w *core.Writer, _ *pgtest.DB) *gin.Engine {
			r := gin.New()
			r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Logger: discardLogger()}))
			r.POST("/accounts", func(c *gin.Context) {
				a := account{Owner: c.Query("owner"), Balance: 100}
				if err := gdb.WithContext(c.Request.Context()).Create(&a).Error; err != nil {
					c.String(500, err.Error())
					return
				}
				c.JSON(201, a)
			})
			r.POST("/manual", func(c *gin.Context) {
				ctx := c.Request.Context()
				res, err := core.Admit(ctx, w, 2)
				if err != nil {
					c.String(500, err.Error())
					return
				}
				if res.Remaining() != 2 {
					c.String(500, "Admit reserved %d, want 2", res.Remaining())
					return
				}
				_ = core.DispatchReserved(ctx, w, res,
					&core.Record{Kind: core.KindCustom, Action: "manual.one"},
					&core.Record{Kind: core.KindCustom, Action: "manual.two"})
				c.Status(204)
			})
			r.GET("/ping", func(c *gin.Context) { c.String(200, "pong") }) // anonymous: not recorded
			return r
		})
	var err error
	gdb, err = gorm.Open(postgres.Open(h.db.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := gdb.DB(); err == nil {
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	if _, err := gormaudit.Register(gdb, gormaudit.Options{Writer: h.w}); err != nil {
		t.Fatal(err)
	}
	if err := gdb.AutoMigrate(&account{}); err != nil {
		t.Fatal(err)
	}

	for _, req := range []struct{ method, path, id string }{
		{"POST", "/accounts?owner=ada", "fc-gorm"}, {"POST", "/manual", "fc-manual"}, {"GET", "/ping", "fc-ping"},
	} {
		if resp, body := h.do(req.method, req.path, nil, "X-Request-ID", req.id); resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, resp.StatusCode, body)
		}
	}
	got := countRows(t, h)
	want := map[string]map[string]int{
		"fc-gorm":   {"http": 1, "insert": 1},
		"fc-manual": {"http": 1, "custom": 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows by request %v, want %v", got, want)
	}
	checkReleased(t, h.w, queueSize)
	if st := h.w.Stats(); st.Dropped != 0 || st.Written != 5 {
		t.Errorf("stats %+v, want 5 written and none dropped", st)
	}
}

// TestFailurePolicyPerRoute: a fail-open writer with a full queue serves its routes (the records
// are dropped and counted) except the group under FailurePolicy(core.FailClosed), which is
// refused before its handler runs; a FailurePolicy registered before the audit middleware is
// honoured by the middleware itself, and the handler's context carries the policy.
func TestFailurePolicyPerRoute(t *testing.T) {
	gate := newGateSink(nil)
	var runs atomic.Int64
	var seen atomic.Value
	h := policyHarness(t, gate, core.WriterOptions{QueueSize: 4, BatchSize: 1, Workers: 1},
		func(w *core.Writer, _ *pgtest.DB) *gin.Engine {
			mw := ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}, Logger: discardLogger()})
			handler := func(c *gin.Context) {
				runs.Add(1)
				p, _ := core.FailurePolicyFromContext(c.Request.Context())
				seen.Store(p)
				c.String(200, "done")
			}
			r := gin.New()
			r.Use(mw)
			r.POST("/public", handler)
			admin := r.Group("/admin", ginaudit.FailurePolicy(core.FailClosed))
			admin.POST("/grant", handler)
			// The policy set before the middleware, for an application that wraps its own engine.
			outer := gin.New()
			outer.Use(ginaudit.FailurePolicy(core.FailClosed), mw)
			outer.POST("/grant", handler)
			r.Any("/outer/*rest", func(c *gin.Context) {
				c.Request.URL.Path = "/" + strings.TrimPrefix(c.Param("rest"), "/")
				outer.HandleContext(c)
			})
			return r
		})
	t.Cleanup(gate.release)

	// With room, the fail-closed group runs and its handler sees the policy.
	if resp, body := h.do("POST", "/admin/grant", nil); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("admin with room: %d %q", resp.StatusCode, body)
	}
	if p, _ := seen.Load().(core.FailurePolicy); p != core.FailClosed {
		t.Errorf("the handler's context says %v", p)
	}
	fillQueue(t, h.w, gate)
	runs.Store(0)
	dropped := h.w.Stats().Dropped

	resp, body := h.do("POST", "/public", nil)
	if resp.StatusCode != 200 || body != "done" {
		t.Errorf("fail-open route with a full queue: %d %q", resp.StatusCode, body)
	}
	resp, body = h.do("POST", "/admin/grant", nil)
	checkRefused(t, resp, body, "the audit queue is full")
	if n := runs.Load(); n != 1 {
		t.Errorf("handlers ran %d times, want 1 (the public route)", n)
	}
	// The public request's http record was dropped; the refused one recorded nothing.
	if d := h.w.Stats().Dropped - dropped; d != 1 {
		t.Errorf("dropped %d records, want 1", d)
	}
	resp, body = h.do("POST", "/outer/grant", nil)
	checkRefused(t, resp, body, "the audit queue is full")
	if n := runs.Load(); n != 1 {
		t.Errorf("handlers ran %d times, want 1", n)
	}
}

// TestFailOpenFullQueue: under the default policy a full queue changes nothing for the client;
// the request's record is dropped and counted.
func TestFailOpenFullQueue(t *testing.T) {
	gate := newGateSink(nil)
	h := policyHarness(t, gate, core.WriterOptions{QueueSize: 4, BatchSize: 1, Workers: 1},
		func(w *core.Writer, _ *pgtest.DB) *gin.Engine {
			r := gin.New()
			r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}, Logger: discardLogger()}))
			r.POST("/orders", func(c *gin.Context) { c.String(201, "created") })
			return r
		})
	t.Cleanup(gate.release)
	fillQueue(t, h.w, gate)
	before := h.w.Stats().Dropped
	if resp, body := h.do("POST", "/orders", nil); resp.StatusCode != 201 || body != "created" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if d := h.w.Stats().Dropped - before; d != 1 {
		t.Errorf("Stats.Dropped grew by %d, want 1", d)
	}
}

// healthBody is HealthHandler's answer.
type healthBody struct {
	State         string     `json:"state"`
	Reason        string     `json:"reason"`
	Since         *time.Time `json:"since"`
	QueueDepth    *int       `json:"queue_depth"`
	QueueSize     int        `json:"queue_size"`
	SpoolBytes    *int64     `json:"spool_bytes"`
	SpoolMaxBytes *int64     `json:"spool_max_bytes"`
	Dropped       *uint64    `json:"dropped"`
}

func getHealth(t *testing.T, h *harness) (int, healthBody) {
	t.Helper()
	resp, body := h.do("GET", "/health", nil)
	var b healthBody
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("health body %q: %v", body, err)
	}
	if b.QueueDepth == nil || b.SpoolBytes == nil || b.SpoolMaxBytes == nil || b.Dropped == nil {
		t.Errorf("health body misses fields: %s", body)
	}
	return resp.StatusCode, b
}

// TestHealthHandler: 200 "healthy" for a working writer, 200 "degraded" for a writer whose queue
// is nearly full, 503 "failing" with the reason and its start for a writer whose database refuses
// it; and a fail-closed request to that writer is refused with a reason that does not quote the
// database.
func TestHealthHandler(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		h := policyHarness(t, nil, core.WriterOptions{QueueSize: 100, BatchSize: 10}, healthEngine)
		if resp, _ := h.do("POST", "/orders", nil); resp.StatusCode != 201 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if n := len(h.rows()); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
		code, b := getHealth(t, h)
		if code != 200 || b.State != "healthy" || b.Reason != "" || b.Since != nil || b.QueueSize != 100 || *b.QueueDepth != 0 {
			t.Errorf("%d %+v", code, b)
		}
	})
	t.Run("degraded", func(t *testing.T) {
		gate := newGateSink(nil)
		h := policyHarness(t, gate, core.WriterOptions{QueueSize: 10, BatchSize: 1, Workers: 1}, healthEngine)
		t.Cleanup(gate.release)
		fillQueue(t, h.w, gate)
		code, b := getHealth(t, h)
		if code != 200 || b.State != "degraded" || !strings.Contains(b.Reason, "queue") || *b.QueueDepth < 10 {
			t.Errorf("%d %+v", code, b)
		}
	})
	t.Run("failing", func(t *testing.T) {
		h := policyHarness(t, unavailableSink{}, core.WriterOptions{QueueSize: 100, BatchSize: 1, FailurePolicy: core.FailClosed,
			FlushInterval: time.Millisecond}, healthEngine)
		if err := h.w.Enqueue(&core.Record{Kind: core.KindCustom, Action: "probe"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for h.w.Health().State != core.Failing {
			if time.Now().After(deadline) {
				t.Fatalf("the writer never reported failing: %+v", h.w.Health())
			}
			time.Sleep(10 * time.Millisecond) // the first write attempt is asynchronous
		}
		code, b := getHealth(t, h)
		if code != 503 || b.State != "failing" || !strings.Contains(b.Reason, "audit_logs") || b.Since == nil || b.Since.IsZero() {
			t.Errorf("%d %+v", code, b)
		}
		resp, body := h.do("POST", "/orders", nil)
		checkRefused(t, resp, body, "the audit database refuses writes")
	})
}

func healthEngine(w *core.Writer, _ *pgtest.DB) *gin.Engine {
	r := gin.New()
	r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true, ExcludePaths: []string{"/health"}},
		Logger: discardLogger()}))
	r.GET("/health", ginaudit.HealthHandler(w))
	r.POST("/orders", func(c *gin.Context) { c.String(201, "created") })
	return r
}

// TestFailClosedConcurrentRequests: concurrent fail-closed requests against a small queue and a
// slow database, each writing a row of the application and reserving room for its record as an
// ORM integration does. Whatever was refused, nothing is lost or doubled: every request that
// succeeded has its http record and its change's record stored once, every request refused by
// the middleware left no trace, a request whose change was refused left only its http record,
// and no record was dropped.
func TestFailClosedConcurrentRequests(t *testing.T) {
	const queueSize, requests = 20, 16
	var runs atomic.Int64
	// A database that does not answer until the first request was refused, then is slow.
	gate := newGateSink(nil)
	t.Cleanup(gate.release)
	slow := func(db *pgtest.DB) core.Sink {
		gate.next = delaySink{d: 50 * time.Millisecond, next: core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})}
		return gate
	}
	h := policyHarnessOn(t, slow, core.WriterOptions{QueueSize: queueSize, BatchSize: 2, Workers: 1, FlushInterval: 5 * time.Millisecond,
		FailurePolicy: core.FailClosed}, func(w *core.Writer, db *pgtest.DB) *gin.Engine {
		r := gin.New()
		r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}, Logger: discardLogger()}))
		r.POST("/orders", func(c *gin.Context) {
			runs.Add(1)
			ctx := c.Request.Context()
			id, _ := core.RequestIDFromContext(ctx)
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				c.String(500, err.Error())
				return
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if _, err := tx.Exec(ctx, `INSERT INTO orders (request_id) VALUES ($1)`, id); err != nil {
				c.String(500, err.Error())
				return
			}
			time.Sleep(2 * time.Millisecond)  // the change holds its room a while, as a real one does
			res, err := core.Admit(ctx, w, 1) // before the commit: no commit without room for its record
			if err != nil {
				c.String(http.StatusInsufficientStorage, "change refused")
				return
			}
			if err := tx.Commit(ctx); err != nil {
				res.Release()
				c.String(500, err.Error())
				return
			}
			_ = core.DispatchReserved(ctx, w, res, &core.Record{Kind: core.KindInsert, ResourceType: "orders", ResourceID: id})
			c.Status(201)
		})
		return r
	})
	db := h.db
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE orders (id serial PRIMARY KEY, request_id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	fillQueue(t, h.w, gate)
	dropped := h.w.Stats().Dropped

	codes := make([]int, requests+1)
	send := func(i int) {
		resp, body := h.do("POST", "/orders", nil, "X-Request-ID", fmt.Sprintf("race-%02d", i))
		codes[i] = resp.StatusCode
		if resp.StatusCode == 503 {
			var r refusal
			if json.Unmarshal([]byte(body), &r) != nil || r.Error != "audit trail unavailable" {
				t.Errorf("race-%02d: 503 %q", i, body)
			}
		}
	}
	send(0) // the queue is full and not draining
	if codes[0] != 503 {
		t.Fatalf("a request to a full queue: %d", codes[0])
	}
	gate.release()
	var wg sync.WaitGroup
	for i := 1; i < requests; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond) // arrivals spread over the draining
			send(i)
		}()
	}
	wg.Wait()
	// Once the queue has drained, a request is served.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	send(requests)
	if codes[requests] != 201 {
		t.Errorf("a request after the drain: %d", codes[requests])
	}

	got := countRows(t, h)
	apps := map[string]int{}
	rs, err := db.Pool.Query(context.Background(), `SELECT request_id FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			t.Fatal(err)
		}
		apps[id]++
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	tally := map[int]int{}
	for i, code := range codes {
		id := fmt.Sprintf("race-%02d", i)
		tally[code]++
		var want map[string]int
		wantApp := 0
		switch code {
		case 201:
			want, wantApp = map[string]int{"http": 1, "insert": 1}, 1
		case 503:
			want = nil
		case http.StatusInsufficientStorage:
			want = map[string]int{"http": 1}
		default:
			t.Errorf("%s: status %d", id, code)
			continue
		}
		if fmt.Sprint(got[id]) != fmt.Sprint(want) || apps[id] != wantApp {
			t.Errorf("%s (status %d): audit rows %v, want %v; application rows %d, want %d", id, code, got[id], want, apps[id], wantApp)
		}
	}
	if n := runs.Load(); n != int64(len(codes)-tally[503]) {
		t.Errorf("handlers ran %d times for %d requests not refused", n, len(codes)-tally[503])
	}
	if st := h.w.Stats(); st.Dropped != dropped {
		t.Errorf("records dropped: %+v", st)
	}
	checkReleased(t, h.w, queueSize)
	t.Logf("statuses: %v", tally)
}
