package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLogger collects what the writer logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func sampleRecord(i int) *core.Record {
	return &core.Record{
		Kind:         core.KindUpdate,
		ResourceType: "customers",
		ResourceID:   fmt.Sprint(i),
		Tenant:       core.Tenant{ID: "t1", Slug: "acme"},
		Actor:        core.Actor{ID: "u1", Type: core.ActorTenantUser, Email: "u1@example.com", Auth: "jwt:HS256"},
		Before:       map[string]any{"name": "before", "n": i},
		After:        map[string]any{"name": "after", "n": i + 1},
		Diff:         map[string]core.Change{"n": {From: i, To: i + 1}},
		RequestID:    "req-1",
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeWriter(t *testing.T, w *core.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestWriterBatchesBySize(t *testing.T) {
	db := pgtest.New(t)
	log, _ := newLogger()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 10, FlushInterval: time.Hour, Logger: log})
	defer closeWriter(t, w)
	for i := range 25 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "two full batches", func() bool { return w.Stats().Written == 20 })
	// The remaining 5 wait for the (one hour) interval: only a flush writes them.
	time.Sleep(50 * time.Millisecond)
	if s := w.Stats(); s.Written != 20 || s.Batches != 2 || s.QueueDepth != 5 {
		t.Fatalf("stats before flush = %+v, want 20 written in 2 batches, 5 pending", s)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t); n != 25 {
		t.Fatalf("audit_logs has %d rows, want 25", n)
	}
}

func TestWriterBatchesByTime(t *testing.T) {
	db := pgtest.New(t)
	const interval = 300 * time.Millisecond
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 1000, FlushInterval: interval})
	defer closeWriter(t, w)
	start := time.Now()
	for i := range 3 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A partial batch waits for the interval.
	time.Sleep(50 * time.Millisecond)
	// Judged only when the stats were read well inside the interval, so that a test goroutine
	// descheduled for longer cannot fail it.
	if s, elapsed := w.Stats(), time.Since(start); elapsed < interval-50*time.Millisecond && (s.Written != 0 || s.Batches != 0) {
		t.Fatalf("stats after %s = %+v, want nothing written before the %s interval", elapsed, s, interval)
	}
	eventually(t, 10*time.Second, "the interval to write a partial batch", func() bool { return w.Stats().Written == 3 })
	if d := time.Since(start); d < interval-20*time.Millisecond {
		t.Fatalf("the partial batch was written after %s, before the %s interval", d, interval)
	}
	if s := w.Stats(); s.Batches != 1 {
		t.Fatalf("stats = %+v, want the 3 records in exactly 1 batch", s)
	}
	if n := db.Count(t); n != 3 {
		t.Fatalf("audit_logs has %d rows, want 3", n)
	}
}

func TestWriterRoundTripsEveryColumn(t *testing.T) {
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer closeWriter(t, w)
	at := time.Date(2026, 11, 24, 10, 0, 0, 123456000, time.UTC)
	r := &core.Record{
		OccurredAt:   at,
		Kind:         core.KindHTTP,
		Severity:     core.SeverityWarning,
		Tenant:       core.Tenant{ID: "t-9", Slug: "nine"},
		Actor:        core.Actor{ID: "42", Type: core.ActorService, Email: "svc@example.com", Auth: "jwks:RS256"},
		RequestID:    "req-abc",
		Method:       "POST",
		Route:        "/customers/:id",
		Path:         "/customers/7",
		Query:        map[string][]string{"q": {"x"}, "token": {"secret-token-value"}},
		Status:       401,
		Duration:     1500 * time.Microsecond,
		IP:           netip.MustParseAddr("203.0.113.7"),
		UserAgent:    "curl/8",
		RequestBody:  &core.Body{ContentType: "application/json", Data: []byte(`{"name":"x","password":"hunter2"}`), Size: 33},
		ResponseBody: &core.Body{ContentType: "text/plain", Data: []byte("denied"), Size: 6},
		Metadata:     map[string]any{"reason": "expired", "api_key": "k-123"},
	}
	if err := w.Enqueue(r); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var (
		kind, action, severity, actorType, auth, ip string
		status                                      int
		durationUS                                  int64
		occurred                                    time.Time
		query, reqBody, respBody, meta              string
		version                                     int
	)
	err := db.Pool.QueryRow(context.Background(), `SELECT kind, action, severity, actor_type, actor_auth, host(ip), status,
		duration_us, occurred_at, query::text, request_body::text, response_body::text, metadata::text, version
		FROM audit_logs WHERE id = $1`, r.ID).Scan(&kind, &action, &severity, &actorType, &auth, &ip, &status,
		&durationUS, &occurred, &query, &reqBody, &respBody, &meta, &version)
	if err != nil {
		t.Fatal(err)
	}
	if kind != "http" || action != "http.request" || severity != "warning" || actorType != "service" ||
		auth != "jwks:RS256" || ip != "203.0.113.7" || status != 401 || durationUS != 1500 || !occurred.Equal(at) || version != core.RecordVersion {
		t.Fatalf("row = %s %s %s %s %s %s %d %d %s v%d", kind, action, severity, actorType, auth, ip, status, durationUS, occurred, version)
	}
	for _, secret := range []string{"secret-token-value", "hunter2", "k-123"} {
		if strings.Contains(query+reqBody+respBody+meta, secret) {
			t.Errorf("secret %q was stored: %s %s %s", secret, query, reqBody, meta)
		}
	}
	if !strings.Contains(reqBody, `"name": "x"`) || !strings.Contains(respBody, "denied") {
		t.Errorf("bodies not stored: %s / %s", reqBody, respBody)
	}
}

// killingSink terminates the PostgreSQL backend serving the COPY while it runs, once.
type killingSink struct {
	inner  core.Sink
	admin  *pgxpool.Pool
	app    string
	killed atomic.Bool
	t      *testing.T
}

func (k *killingSink) Write(ctx context.Context, recs []*core.Record) error {
	if k.killed.Load() {
		return k.inner.Write(ctx, recs)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5000; i++ {
			var n int
			err := k.admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'active' AND query ILIKE 'copy%'`, k.app).Scan(&n)
			if err == nil && n > 0 {
				k.killed.Store(true)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	err := k.inner.Write(ctx, recs)
	<-done
	return err
}

func TestWriterRetriesAcrossBackendKill(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	app := "auditkit_kill_" + db.Schema
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log, logs := newLogger()
	sink := &killingSink{inner: core.NewPostgresSink(pool, core.PostgresSinkOptions{Schema: db.Schema}), admin: db.Pool, app: app, t: t}
	// One COPY of 20,000 padded rows may take longer than the default attempt deadline under -race.
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 20000, FlushInterval: time.Hour, MinBackoff: 10 * time.Millisecond,
		AttemptTimeout: 50 * time.Second, Logger: log})
	defer closeWriter(t, w)
	const n = 20000
	for i := range n {
		r := sampleRecord(i)
		r.Metadata = map[string]any{"pad": strings.Repeat("x", 400)}
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := w.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if !sink.killed.Load() {
		t.Fatal("the backend was never caught running the COPY; the test proved nothing")
	}
	s := w.Stats()
	if s.Retried < 1 || s.Written != n || s.Failed != 0 || s.Dropped != 0 {
		t.Fatalf("stats = %+v, want >=1 retry and all %d written", s, n)
	}
	var total, distinct int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM audit_logs`).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total != n || distinct != n {
		t.Fatalf("audit_logs has %d rows (%d distinct), want %d once each", total, distinct, n)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("the retry was not logged: %s", logs.String())
	}
}

// ackLossSink stores the batch and then reports a connection error, once: the outcome of the
// first attempt looks unknown to the writer although it committed.
type ackLossSink struct {
	inner core.Sink
	lost  atomic.Bool
}

func (a *ackLossSink) Write(ctx context.Context, recs []*core.Record) error {
	if err := a.inner.Write(ctx, recs); err != nil {
		return err
	}
	if a.lost.CompareAndSwap(false, true) {
		return errors.New("read tcp: connection reset by peer")
	}
	return nil
}

func TestWriterRetryAfterLostAckStoresNothingTwice(t *testing.T) {
	db := pgtest.New(t)
	sink := &ackLossSink{inner: core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})}
	log, _ := newLogger()
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 100, FlushInterval: time.Hour, MinBackoff: time.Millisecond, Logger: log})
	defer closeWriter(t, w)
	for i := range 50 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A record accepted twice by the application is stored once as well.
	dup := sampleRecord(99)
	if err := w.Enqueue(dup); err != nil {
		t.Fatal(err)
	}
	again := *dup
	if err := w.Enqueue(&again); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Retried != 1 || s.Failed != 0 {
		t.Fatalf("stats = %+v, want exactly one retry", s)
	}
	if n := db.Count(t); n != 51 {
		t.Fatalf("audit_logs has %d rows, want 51", n)
	}
}

func TestWriterIsolatesPoisonRecords(t *testing.T) {
	db := pgtest.New(t)
	log, logs := newLogger()
	var rejected []uuid.UUID
	var mu sync.Mutex
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{
		BatchSize: 100, FlushInterval: time.Hour, Logger: log,
		OnReject: func(r *core.Record, err error) {
			mu.Lock()
			rejected = append(rejected, r.ID)
			mu.Unlock()
		},
	})
	defer closeWriter(t, w)

	var poison []*core.Record
	for i := range 30 {
		r := sampleRecord(i)
		switch i {
		case 3: // NUL bytes and invalid UTF-8: sanitised, then written
			r.ResourceID = "id\x00with-nul"
			r.After = map[string]any{"bio": "nul\x00inside", "bad": string([]byte{0xff, 0xfe}), "k\x00ey": 1}
		case 11, 20: // a number jsonb cannot hold: refused by the server, isolated
			r.Metadata = map[string]any{"amount": json.Number("1e1000000")}
			poison = append(poison, r)
		}
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	if s.Written != 28 || s.Failed != 2 {
		t.Fatalf("stats = %+v, want 28 written and 2 failed", s)
	}
	if n := db.Count(t); n != 28 {
		t.Fatalf("audit_logs has %d rows, want 28", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rejected) != 2 || rejected[0] != poison[0].ID || rejected[1] != poison[1].ID {
		t.Fatalf("OnReject got %v, want the two poison ids", rejected)
	}
	if !strings.Contains(logs.String(), poison[0].ID.String()) {
		t.Errorf("rejected record not logged by id")
	}
	if !strings.Contains(logs.String(), "value overflows numeric format") { // found by the server or before hashing
		t.Errorf("the server's reason was not logged: %s", logs.String())
	}
	var rid, after string
	if err := db.Pool.QueryRow(context.Background(), `SELECT resource_id, after::text FROM audit_logs WHERE resource_id LIKE 'id%'`).
		Scan(&rid, &after); err != nil {
		t.Fatal(err)
	}
	if rid != "idwith-nul" || !strings.Contains(after, "nulinside") || !strings.Contains(after, "\ufffd") {
		t.Fatalf("sanitised record stored as %q %s", rid, after)
	}
}

// fakeSink is an in-memory sink for testing the writer's logic without a database.
type fakeSink struct {
	mu      sync.Mutex
	stored  map[uuid.UUID]int
	calls   int
	fail    func(call int, recs []*core.Record) error
	release chan struct{} // when non-nil, Write waits for it (or ctx)
}

func newFakeSink() *fakeSink { return &fakeSink{stored: map[uuid.UUID]int{}} }

func (f *fakeSink) Write(ctx context.Context, recs []*core.Record) error {
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls, recs); err != nil {
			return err
		}
	}
	for _, r := range recs {
		f.stored[r.ID]++
	}
	return nil
}

func (f *fakeSink) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stored)
}

func TestWriterBisectsWhenThePositionIsUnknown(t *testing.T) {
	sink := newFakeSink()
	sink.fail = func(_ int, recs []*core.Record) error {
		for _, r := range recs {
			if r.Action == "poison" {
				return &core.RejectedError{Index: -1, Err: errors.New("bad row somewhere")}
			}
		}
		return nil
	}
	log, _ := newLogger()
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 64, FlushInterval: time.Hour, Logger: log})
	defer closeWriter(t, w)
	for i := range 64 {
		r := sampleRecord(i)
		if i == 5 || i == 40 || i == 41 {
			r.Action = "poison"
		}
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Written != 61 || s.Failed != 3 || sink.count() != 61 {
		t.Fatalf("stats = %+v, sink holds %d; want 61 written, 3 failed", s, sink.count())
	}
}

func TestWriterOverflowIsCountedAndReported(t *testing.T) {
	sink := newFakeSink()
	sink.release = make(chan struct{})
	log, logs := newLogger()
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 5, QueueSize: 10, FlushInterval: time.Millisecond, Logger: log})
	accepted, refused := 0, 0
	for i := range 100 {
		switch err := w.Enqueue(sampleRecord(i)); {
		case err == nil:
			accepted++
		case errors.Is(err, core.ErrQueueFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	// At most the queue, one batch per worker and one waiting for a worker (QueueSize + 3*BatchSize).
	if accepted > 25 || refused == 0 {
		t.Fatalf("accepted %d, refused %d: the queue bound did not hold", accepted, refused)
	}
	s := w.Stats()
	if int(s.Dropped) != refused || int(s.Enqueued) != accepted || s.QueueDepth != accepted {
		t.Fatalf("stats = %+v, want dropped=%d enqueued=%d depth=%d", s, refused, accepted, accepted)
	}
	close(sink.release)
	closeWriter(t, w)
	if s := w.Stats(); int(s.Written) != accepted || sink.count() != accepted {
		t.Fatalf("after close: %+v, sink %d; want every accepted record written", s, sink.count())
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Errorf("drops were not reported: %s", logs.String())
	}
}

func TestWriterCloseDrainsEverything(t *testing.T) {
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 300, FlushInterval: time.Hour, QueueSize: 2000})
	for i := range 1000 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	if n := db.Count(t); n != 1000 {
		t.Fatalf("audit_logs has %d rows after Close, want 1000", n)
	}
	if err := w.Enqueue(sampleRecord(1)); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if err := w.Flush(context.Background()); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
}

func TestWriterRejectsInvalidRecords(t *testing.T) {
	sink := newFakeSink()
	w := core.NewWriter(sink, core.WriterOptions{})
	defer closeWriter(t, w)
	for _, r := range []*core.Record{
		nil,
		{Kind: "upsert"},
		{Kind: core.KindCustom, Severity: "loud"},
		{Kind: core.KindCustom, Actor: core.Actor{Type: "root"}},
		{Kind: core.KindHTTP, Status: 1000},
		// Beyond timestamptz's range: pgx's encoding would wrap the first one around to another date.
		{Kind: core.KindCustom, OccurredAt: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Kind: core.KindCustom, OccurredAt: time.Date(294277, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Kind: core.KindCustom, OccurredAt: time.Date(-4713, 11, 23, 23, 59, 59, 0, time.UTC)},
	} {
		if err := w.Enqueue(r); !errors.Is(err, core.ErrInvalidRecord) {
			t.Errorf("Enqueue(%+v) = %v, want ErrInvalidRecord", r, err)
		}
	}
	if s := w.Stats(); s.Invalid != 8 || s.Enqueued != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

// blackHole accepts TCP connections and never answers: a peer that stalls every network step.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

func TestWriterDoesNotStallOnASilentPeer(t *testing.T) {
	addr := blackHole(t)
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLogger()
	w := core.NewWriter(core.NewPostgresSink(pool, core.PostgresSinkOptions{}), core.WriterOptions{
		BatchSize: 10, FlushInterval: time.Millisecond, AttemptTimeout: time.Hour, Logger: log,
		OnClose: func(ctx context.Context) error { pool.Close(); return nil },
	})
	refused := 0
	// Enqueue stays fast while the writer is stuck.
	start := time.Now()
	for i := range 1000 {
		if err := w.Enqueue(sampleRecord(i)); errors.Is(err, core.ErrQueueFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1000 enqueues took %s while the database was unresponsive", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := w.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Flush took %s past its 200ms context", d)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start = time.Now()
	err = w.Close(ctx2)
	// Close gives up when its context ends; the write stuck on the peer ends in the background.
	// (The bound leaves room for a loaded machine, yet is below 200ms plus any fixed grace wait.)
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("Close took %s for a 200ms context", d)
	}
	if err == nil || !strings.Contains(err.Error(), "not written") {
		t.Fatalf("Close = %v, want an error counting unwritten records", err)
	}
	// Every accepted record is accounted for: none written, all counted as dropped at Close.
	s := w.Stats()
	if s.Written != 0 || s.Enqueued != 1000-uint64(refused) || s.Dropped != 1000 || s.QueueDepth != 0 {
		t.Fatalf("stats = %+v (refused %d), want every record counted as dropped", s, refused)
	}
}

func TestWriterConcurrentEnqueueAndFlush(t *testing.T) {
	sink := newFakeSink()
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 50, FlushInterval: time.Millisecond, QueueSize: 100000})
	var wg sync.WaitGroup
	const producers, each = 8, 2000
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := w.Enqueue(sampleRecord(p*each + i)); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					if err := w.Flush(context.Background()); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	closeWriter(t, w)
	if s := w.Stats(); s.Written != producers*each || sink.count() != producers*each {
		t.Fatalf("stats = %+v, sink %d; want %d", s, sink.count(), producers*each)
	}
}

func TestFlushCoversRecordsAcceptedBefore(t *testing.T) {
	sink := newFakeSink()
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 1000, FlushInterval: time.Hour})
	defer closeWriter(t, w)
	for round := range 50 {
		for i := range 7 {
			if err := w.Enqueue(sampleRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := sink.count(); got != (round+1)*7 {
			t.Fatalf("after flush %d the sink holds %d, want %d", round, got, (round+1)*7)
		}
	}
}

// stuckSink ignores its context: Write returns only when release is closed.
type stuckSink struct {
	release chan struct{}
	calls   atomic.Int32
}

func (s *stuckSink) Write(context.Context, []*core.Record) error {
	s.calls.Add(1)
	<-s.release
	return nil
}

func TestWriterCloseGivesUpPromptlyAndRunsOnCloseOnce(t *testing.T) {
	sink := &stuckSink{release: make(chan struct{})}
	var released sync.Once
	release := func() { released.Do(func() { close(sink.release) }) }
	t.Cleanup(release)
	log, logs := newLogger()
	var onClose atomic.Int32
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 10, FlushInterval: time.Millisecond, Logger: log,
		OnClose: func(ctx context.Context) error { onClose.Add(1); return nil }})
	for i := range 25 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "a write to start", func() bool { return sink.calls.Load() > 0 })

	for round := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := w.Close(ctx)
		d := time.Since(start)
		cancel()
		if d > 900*time.Millisecond {
			t.Fatalf("Close %d took %s for a 200ms context with a sink that ignores it", round+1, d)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close %d = %v, want deadline exceeded", round+1, err)
		}
	}
	if n := onClose.Load(); n != 1 {
		t.Fatalf("OnClose called %d times, want once", n)
	}
	if s := w.Stats(); s.Dropped != 25 || s.Written != 0 || s.QueueDepth != 0 {
		t.Fatalf("stats after Close gave up = %+v, want all 25 counted as dropped", s)
	}
	if !strings.Contains(logs.String(), "records=25") {
		t.Errorf("the abandoned records were not reported: %s", logs.String())
	}

	// The sink returns (it even stored the batch): the goroutine ends, nothing is counted twice.
	release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close after the sink returned = %v", err)
	}
	if s := w.Stats(); s.Dropped != 25 || s.Written != 0 || s.Batches != 0 {
		t.Fatalf("stats after the sink returned = %+v, want the 25 counted once, as dropped", s)
	}
	if n := onClose.Load(); n != 1 {
		t.Fatalf("OnClose called %d times, want once", n)
	}
}

// captureHandler keeps every log record, for tests that check what was reported and with which counts.
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// sum adds up attribute attr over the records whose message contains msg, and counts those records.
func (h *captureHandler) sum(msg, attr string) (total uint64, lines int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if !strings.Contains(r.Message, msg) {
			continue
		}
		lines++
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == attr {
				total += a.Value.Uint64()
			}
			return true
		})
	}
	return total, lines
}

func TestWriterReportsEveryRefusal(t *testing.T) {
	sink := newFakeSink()
	sink.release = make(chan struct{})
	h := &captureHandler{}
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 5, QueueSize: 10, Workers: 1,
		FlushInterval: time.Millisecond, Logger: slog.New(h)})
	offer := func(n int) (refused int) {
		for i := range n {
			switch err := w.Enqueue(sampleRecord(i)); {
			case errors.Is(err, core.ErrQueueFull):
				refused++
			case err != nil:
				t.Fatal(err)
			}
		}
		return refused
	}

	// The first drop is reported at once, those in the following second when it ends.
	full := offer(100)
	for range 3 {
		if err := w.Enqueue(&core.Record{Kind: "upsert"}); !errors.Is(err, core.ErrInvalidRecord) {
			t.Fatalf("Enqueue of an invalid record = %v", err)
		}
	}
	if full < 2 {
		t.Fatalf("only %d records refused; the queue bound did not hold", full)
	}
	eventually(t, 5*time.Second, "every drop to be reported", func() bool {
		n, _ := h.sum("queue full", "dropped_since_last_report")
		return n == uint64(full)
	})
	if _, lines := h.sum("queue full", "dropped_since_last_report"); lines != 2 {
		t.Errorf("%d queue-full reports for one burst, want 2 (at once, then when the second ends)", lines)
	}
	eventually(t, 5*time.Second, "the invalid records to be reported", func() bool {
		n, _ := h.sum("invalid audit records", "refused_since_last_report")
		return n == 3
	})

	// Drops inside the window are reported by Close.
	full += offer(7)
	close(sink.release)
	closeWriter(t, w)
	if n, _ := h.sum("queue full", "dropped_since_last_report"); n != uint64(full) {
		t.Fatalf("reported %d queue-full drops by the end of Close, want %d", n, full)
	}

	// Records offered after Close are counted and reported too.
	for i := range 4 {
		if err := w.Enqueue(sampleRecord(i)); !errors.Is(err, core.ErrClosed) {
			t.Fatalf("Enqueue after Close = %v, want ErrClosed", err)
		}
	}
	eventually(t, 5*time.Second, "the records offered after Close to be reported", func() bool {
		n, _ := h.sum("after the writer was closed", "dropped_since_last_report")
		return n == 4
	})
	if s := w.Stats(); s.Dropped != uint64(full)+4 || s.Invalid != 3 || s.Written != s.Enqueued {
		t.Fatalf("stats = %+v, want %d dropped (%d for a full queue, 4 after Close), 3 invalid", s, full+4, full)
	}
}

// orderSink records the batches it is given.
type orderSink struct {
	mu      sync.Mutex
	batches [][]string
}

func (o *orderSink) Write(_ context.Context, recs []*core.Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := make([]string, len(recs))
	for i, r := range recs {
		b[i] = r.ResourceID
	}
	o.batches = append(o.batches, b)
	return nil
}

// TestWriterKeepsOrderAcrossBatches: with one worker, records reach the sink in the order they
// were accepted, in full batches except those a flush or Close cut short.
func TestWriterKeepsOrderAcrossBatches(t *testing.T) {
	sink := &orderSink{}
	w := core.NewWriter(sink, core.WriterOptions{BatchSize: 4, QueueSize: 1000, Workers: 1, FlushInterval: time.Hour})
	next := 0
	offer := func(n int) {
		for range n {
			if err := w.Enqueue(sampleRecord(next)); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	offer(10)
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	offer(13)
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	offer(3)
	closeWriter(t, w)

	var sizes []int
	i := 0
	for _, b := range sink.batches {
		sizes = append(sizes, len(b))
		for _, id := range b {
			if id != fmt.Sprint(i) {
				t.Fatalf("record %s reached the sink where %d was expected; batches %v", id, i, sink.batches)
			}
			i++
		}
	}
	if i != next || fmt.Sprint(sizes) != "[4 4 2 4 4 4 1 3]" {
		t.Fatalf("batch sizes %v for %d records, want [4 4 2 4 4 4 1 3] for %d", sizes, i, next)
	}
}
