package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
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

// faultItem is the application's table: every committed row must have one insert record.
type faultItem struct {
	ID   int64 `gorm:"primaryKey"`
	Name string
}

func (faultItem) TableName() string { return "fault_items" }

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	code := m.Run()
	printTable()
	os.Exit(code)
}

// logBuffer collects the writer's log lines (JSON) for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(b.buf.String(), "\n")
}

// env is one scenario's application: a GORM database connected directly to PostgreSQL with
// gormaudit registered, a Gin server with ginaudit in front of handlers writing through that
// GORM, and the audit writer, connected through a proxy or straight to the server.
type env struct {
	t       *testing.T
	name    string
	db      *pgtest.DB
	gdb     *gorm.DB
	w       *core.Writer
	srv     *httptest.Server
	client  *http.Client
	proxy   *Proxy
	appName string // the writer's application_name
	logs    *logBuffer
	reqSeq  atomic.Int64
	closed  bool
}

// newEnv builds a scenario's application. With viaProxy the writer connects through a Proxy;
// mod adjusts the writer's configuration.
func newEnv(t *testing.T, name string, viaProxy bool, mod func(*core.Config)) *env {
	t.Helper()
	e := &env{t: t, name: name, db: pgtest.New(t), logs: &logBuffer{}}
	ctx := context.Background()
	if _, err := e.db.Pool.Exec(ctx, `CREATE TABLE fault_items (id bigserial PRIMARY KEY, name text NOT NULL);
		CREATE TABLE fault_control (id bigserial PRIMARY KEY, name text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	e.appName = "auditkit-faults-" + hex.EncodeToString(suffix)
	wurl := withParam(t, e.db.URL, "application_name", e.appName)
	if viaProxy {
		e.proxy = startProxy(t)
		var err error
		if wurl, err = e.proxy.URL(wurl); err != nil {
			t.Fatal(err)
		}
	}
	cfg := core.Config{
		DatabaseURL:   wurl,
		Schema:        e.db.Schema,
		FlushInterval: 100 * time.Millisecond,
		Logger:        slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if mod != nil {
		mod(&cfg)
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	t.Cleanup(func() {
		if !e.closed {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.Close(ctx)
		}
	})
	gdb, err := gorm.Open(postgres.Open(e.db.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	if _, err := gormaudit.Register(gdb, gormaudit.Options{Writer: w, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	e.gdb = gdb
	r := gin.New()
	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{
		Writer: w, Config: core.Config{LogAnonymous: true}, Logger: slog.New(slog.DiscardHandler),
	}))
	r.POST("/items", func(c *gin.Context) {
		it := faultItem{Name: "http"}
		if err := gdb.WithContext(c.Request.Context()).Create(&it).Error; err != nil {
			if errors.Is(err, core.ErrAuditUnavailable) {
				c.String(http.StatusServiceUnavailable, err.Error())
				return
			}
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.JSON(http.StatusCreated, it)
	})
	e.srv = httptest.NewServer(r)
	e.client = e.srv.Client()
	e.client.Timeout = 15 * time.Second
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		e.srv.Close()
	})
	return e
}

func withParam(t *testing.T, u, key, value string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set(key, value)
	pu.RawQuery = q.Encode()
	return pu.String()
}

// createGORM creates one item through GORM outside any request.
func (e *env) createGORM(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return e.gdb.WithContext(ctx).Create(&faultItem{Name: "gorm"}).Error
}

// post sends one audited request with a unique request id and returns its id and status.
func (e *env) post() (string, int, error) {
	id := fmt.Sprintf("%s-%d", e.name, e.reqSeq.Add(1))
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/items", nil)
	if err != nil {
		return id, 0, err
	}
	req.Header.Set("X-Request-ID", id)
	resp, err := e.client.Do(req)
	if err != nil {
		return id, 0, err
	}
	_ = resp.Body.Close()
	return id, resp.StatusCode, nil
}

// sample is the duration of one audited operation and when it started.
type sample struct {
	at time.Time
	d  time.Duration
}

// load drives audited writes at a steady pace through GORM and through HTTP.
type load struct {
	mu       sync.Mutex
	samples  []sample
	control  []sample // unaudited inserts paced with the GORM writes, in the same process
	okIDs    []string // request ids answered 2xx
	statuses map[int]int
	gormErrs []error
	httpErrs []error
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// startLoad runs one GORM create every gormEvery and one request every httpEvery until stop,
// and, as a control, one unaudited insert every gormEvery on the test's own pool: the control
// shows what the machine's load alone did to latency while the scenario ran.
func (e *env) startLoad(gormEvery, httpEvery time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, statuses: map[int]int{}}
	paced := func(every time.Duration, op func()) {
		defer l.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				op()
			}
		}
	}
	l.wg.Add(3)
	go paced(gormEvery, func() {
		start := time.Now()
		_, err := e.db.Pool.Exec(context.Background(), `INSERT INTO fault_control (name) VALUES ('control')`)
		d := time.Since(start)
		l.mu.Lock()
		defer l.mu.Unlock()
		if err == nil {
			l.control = append(l.control, sample{start, d})
		}
	})
	go paced(gormEvery, func() {
		start := time.Now()
		err := e.createGORM(context.Background())
		d := time.Since(start)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.samples = append(l.samples, sample{start, d})
		if err != nil {
			l.gormErrs = append(l.gormErrs, err)
		}
	})
	go paced(httpEvery, func() {
		start := time.Now()
		id, status, err := e.post()
		d := time.Since(start)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.samples = append(l.samples, sample{start, d})
		if err != nil {
			l.httpErrs = append(l.httpErrs, err)
			return
		}
		l.statuses[status]++
		if status/100 == 2 {
			l.okIDs = append(l.okIDs, id)
		}
	})
	return l
}

// stop ends the load and waits for the operations in progress.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// p99 returns the 99th percentile of the audited operations started in [from, to).
func (l *load) p99(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return p99Of(l.samples, from, to)
}

// controlP99 returns the 99th percentile of the control's inserts started in [from, to).
func (l *load) controlP99(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return p99Of(l.control, from, to)
}

func p99Of(samples []sample, from, to time.Time) time.Duration {
	var ds []time.Duration
	for _, s := range samples {
		if !s.at.Before(from) && s.at.Before(to) {
			ds = append(ds, s.d)
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)]
}

// requireNoErrors fails t when an operation of the load failed: under FailOpen the application
// never notices the audit trail's trouble.
func (l *load) requireNoErrors(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.gormErrs) > 0 || len(l.httpErrs) > 0 {
		t.Errorf("%d GORM writes and %d requests failed; first: %v %v", len(l.gormErrs), len(l.httpErrs),
			first(l.gormErrs), first(l.httpErrs))
	}
	for st, n := range l.statuses {
		if st/100 != 2 {
			t.Errorf("%d requests answered %d", n, st)
		}
	}
}

func first(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// heapPeak samples HeapInuse every 100ms until the returned function is called, which returns
// the peak. The heap is the test process's: scenarios running in parallel share it.
func heapPeak() func() uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-stopped
		return peak.Load()
	}
}

// drain waits until the writer has nothing pending and returns how long it took.
func (e *env) drain(limit time.Duration) time.Duration {
	e.t.Helper()
	start := time.Now()
	for e.w.Stats().QueueDepth != 0 {
		if time.Since(start) > limit {
			e.t.Fatalf("the writer still holds %d records %v after the fault ended; stats %+v",
				e.w.Stats().QueueDepth, limit, e.w.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// close closes the writer with a deadline and returns its final counters.
func (e *env) close() core.Stats {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.w.Close(ctx); err != nil {
		e.t.Errorf("Close: %v", err)
	}
	e.closed = true
	return e.w.Stats()
}

// tally is what the database holds against what the application did.
type tally struct {
	offered    int // committed rows plus 2xx requests: one record each expected
	stored     int // of those, how many have a record
	duplicated int // records beyond the first for one row, one request or one id
	phantom    int // insert records for rows that did not commit
}

// count reads the audit trail back and holds it against the committed rows and okIDs.
func (e *env) count(okIDs []string) tally {
	e.t.Helper()
	ctx := context.Background()
	var tl tally
	rows := map[string]bool{}
	if err := queryEach(ctx, e.db, `SELECT id::text FROM fault_items`, func(id string, _ int) { rows[id] = true }); err != nil {
		e.t.Fatal(err)
	}
	recs := map[string]int{}
	if err := queryEach(ctx, e.db, `SELECT resource_id, count(*) FROM audit_logs
		WHERE kind = 'insert' AND resource_type = 'fault_items' GROUP BY resource_id`,
		func(id string, n int) { recs[id] = n }); err != nil {
		e.t.Fatal(err)
	}
	for id := range rows {
		if n := recs[id]; n > 0 {
			tl.stored++
			tl.duplicated += n - 1
		}
	}
	for id := range recs {
		if !rows[id] {
			tl.phantom++
		}
	}
	reqs := map[string]int{}
	if err := queryEach(ctx, e.db, `SELECT request_id, count(*) FROM audit_logs
		WHERE kind = 'http' AND request_id IS NOT NULL GROUP BY request_id`,
		func(id string, n int) { reqs[id] = n }); err != nil {
		e.t.Fatal(err)
	}
	for _, id := range okIDs {
		if n := reqs[id]; n > 0 {
			tl.stored++
			tl.duplicated += n - 1
		}
	}
	var dupIDs int
	if err := e.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(c - 1), 0) FROM
		(SELECT count(*) AS c FROM audit_logs GROUP BY id HAVING count(*) > 1) d`).Scan(&dupIDs); err != nil {
		e.t.Fatal(err)
	}
	tl.duplicated += dupIDs
	tl.offered = len(rows) + len(okIDs)
	return tl
}

func queryEach(ctx context.Context, db *pgtest.DB, q string, f func(string, int)) error {
	rows, err := db.Pool.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s string
			n int
		)
		vals := []any{&s}
		if len(rows.FieldDescriptions()) == 2 {
			vals = append(vals, &n)
		}
		if err := rows.Scan(vals...); err != nil {
			return err
		}
		f(s, n)
	}
	return rows.Err()
}

// check holds the promise: nothing stored twice, no record for a change that did not commit,
// and every record not stored counted in Dropped (lost == dropped, never silent).
func (e *env) check(tl tally, st core.Stats) {
	e.t.Helper()
	if tl.duplicated != 0 {
		e.t.Errorf("%d records stored twice", tl.duplicated)
	}
	if tl.phantom != 0 {
		e.t.Errorf("%d insert records for rows that did not commit", tl.phantom)
	}
	if lost := tl.offered - tl.stored; uint64(lost) != st.Dropped {
		e.t.Errorf("%d records lost (%d offered, %d stored) but %d counted as dropped; stats %+v",
			lost, tl.offered, tl.stored, st.Dropped, st)
	}
	if tl.offered == 0 {
		e.t.Error("the load offered no records")
	}
}

// row is one line of the results table.
type row struct {
	scenario             string
	accepted, stored     int
	duplicated, lost     int
	dropped, failed      uint64
	peakHeap             uint64
	p99Before, p99During time.Duration
	recovery, duration   time.Duration
	note                 string
}

var (
	tableMu sync.Mutex
	table   []row
)

func addRow(r row) {
	tableMu.Lock()
	defer tableMu.Unlock()
	table = append(table, r)
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(100 * time.Microsecond).String()
}

// printTable prints the results and, when FAULTS_TABLE names a file, writes them there as Markdown.
func printTable() {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	slices.SortFunc(table, func(a, b row) int { return strings.Compare(a.scenario, b.scenario) })
	var md strings.Builder
	md.WriteString("| scenario | accepted | stored | duplicated | lost | dropped | failed | peak heap (MiB) | p99 GORM create / HTTP request before | p99 during fault | recovery | duration | note |\n")
	md.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range table {
		fmt.Fprintf(&md, "| %s | %d | %d | %d | %d | %d | %d | %.1f | %s | %s | %s | %s | %s |\n",
			r.scenario, r.accepted, r.stored, r.duplicated, r.lost, r.dropped, r.failed,
			float64(r.peakHeap)/(1<<20), fmtDur(r.p99Before), fmtDur(r.p99During), fmtDur(r.recovery),
			r.duration.Round(100*time.Millisecond), r.note)
	}
	fmt.Print(md.String())
	if path := os.Getenv("FAULTS_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(md.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "faults: writing %s: %v\n", path, err)
		}
	}
}
