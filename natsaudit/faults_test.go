package natsaudit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

// TestNATSDown stops the NATS server under a writer with a spool: the sink reports itself
// unavailable, the records stay in the spool (also across a restart of the writer), and once the
// server is back they reach the stream and the database, each once.
func TestNATSDown(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, "solo", freePort(t))
	nc := connect(t, srv.url())
	names := newNames(t, nc)
	if _, err := natsaudit.EnsureStream(ctx, nc, names.streamOptions()); err != nil {
		t.Fatal(err)
	}
	sink, err := natsaudit.NewSink(nc, names.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	wopts := core.WriterOptions{Spool: core.SpoolOptions{Dir: spool}, FlushInterval: 10 * time.Millisecond,
		RecheckInterval: 100 * time.Millisecond, Logger: quietLogger()}
	w, err := core.OpenWriter(sink, wopts)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	enqueue := func(w *core.Writer, n int) {
		for i := range n {
			r := newRecord(len(ids) + i)
			if err := w.Enqueue(r); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
	}
	enqueue(w, 300)
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.Flush(fctx); err != nil {
		t.Fatal(err)
	}

	srv.kill()
	enqueue(w, 700)
	deadline := time.Now().Add(10 * time.Second)
	for w.Health().OK() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h := w.Health(); h.OK() {
		t.Fatalf("the writer reports %+v with NATS down", h)
	}
	if err := w.Flush(fctx); !errors.Is(err, core.ErrAuditUnavailable) {
		t.Fatalf("Flush with NATS down: %v, want ErrAuditUnavailable", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	err = w.Close(cctx)
	ccancel()
	if err == nil {
		t.Fatal("Close with NATS down succeeded")
	}
	if st := w.Stats(); st.Kept != 700 || st.Dropped != 0 {
		t.Fatalf("writer stats after Close with NATS down: %+v, want 700 kept", st)
	}

	srv.start()
	deadline = time.Now().Add(10 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w2, err := core.OpenWriter(sink, wopts)
	if err != nil {
		t.Fatal(err)
	}
	enqueue(w2, 200)
	cctx, ccancel = context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if err := w2.Close(cctx); err != nil {
		t.Fatalf("Close once NATS is back: %v", err)
	}
	// The spool may replay records the stream already had (their acknowledgement in the spool
	// was not saved when Close gave up): the stream drops them as duplicates.
	st := w2.Stats()
	if st.Replayed < 700 || st.Written != st.Replayed+200 || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("writer stats once NATS is back: %+v, want at least 700 replayed and all written", st)
	}
	if ss := sink.Stats(); ss.Published != uint64(len(ids)) || ss.Duplicates != st.Replayed-700 {
		t.Fatalf("sink stats %+v, want %d published and %d duplicates", ss, len(ids), st.Replayed-700)
	}

	db := pgtest.New(t)
	startIngest(t, nc, names, db, nil)
	waitCount(t, db, len(ids), 30*time.Second)
	stored := storedIDs(t, db)
	for _, id := range ids {
		if !stored[id] {
			t.Fatalf("record %s lost", id)
		}
	}
	verifyChains(t, db)
}

// The child processes of the kill tests are the test binary itself, running TestChild with
// these variables set.
const (
	envChild   = "AUDITKIT_NATS_CHILD" // "publish", "drain" or "ingest"
	envURL     = "AUDITKIT_NATS_CHILD_URL"
	envStream  = "AUDITKIT_NATS_CHILD_STREAM"
	envPrefix  = "AUDITKIT_NATS_CHILD_PREFIX"
	envDurable = "AUDITKIT_NATS_CHILD_DURABLE"
	envSpool   = "AUDITKIT_NATS_CHILD_SPOOL"
	envDB      = "AUDITKIT_NATS_CHILD_DB"
	envSchema  = "AUDITKIT_NATS_CHILD_SCHEMA"
	childRate  = 3000 // records per second a publishing child aims at
)

// TestChild is a child process of the kill tests; run on its own it has nothing to do.
func TestChild(t *testing.T) {
	mode := os.Getenv(envChild)
	if mode == "" {
		return // not a child: the kill tests start this test with the variables set
	}
	say := func(format string, args ...any) {
		_, _ = os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	nc, err := nats.Connect(os.Getenv(envURL), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	n := names{stream: os.Getenv(envStream), prefix: os.Getenv(envPrefix), durable: os.Getenv(envDurable)}
	ctx := context.Background()
	if mode == "ingest" {
		db, err := pgxpool.New(ctx, os.Getenv(envDB))
		if err != nil {
			t.Fatal(err)
		}
		opts := n.ingestOptions(nc, core.NewPostgresSink(db, core.PostgresSinkOptions{Schema: os.Getenv(envSchema)}))
		opts.BatchSize, opts.AckWait = 200, 2*time.Second
		in, err := natsaudit.NewIngester(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		say("ready")
		_ = in.Run(ctx) // until killed
		return
	}
	sink, err := natsaudit.NewSink(nc, n.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	w, err := core.OpenWriter(sink, core.WriterOptions{Spool: core.SpoolOptions{Dir: os.Getenv(envSpool)},
		FlushInterval: 10 * time.Millisecond, RecheckInterval: 100 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if mode == "drain" {
		say("ready")
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := w.Close(cctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		st := w.Stats()
		say("stats replayed=%d written=%d dropped=%d failed=%d", st.Replayed, st.Written, st.Dropped, st.Failed)
		return
	}
	say("ready")
	tick := time.NewTicker(time.Second / childRate)
	for i := 0; ; i++ {
		<-tick.C
		r := newRecord(i)
		if err := w.Enqueue(r); err != nil {
			say("error %v", err)
			continue
		}
		say("rec %s", r.ID)
	}
}

// child is one run of a child process.
type child struct {
	cmd    *exec.Cmd
	ready  chan struct{}
	loaded chan struct{} // closed at the first record reported
	done   chan struct{}
	stderr strings.Builder

	mu    sync.Mutex
	recs  []uuid.UUID
	stats string
	errs  []string
}

func startChild(t *testing.T, mode string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.count=1", "-test.timeout=120s")
	cmd.Env = append(append(os.Environ(), envChild+"="+mode), env...)
	c := &child{cmd: cmd, ready: make(chan struct{}), loaded: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{b: &c.stderr, mu: &c.mu}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-c.done
			_ = cmd.Wait()
		}
	})
	go c.read(out)
	select {
	case <-c.ready:
	case <-c.done:
		_ = cmd.Wait()
		t.Fatalf("the %s child ended before it was ready: %v\n%s", mode, cmd.ProcessState, c.stderrText())
	case <-time.After(30 * time.Second):
		t.Fatalf("the %s child did not start within 30s\n%s", mode, c.stderrText())
	}
	return c
}

// read collects the child's complete lines; a line cut by a kill is ignored.
func (c *child) read(out io.Reader) {
	defer close(c.done)
	br := bufio.NewReader(out)
	readyOnce := sync.OnceFunc(func() { close(c.ready) })
	loadedOnce := sync.OnceFunc(func() { close(c.loaded) })
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		c.mu.Lock()
		switch {
		case line == "ready":
			readyOnce()
		case strings.HasPrefix(line, "rec "):
			if id, err := uuid.Parse(strings.TrimPrefix(line, "rec ")); err == nil {
				c.recs = append(c.recs, id)
				loadedOnce()
			}
		case strings.HasPrefix(line, "stats "):
			c.stats = line
		case strings.HasPrefix(line, "error "):
			c.errs = append(c.errs, line)
		}
		c.mu.Unlock()
	}
}

func (c *child) stderrText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// kill ends the child with SIGKILL and checks that the signal ended it.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	_ = c.cmd.Wait()
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed but ended: %v\n%s", c.cmd.ProcessState, c.stderrText())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestKillPublisher kills a process publishing through a Writer with a spool with SIGKILL
// 200-800ms after its first accepted record, 6 times, restarting it on the same spool; a last run
// drains the spool. An Ingester stores the stream meanwhile. Every record a child reported as
// accepted must then be stored exactly once.
func TestKillPublisher(t *testing.T) {
	const kills = 6
	ctx := context.Background()
	nc := connect(t, natsURL())
	n := newNames(t, nc)
	if _, err := natsaudit.EnsureStream(ctx, nc, n.streamOptions()); err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	in := startIngest(t, nc, n, db, nil)
	spool := t.TempDir()
	env := []string{envURL + "=" + natsURL(), envStream + "=" + n.stream, envPrefix + "=" + n.prefix, envSpool + "=" + spool}
	accepted := map[uuid.UUID]bool{}
	for round := range kills {
		c := startChild(t, "publish", env...)
		// The kill comes 200-800ms into the load, which starts with the first record reported.
		select {
		case <-c.loaded:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: the child reported no record within 20s\n%s", round, c.stderrText())
		}
		time.Sleep(time.Duration(200+rand.IntN(601)) * time.Millisecond)
		c.kill(t)
		c.mu.Lock()
		for _, id := range c.recs {
			accepted[id] = true
		}
		if len(c.errs) > 0 {
			t.Errorf("the child reported %d errors, the first: %s", len(c.errs), c.errs[0])
		}
		c.mu.Unlock()
	}
	c := startChild(t, "drain", env...)
	<-c.done
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("drain: %v\n%s", err, c.stderrText())
	}
	t.Logf("%d records accepted by %d killed publishers; drain: %s", len(accepted), kills, c.stats)
	waitBacklog(t, in, 60*time.Second)
	stored := storedIDs(t, db)
	lost := 0
	for id := range accepted {
		if !stored[id] {
			lost++
		}
	}
	t.Logf("stored %d records (%d accepted and reported, %d accepted as the kill cut the report); %d lost; ingest %+v",
		len(stored), len(accepted), len(stored)-len(accepted)+lost, lost, in.Stats())
	if lost > 0 {
		t.Fatalf("%d accepted records lost", lost)
	}
	verifyChains(t, db)
}

// TestKillIngest kills ingest processes with SIGKILL while they store batches, 8 times, while a
// publisher keeps publishing; a last Ingester in the test process finishes the stream. Every
// record published must be stored once, the chains intact.
func TestKillIngest(t *testing.T) {
	const kills = 8
	ctx := context.Background()
	nc := connect(t, natsURL())
	n := newNames(t, nc)
	if _, err := natsaudit.EnsureStream(ctx, nc, n.streamOptions()); err != nil {
		t.Fatal(err)
	}
	sink, err := natsaudit.NewSink(nc, n.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(sink, core.WriterOptions{FlushInterval: 10 * time.Millisecond, Logger: testLogger()})
	var (
		mu  sync.Mutex
		ids []uuid.UUID
	)
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		tick := time.NewTicker(time.Second / childRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			r := newRecord(i)
			if err := w.Enqueue(r); err != nil {
				continue
			}
			mu.Lock()
			ids = append(ids, r.ID)
			mu.Unlock()
		}
	}()
	db := pgtest.New(t)
	env := []string{envURL + "=" + natsURL(), envStream + "=" + n.stream, envPrefix + "=" + n.prefix, envDurable + "=" + n.durable,
		envDB + "=" + db.URL, envSchema + "=" + db.Schema}
	killedWhileStoring := 0
	for range kills {
		before := db.Count(t)
		c := startChild(t, "ingest", env...)
		// The kill comes while the child stores: after its first commit, 20-200ms later.
		deadline := time.Now().Add(10 * time.Second)
		for db.Count(t) == before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(20+rand.IntN(181)) * time.Millisecond)
		c.kill(t)
		if db.Count(t) > before {
			killedWhileStoring++
		}
	}
	close(stop)
	<-loaded
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		t.Fatal(err)
	}
	in := startIngest(t, nc, n, db, func(o *natsaudit.IngestOptions) { o.AckWait = 2 * time.Second })
	waitBacklog(t, in, 60*time.Second)
	stored := storedIDs(t, db)
	lost := 0
	for _, id := range ids {
		if !stored[id] {
			lost++
		}
	}
	t.Logf("%d records published, %d stored, %d lost; %d of %d ingest processes killed after storing; last ingest %+v",
		len(ids), len(stored), lost, killedWhileStoring, kills, in.Stats())
	if lost > 0 || len(stored) != len(ids) {
		t.Fatalf("%d records lost, %d stored of %d", lost, len(stored), len(ids))
	}
	if in.Stats().Redelivered == 0 {
		t.Error("no message was delivered again: no kill came between a delivery and its acknowledgement")
	}
	verifyChains(t, db)
}

// waitBacklog waits until every message of in's stream is stored and acknowledged.
func waitBacklog(t *testing.T, in *natsaudit.Ingester, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := in.Backlog(context.Background())
		if err == nil && b.Empty() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog after %s: %+v, %v", timeout, b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
