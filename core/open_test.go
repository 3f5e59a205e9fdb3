package core_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// TestOpenClosesPromptlyOnASilentPeer: with a server that accepts connections and never answers,
// Close gives up when its context ends, and the pool is closed in the background.
func TestOpenClosesPromptlyOnASilentPeer(t *testing.T) {
	addr := blackHole(t)
	log, _ := newLogger()
	w, err := core.Open(context.Background(), core.Config{
		DatabaseURL:    "postgres://postgres@" + addr + "/test?sslmode=disable",
		BatchSize:      5,
		FlushInterval:  time.Millisecond,
		ConnectTimeout: 200 * time.Millisecond,
		Logger:         log,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = w.Close(ctx)
	// The bounds in these tests leave a loaded machine room; what they guard against takes
	// AttemptTimeout (10s by default) or never ends.
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %s for a 300ms context", d)
	}
	if err == nil || !strings.Contains(err.Error(), "12 audit records were not written") {
		t.Fatalf("Close = %v, want an error counting the 12 unwritten records", err)
	}
	if s := w.Stats(); s.Dropped != 12 || s.Written != 0 {
		t.Fatalf("stats = %+v, want the 12 records counted as dropped", s)
	}
}

// TestOpenBlackHoleKeepsDeadlines: a server that accepts TCP connections and never answers holds
// nothing past its deadline. Open returns after ConnectTimeout with the schema check deferred, the
// first write attempt fails after ConnectTimeout (not after AttemptTimeout), and Flush and Close
// return when their contexts end.
func TestOpenBlackHoleKeepsDeadlines(t *testing.T) {
	addr := blackHole(t)
	log, logs := newLogger()
	start := time.Now()
	w, err := core.Open(context.Background(), core.Config{
		DatabaseURL:    "postgres://postgres@" + addr + "/test?sslmode=disable",
		FlushInterval:  time.Millisecond,
		ConnectTimeout: 200 * time.Millisecond,
		AttemptTimeout: 10 * time.Second,
		MaxBackoff:     100 * time.Millisecond,
		Logger:         log,
	})
	if err != nil {
		t.Fatalf("Open must not fail while the database does not answer: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open took %s with a 200ms ConnectTimeout", d)
	}
	if !strings.Contains(logs.String(), "schema check is deferred") {
		t.Errorf("no warning that the schema check was deferred: %s", logs)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_ = w.Close(ctx)
	}()

	start = time.Now()
	if err := w.Enqueue(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	for w.Stats().Retried == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no write attempt failed within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the first attempt failed after %s; with ConnectTimeout 200ms it must fail well before AttemptTimeout (10s)", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start = time.Now()
	err = w.Flush(ctx)
	if err == nil {
		t.Fatal("Flush succeeded against a server that never answers")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Flush took %s for a 3s context", d)
	}
	if s := w.Stats(); s.Retried < 5 {
		t.Errorf("only %d attempts in 3s with ConnectTimeout 200ms and MaxBackoff 100ms", s.Retried)
	}
}

// freezer forwards TCP connections to a PostgreSQL server until it is frozen; from then on it
// accepts and holds connections and passes no more bytes, like a network path that went silent
// after the connection was established.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.keep(c)
			if f.frozen.Load() {
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.keep(up)
			go f.pipe(up, c)
			go f.pipe(c, up)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.conns {
			c.Close()
		}
	})
	return f
}

func (f *freezer) keep(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = append(f.conns, c)
}

// pipe copies src to dst until frozen; then it reads and drops, so the sender sees no error.
// When src ends, dst is closed, as a TCP proxy passes on the end of a connection: a server that
// answers a cancel request by closing the connection must not leave the client waiting.
func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if f.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

// thaw forwards new connections again and closes the ones that went silent, as a recovered
// network path resets the connections it lost.
func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.frozen.Store(false)
}

// TestOpenFrozenConnectionEndsByAttemptTimeout: when the path to PostgreSQL goes silent after the
// connection was established, a write attempt ends by AttemptTimeout and is retried, and the
// records are written once the path answers again.
func TestOpenFrozenConnectionEndsByAttemptTimeout(t *testing.T) {
	db := pgtest.New(t)
	f := newFreezer(t, "127.0.0.1:5432")
	url := "postgres://postgres@" + f.addr() + "/test?sslmode=disable"
	log, _ := newLogger()
	w, err := core.Open(context.Background(), core.Config{
		DatabaseURL:    url,
		Schema:         db.Schema,
		FlushInterval:  time.Millisecond,
		ConnectTimeout: 300 * time.Millisecond,
		AttemptTimeout: 500 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
		Logger:         log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Enqueue(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("first write through the proxy: %v", err)
	}

	f.frozen.Store(true)
	start := time.Now()
	if err := w.Enqueue(sampleRecord(2)); err != nil {
		t.Fatal(err)
	}
	for w.Stats().Retried == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the write attempt into a frozen connection did not end within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("the attempt ended after %s; with AttemptTimeout 500ms it must end after about 500ms", d)
	}

	f.thaw()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush after the path recovered: %v", err)
	}
	if n := db.Count(t); n != 2 {
		t.Errorf("audit_logs holds %d rows, want 2", n)
	}
}

// TestOpenUnreachableDatabase: with nothing listening, Open returns the writer at once with a
// warning, and CheckSchema reports an error that is not ErrSchemaNotReady.
func TestOpenUnreachableDatabase(t *testing.T) {
	addr := testnet.ClosedAddr(t)
	log, logs := newLogger()
	cfg := core.Config{DatabaseURL: "postgres://postgres:hunter2@" + addr + "/test?sslmode=disable", Logger: log}
	start := time.Now()
	w, err := core.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open failed while the database is down: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open took %s against a closed port", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = w.Close(ctx)
	out := logs.String()
	if !strings.Contains(out, "schema check is deferred") || !strings.Contains(out, "127.0.0.1") {
		t.Errorf("no warning naming the database: %s", out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("the warning reveals the password: %s", out)
	}
	err = core.CheckSchema(context.Background(), cfg)
	if err == nil || errors.Is(err, core.ErrSchemaNotReady) {
		t.Errorf("CheckSchema = %v, want a connection error", err)
	}
}

// TestOpenPassesTheWriterSettings: the spool and the failure policy of the Config reach the Writer.
func TestOpenPassesTheWriterSettings(t *testing.T) {
	db := pgtest.New(t)
	w, err := core.Open(context.Background(), core.Config{
		DatabaseURL:   pgtest.URL(),
		Schema:        db.Schema,
		FlushInterval: time.Millisecond,
		Spool:         core.SpoolConfig{Dir: t.TempDir(), Sync: "never"},
		FailurePolicy: core.FailClosed,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := w.Policy(context.Background()); p != core.FailClosed {
		t.Errorf("Policy = %s, want closed", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Enqueue(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Spooled != 1 || s.Written != 1 {
		t.Errorf("stats = %+v, want the record spooled and written", s)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t); n != 1 {
		t.Errorf("audit_logs holds %d rows, want 1", n)
	}
}
