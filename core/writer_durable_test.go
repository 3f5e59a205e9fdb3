package core_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
	"github.com/google/uuid"
)

// gateSink passes batches to a real sink while open; while shut, Write waits until the gate opens
// or its context ends, like a database that does not answer.
type gateSink struct {
	inner core.Sink
	mu    sync.Mutex
	open  chan struct{}
	// loseAck, when set, stores the batch and then reports a failure, like a connection lost
	// after the commit.
	loseAck bool
	waiting atomic.Int64 // records of the writes waiting for the gate
	// stored holds, by the id of its first record, the size of each batch stored while loseAck
	// was set: a batch retried after its lost acknowledgement counts once.
	stored map[uuid.UUID]int
}

func newGateSink(inner core.Sink) *gateSink {
	return &gateSink{inner: inner, open: make(chan struct{})}
}

func (g *gateSink) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gateSink) Write(ctx context.Context, recs []*core.Record) error {
	g.mu.Lock()
	open, loseAck := g.open, g.loseAck
	g.mu.Unlock()
	g.waiting.Add(int64(len(recs)))
	select {
	case <-open:
		g.waiting.Add(-int64(len(recs)))
	case <-ctx.Done():
		g.waiting.Add(-int64(len(recs)))
		return ctx.Err()
	}
	err := g.inner.Write(ctx, recs)
	if err == nil && loseAck {
		g.mu.Lock()
		if g.stored == nil {
			g.stored = map[uuid.UUID]int{}
		}
		g.stored[recs[0].ID] = len(recs)
		g.mu.Unlock()
		return errors.New("connection lost after commit")
	}
	return err
}

// storedBatches returns how many distinct batches were stored with their acknowledgement lost,
// and how many records they hold.
func (g *gateSink) storedBatches() (batches, records int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.stored {
		records += n
	}
	return len(g.stored), records
}

// holdsNextBatch reports whether w, a writer with one worker whose batch waits at g, also holds
// the batch after it (waiting for the worker): it then takes no more records out of its queue
// until the gate opens.
func (g *gateSink) holdsNextBatch(w *core.Writer) bool {
	atGate := g.waiting.Load()
	h := w.Health()
	// QueueDepth counts the queue (at most QueueSize) and the batches taken out of it.
	return atGate > 0 && int64(h.QueueDepth-h.QueueSize) > atGate
}

func countIDs(t *testing.T, db *pgtest.DB) (rows, distinct int) {
	t.Helper()
	err := db.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT id) FROM audit_logs`).Scan(&rows, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

func spoolOptions(dir string) core.WriterOptions {
	return core.WriterOptions{
		BatchSize:     50,
		QueueSize:     100,
		FlushInterval: 20 * time.Millisecond,
		MinBackoff:    10 * time.Millisecond,
		MaxBackoff:    50 * time.Millisecond,
		Spool:         core.SpoolOptions{Dir: dir, SegmentBytes: 64 << 10},
	}
}

// TestSpoolKeepsWhatCloseCouldNotWrite: records beyond the queue go to the spool only; when Close
// gives up they stay there (Kept, not Dropped), and the next Writer on the directory writes each
// of them once.
func TestSpoolKeepsWhatCloseCouldNotWrite(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	log, _ := newLogger()
	sink := newGateSink(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}))
	opts := spoolOptions(dir)
	opts.Logger = log
	w, err := core.OpenWriter(sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1200 // twelve times the queue
	for i := range n {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatalf("record %d refused with a spool: %v", i, err)
		}
	}
	st := w.Stats()
	if st.Enqueued != n || st.Spooled != n || st.Dropped != 0 || st.QueueDepth != n {
		t.Fatalf("stats after enqueue: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = w.Close(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "stay in the spool") {
		t.Fatalf("Close = %v, want an error saying the records stay in the spool", err)
	}
	if st := w.Stats(); st.Kept != n || st.Dropped != 0 {
		t.Fatalf("stats after close: Kept %d Dropped %d, want %d and 0", st.Kept, st.Dropped, n)
	}

	w2 := openAgain(t, w, core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), opts)
	flush(t, w2)
	if rows, distinct := countIDs(t, db); rows != n || distinct != n {
		t.Fatalf("stored %d rows (%d distinct), want %d", rows, distinct, n)
	}
	if st := w2.Stats(); st.Replayed != n || st.Written != n {
		t.Fatalf("second writer: Replayed %d Written %d, want %d", st.Replayed, st.Written, n)
	}
	closeWriter(t, w2)
	if left := spoolFrames(t, dir); left != 0 {
		t.Fatalf("%d bytes of frames left in the spool after everything was stored", left)
	}
}

// openAgain opens a Writer on dir once the previous Writer's goroutine has ended (its Close gave
// up; the goroutine ends once the abandoned write returns) and released the directory.
func openAgain(t *testing.T, prev *core.Writer, sink core.Sink, opts core.WriterOptions) *core.Writer {
	t.Helper()
	waitGone(t, prev)
	w, err := core.OpenWriter(sink, opts)
	if err != nil {
		t.Fatalf("reopening the spool: %v", err)
	}
	return w
}

// waitGone waits for the goroutine of a Writer whose Close gave up: a later Close waits for it.
func waitGone(t *testing.T, w *core.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("waiting for the writer's goroutine: %v", err)
	}
}

func flush(t *testing.T, w *core.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// spoolFrames returns the bytes of the spool's segment files beyond their headers.
func spoolFrames(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += max(0, fi.Size()-64)
	}
	return n
}

// TestSpoolReplayStoresNothingTwice: records stored whose acknowledgement was lost stay in the
// spool; replaying them at the next start stores nothing twice.
func TestSpoolReplayStoresNothingTwice(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	log, _ := newLogger()
	sink := newGateSink(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}))
	sink.loseAck = true
	sink.Open()
	opts := spoolOptions(dir)
	opts.Logger = log
	w, err := core.OpenWriter(sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Each worker's batch is stored, and retried for ever because its acknowledgement is lost.
	// A batch holds up to 50 records: fewer when the flush interval passed while it filled.
	eventually(t, 10*time.Second, "two batches stored", func() bool {
		batches, records := sink.storedBatches()
		r, _ := countIDs(t, db)
		return batches == 2 && r == records
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_ = w.Close(ctx) // gives up: every write "failed"
	cancel()

	w2 := openAgain(t, w, core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), opts)
	flush(t, w2)
	if st := w2.Stats(); st.Replayed != n {
		t.Fatalf("replayed %d, want %d", st.Replayed, n)
	}
	closeWriter(t, w2)
	if rows, distinct := countIDs(t, db); rows != n || distinct != n {
		t.Fatalf("stored %d rows (%d distinct), want %d once each", rows, distinct, n)
	}
}

// TestSpoolOverflowKeepsOrder: with one worker, records reach the sink in the order they were
// accepted, across the memory queue and the spool.
func TestSpoolOverflowKeepsOrder(t *testing.T) {
	sink := &orderSink{}
	gate := newGateSink(sink)
	log, _ := newLogger()
	opts := spoolOptions(t.TempDir())
	opts.Workers = 1
	opts.Logger = log
	w, err := core.OpenWriter(gate, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	gate.Open()
	for i := n; i < 2*n; i++ { // while the backlog is read back
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	var got []string
	for _, b := range sink.batches {
		got = append(got, b...)
	}
	if len(got) != 2*n {
		t.Fatalf("sink got %d records, want %d", len(got), 2*n)

	}
	for i, id := range got {
		if want := sampleRecord(i).ResourceID; id != want {
			t.Fatalf("record %d is %s, want %s", i, id, want)
		}
	}
}

// TestSpoolTornTailIsReportedAndTheRestWritten: a crash in the middle of an append leaves a
// partial frame; the next start reports it and writes every complete record.
func TestSpoolTornTailIsReportedAndTheRestWritten(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	log, logs := newLogger()
	opts := spoolOptions(dir)
	opts.Logger = log
	w, err := core.OpenWriter(newGateSink(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})), opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_ = w.Close(ctx)
	cancel()
	waitGone(t, w)

	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(files)
	var last string
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > 64 {
			last = f
		}
	}
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-7); err != nil { // the last frame loses its end
		t.Fatal(err)
	}
	w3, err := core.OpenWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), opts)
	if err != nil {
		t.Fatal(err)
	}
	flush(t, w3)
	st := w3.Stats()
	closeWriter(t, w3)
	if st.SpoolCorrupt == 0 {
		t.Fatalf("the torn tail was not counted: %+v\nlogs:\n%s", st, logs)
	}
	if rows, distinct := countIDs(t, db); rows != n-1 || distinct != n-1 {
		t.Fatalf("stored %d rows (%d distinct), want the %d complete records", rows, distinct, n-1)
	}
}

// TestUnavailableSinkIsReportedNotRetriedBlindly: with audit_logs missing, the writer reports
// itself failing at once, Flush and Close stop waiting, new work under FailClosed is refused, and
// once the table exists the records kept are written.
func TestUnavailableSinkIsReportedNotRetriedBlindly(t *testing.T) {
	db := pgtest.NewEmpty(t)
	log, logs := newLogger()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{
		BatchSize:       10,
		FlushInterval:   10 * time.Millisecond,
		RecheckInterval: 200 * time.Millisecond,
		FailurePolicy:   core.FailClosed,
		Logger:          log,
	})
	for i := range 25 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the writer reports itself failing", func() bool { return w.Health().State == core.Failing })
	h := w.Health()
	if !strings.Contains(h.Reason, "42P01") || h.Since.IsZero() || h.OK() {
		t.Fatalf("health = %+v, want failing with the SQLSTATE", h)
	}
	start := time.Now()
	err := w.Flush(context.Background())
	if !errors.Is(err, core.ErrAuditUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("Flush = %v after %s, want ErrAuditUnavailable at once", err, time.Since(start))
	}
	if _, err := core.Admit(context.Background(), w, 1); !errors.Is(err, core.ErrAuditUnavailable) {
		t.Fatalf("Admit under FailClosed = %v, want ErrAuditUnavailable", err)
	}
	if strings.Count(logs.String(), "refuses the audit writer") != 1 {
		t.Fatalf("the failure should be reported once:\n%s", logs)
	}
	// An operator creates the table: the kept records are written within RecheckInterval.
	if err := schema.CreateTables(context.Background(), db.URL, schema.WithSchema(db.Schema)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the kept records written", func() bool { return w.Stats().Written == 25 })
	if h := w.Health(); h.State == core.Failing {
		t.Fatalf("still failing after recovery: %+v", h)
	}
	closeWriter(t, w)
}

// TestCloseGivesUpWhileTheSinkIsUnavailable: Close with a context that never ends returns once the
// sink is known to be unavailable, counting what it could not write.
func TestCloseGivesUpWhileTheSinkIsUnavailable(t *testing.T) {
	db := pgtest.NewEmpty(t)
	log, _ := newLogger()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{
		FlushInterval: 10 * time.Millisecond,
		Logger:        log,
	})
	for i := range 5 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- w.Close(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, core.ErrAuditUnavailable) || !strings.Contains(err.Error(), "5 audit records") {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close(context.Background()) hangs while the table is missing")
	}
	if st := w.Stats(); st.Dropped != 5 {
		t.Fatalf("Dropped = %d, want 5", st.Dropped)
	}
}

// TestReservations: reserved room is kept aside from the queue, used by EnqueueReserved even when
// the queue is full, and given back by Release; Admit reserves only under FailClosed.
func TestReservations(t *testing.T) {
	gate := newGateSink(&orderSink{})
	log, _ := newLogger()
	w := core.NewWriter(gate, core.WriterOptions{BatchSize: 10, QueueSize: 30, Workers: 1, Logger: log})
	defer func() { gate.Open(); closeWriter(t, w) }()
	// One batch goes to the (blocked) worker and one to the collecting goroutine, which then waits
	// for the worker: from then on the queue only fills.
	for i := range 20 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "both batches taken", func() bool {
		r, err := w.Reserve(30)
		r.Release()
		return err == nil
	})
	res, err := w.Reserve(4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 26 {
		if err := w.Enqueue(sampleRecord(100 + i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := w.Enqueue(sampleRecord(200)); !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("Enqueue beyond the unreserved room = %v, want ErrQueueFull", err)
	}
	if _, err := w.Reserve(1); !errors.Is(err, core.ErrAuditUnavailable) || !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("Reserve on a full queue = %v", err)
	}
	for i := range 3 {
		if err := w.EnqueueReserved(res, sampleRecord(300+i)); err != nil {
			t.Fatalf("reserved record %d: %v", i, err)
		}
	}
	if got := res.Remaining(); got != 1 {
		t.Fatalf("Remaining = %d, want 1", got)
	}
	res.Release()
	res.Release() // twice is harmless
	if err := w.EnqueueReserved(res, sampleRecord(400)); err != nil {
		t.Fatalf("the released slot should be free for anyone: %v", err)
	}
	if err := w.EnqueueReserved(res, sampleRecord(401)); !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("Enqueue with an empty reservation on a full queue = %v", err)
	}

	// Admit: nothing under FailOpen, room under FailClosed (by context).
	if r, err := core.Admit(context.Background(), w, 3); r != nil || err != nil {
		t.Fatalf("Admit under FailOpen = %v, %v", r, err)
	}
	ctx := core.WithFailurePolicy(context.Background(), core.FailClosed)
	if _, err := core.Admit(ctx, w, 1); !errors.Is(err, core.ErrAuditUnavailable) {
		t.Fatalf("Admit under FailClosed with a full queue = %v", err)
	}
	if p := w.Policy(ctx); p != core.FailClosed {
		t.Fatalf("Policy = %v", p)
	}
}

// TestCloseWithAnEndedContextSaysWhy: the usual mistake (the signal's context handed to Close) is
// named in the log.
func TestCloseWithAnEndedContextSaysWhy(t *testing.T) {
	gate := newGateSink(&orderSink{})
	log, logs := newLogger()
	w := core.NewWriter(gate, core.WriterOptions{Logger: log})
	if err := w.Enqueue(sampleRecord(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Close(ctx); err == nil {
		t.Fatal("Close with an ended context and a record pending returned nil")
	}
	if !strings.Contains(logs.String(), "fresh context") {
		t.Fatalf("the log does not say what to do:\n%s", logs)
	}
	gate.Open()
}

// TestParseFailurePolicyAndSpoolSync covers the text forms.
func TestParseFailurePolicyAndSpoolSync(t *testing.T) {
	for in, want := range map[string]core.FailurePolicy{"open": core.FailOpen, " Closed ": core.FailClosed} {
		if got, err := core.ParseFailurePolicy(in); err != nil || got != want || got.String() != strings.ToLower(strings.TrimSpace(in)) {
			t.Errorf("ParseFailurePolicy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := core.ParseFailurePolicy("half"); err == nil {
		t.Error("ParseFailurePolicy(half) accepted")
	}
	for in, want := range map[string]core.SpoolSync{"": core.SpoolSyncBatch, "batch": core.SpoolSyncBatch, "INTERVAL": core.SpoolSyncInterval, "never": core.SpoolSyncNever} {
		if got, err := core.ParseSpoolSync(in); err != nil || got != want {
			t.Errorf("ParseSpoolSync(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := core.ParseSpoolSync("always"); err == nil {
		t.Error("ParseSpoolSync(always) accepted")
	}
}

// TestLogUnderEachPolicy: Log reports a record it cannot place as ErrAuditUnavailable under
// FailClosed, and as the refusal itself under FailOpen.
func TestLogUnderEachPolicy(t *testing.T) {
	gate := newGateSink(&orderSink{})
	log, _ := newLogger()
	w := core.NewWriter(gate, core.WriterOptions{BatchSize: 2, QueueSize: 2, Workers: 1, Logger: log})
	defer func() { gate.Open(); closeWriter(t, w) }()
	entry := core.Entry{Action: "invoice.sent", ResourceType: "invoices", ResourceID: "1"}
	// Fill the worker's batch, the batch waiting for the worker and the queue: once the writer
	// holds the batch after the worker's, it takes nothing more out of the queue, and a refusal
	// after that is for good.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		held := gate.holdsNextBatch(w)
		if _, err := core.Log(context.Background(), w, entry); err != nil {
			if !errors.Is(err, core.ErrQueueFull) {
				t.Fatalf("Log %d under FailOpen = %v, want ErrQueueFull", i, err)
			}
			if held {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue never filled: %+v", w.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	ctx := core.WithFailurePolicy(context.Background(), core.FailClosed)
	if _, err := core.Log(ctx, w, entry); !errors.Is(err, core.ErrAuditUnavailable) || !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("Log under FailClosed = %v, want ErrAuditUnavailable wrapping ErrQueueFull", err)
	}
}

// TestLateRecordsKeepTheirReservation: a record added to a request's collector after the request
// ended is enqueued in the room reserved for it, even when the queue filled since.
func TestLateRecordsKeepTheirReservation(t *testing.T) {
	gate := newGateSink(&orderSink{})
	log, _ := newLogger()
	w := core.NewWriter(gate, core.WriterOptions{BatchSize: 2, QueueSize: 2, Workers: 1, Logger: log})
	defer func() { gate.Open(); closeWriter(t, w) }()
	var res *core.Reservation
	eventually(t, 5*time.Second, "room for one record", func() bool {
		r, err := w.Reserve(1)
		res = r
		return err == nil
	})
	c := core.NewCollector()
	c.FinishReserved(func(r *core.Reservation, rec *core.Record) {
		if err := w.EnqueueReserved(r, rec); err != nil {
			t.Errorf("late record refused: %v", err)
		}
	})
	// Fill what is not reserved.
	for i := 0; ; i++ {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			break
		}
		if i > 100 {
			t.Fatal("the queue never filled")
		}
	}
	c.AddReserved(res, sampleRecord(1000))
	if got := res.Remaining(); got != 0 {
		t.Fatalf("Remaining after the late record = %d", got)
	}
}
