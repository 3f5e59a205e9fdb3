package natsaudit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
	"github.com/auditkit/auditkit/natsaudit"
)

// envNATS overrides the NATS server the tests use.
const envNATS = "AUDITKIT_TEST_NATS_URL"

// natsServerBin is the nats-server the tests start for a cluster or for a server they stop.
const natsServerBin = "/usr/sbin/nats-server"

func natsURL() string {
	if u := os.Getenv(envNATS); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// connect returns a connection to the test NATS server, closed when tb ends. It fails the test
// when no server answers.
func connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(false))
	if err != nil {
		tb.Fatalf("NATS at %s: %v (start it with: start-stop-daemon --start --oknodo --background --exec %s -- "+
			"-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server, or point %s at a NATS server with JetStream)", url, err, natsServerBin, envNATS)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// names are a test's own stream, subject prefix and durable consumer.
type names struct {
	stream, prefix, durable string
}

// newNames returns unique names and deletes the stream when tb ends.
func newNames(tb testing.TB, nc *nats.Conn) names {
	tb.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	n := names{stream: "AUDITTEST_" + suffix, prefix: "audittest." + suffix, durable: "ingest-" + suffix}
	tb.Cleanup(func() {
		js, err := jetstream.New(nc)
		if err != nil || nc.IsClosed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, n.stream)
	})
	return n
}

// pipe is a test's NATS connection, its own stream (deleted when the test ends) and a Sink
// publishing to it.
type pipe struct {
	nc     *nats.Conn
	names  names
	stream jetstream.Stream
	sink   *natsaudit.Sink
}

// newPipe connects to the test NATS server and creates the test's own stream and a Sink on it.
func newPipe(tb testing.TB) pipe {
	tb.Helper()
	nc := connect(tb, natsURL())
	p := pipe{nc: nc, names: newNames(tb, nc)}
	var err error
	if p.stream, err = natsaudit.EnsureStream(context.Background(), nc, p.names.streamOptions()); err != nil {
		tb.Fatal(err)
	}
	if p.sink, err = natsaudit.NewSink(nc, p.names.sinkOptions()); err != nil {
		tb.Fatal(err)
	}
	return p
}

// publish writes recs through the pipe's Sink.
func (p pipe) publish(tb testing.TB, recs []*core.Record) {
	tb.Helper()
	if err := p.sink.Write(context.Background(), recs); err != nil {
		tb.Fatal(err)
	}
}

// nowRecords returns records 0 to n-1 of a test load, occurring now.
func nowRecords(n int) []*core.Record {
	recs := make([]*core.Record, n)
	for i := range recs {
		recs[i] = newRecord(i)
		recs[i].OccurredAt = time.Now()
	}
	return recs
}

func (n names) streamOptions() natsaudit.StreamOptions {
	return natsaudit.StreamOptions{Name: n.stream, SubjectPrefix: n.prefix}
}

func (n names) sinkOptions() natsaudit.SinkOptions {
	return natsaudit.SinkOptions{Stream: n.stream, SubjectPrefix: n.prefix}
}

func (n names) ingestOptions(nc *nats.Conn, sink core.Sink) natsaudit.IngestOptions {
	return natsaudit.IngestOptions{Conn: nc, Sink: sink, Stream: n.stream, Durable: n.durable, SubjectPrefix: n.prefix,
		MaxWait: 50 * time.Millisecond, ProgressInterval: -1, Logger: testLogger()}
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tenants are the tenant ids the tests spread records over: plain ones, ones that need escaping,
// and none.
var tenants = []string{"acme", "globex", "", "tenant.with.dots", "ünï cødé*>", "_"}

// newRecord returns record i of a test load.
func newRecord(i int) *core.Record {
	return &core.Record{
		ID:           core.NewID(),
		Kind:         core.KindCustom,
		Action:       "test.event",
		Severity:     core.SeverityInfo,
		Tenant:       core.Tenant{ID: tenants[i%len(tenants)]},
		Actor:        core.Actor{ID: "user-" + strconv.Itoa(i%7), Type: core.ActorTenantUser, Email: "u@example.com"},
		ResourceType: "doc",
		ResourceID:   strconv.Itoa(i),
		Metadata:     map[string]any{"i": i, "note": "x\u00e9\"y", "password": "hunter2"},
	}
}

// startIngest runs an Ingester on n until tb ends, storing into db (chained).
func startIngest(tb testing.TB, nc *nats.Conn, n names, db *pgtest.DB, tweak func(*natsaudit.IngestOptions)) *natsaudit.Ingester {
	tb.Helper()
	opts := n.ingestOptions(nc, core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}))
	if tweak != nil {
		tweak(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in, err := natsaudit.NewIngester(ctx, opts)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Ingester.Run: %v", err)
		}
	})
	return in
}

// storedIDs returns the ids in db's audit_logs, failing on a duplicate.
func storedIDs(tb testing.TB, db *pgtest.DB) map[uuid.UUID]bool {
	tb.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id FROM audit_logs`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	ids := make(map[uuid.UUID]bool)
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			tb.Fatal(err)
		}
		if ids[id] {
			tb.Errorf("record %s is stored twice", id)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return ids
}

// waitCount waits until db holds want records, failing after timeout.
func waitCount(tb testing.TB, db *pgtest.DB, want int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		if got = db.Count(tb); got >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != want {
		tb.Fatalf("audit_logs holds %d records after %s, want %d", got, timeout, want)
	}
}

// verifyChains checks every chain of db.
func verifyChains(tb testing.TB, db *pgtest.DB) {
	tb.Helper()
	ctx := context.Background()
	keys, err := core.ChainTenants(ctx, db.Pool, db.Schema)
	if err != nil {
		tb.Fatal(err)
	}
	if len(keys) == 0 {
		tb.Fatal("no chain found")
	}
	for _, k := range keys {
		rep, err := core.Verify(ctx, db.Pool, k, core.VerifyOptions{Schema: db.Schema})
		if err != nil {
			tb.Fatal(err)
		}
		if !rep.OK {
			tb.Errorf("chain %q: %+v", k, rep.Problems)
		}
	}
}

// freePort returns a loopback TCP port nobody listens on now, which no connection takes before a
// server binds it (see testnet.FreePort).
func freePort(tb testing.TB) int {
	tb.Helper()
	return testnet.FreePort(tb)
}

// server is a nats-server child process.
type server struct {
	tb   testing.TB
	name string
	args []string
	port int
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// startServer starts nats-server with JetStream on a free loopback port, storing in its own
// directory, and stops it when tb ends. extra are more arguments (cluster settings).
func startServer(tb testing.TB, name string, port int, extra ...string) *server {
	tb.Helper()
	s, err := tryStartServer(tb, name, port, extra...)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// tryStartServer is startServer, returning the error that stopped the server from starting.
func tryStartServer(tb testing.TB, name string, port int, extra ...string) (*server, error) {
	tb.Helper()
	if _, err := os.Stat(natsServerBin); err != nil {
		tb.Fatalf("the tests need %s: %v", natsServerBin, err)
	}
	dir := tb.TempDir()
	s := &server{tb: tb, name: name, port: port, dir: dir,
		args: append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "js"), "-n", name}, extra...)}
	tb.Cleanup(s.kill)
	return s, s.tryStart()
}

func (s *server) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// start runs the server and waits until it accepts connections.
func (s *server) start() {
	s.tb.Helper()
	if err := s.tryStart(); err != nil {
		s.tb.Fatal(err)
	}
}

// tryStart is start, returning why the server did not come up: it did not start, it stopped
// with a fatal error (a port it was given was taken), or it did not accept connections in time.
func (s *server) tryStart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(natsServerBin, s.args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", natsServerBin, err)
	}
	s.cmd, s.log = cmd, log
	// A server of a cluster accepts clients before it binds its route port (and stops when that
	// is taken): it is up once it listens for routes too.
	clustered := slices.Contains(s.args, "--cluster")
	deadline := time.Now().Add(10 * time.Second)
	for {
		text := s.logText()
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			if !clustered || strings.Contains(text, "Listening for route connections") {
				return nil
			}
			err = errors.New("not listening for routes yet")
		}
		if strings.Contains(text, "[FTL]") || time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s does not accept connections on port %d: %v\n%s", s.name, s.port, err, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server with SIGKILL and waits for it.
func (s *server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.log.Close()
	s.cmd = nil
}

func (s *server) logText() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

// waitWritten waits until the ingesters have counted want records written. An Ingester counts a
// batch after its commit and its acknowledgements, so the rows and an empty backlog are seen
// before the count: a test that judges the counts waits for them too.
func waitWritten(tb testing.TB, want uint64, timeout time.Duration, ins ...*natsaudit.Ingester) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got uint64
		for _, in := range ins {
			got += in.Stats().Written
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the ingesters counted %d records written after %s, want %d", got, timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
