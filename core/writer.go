package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the Writer.
var (
	// ErrQueueFull is returned by Enqueue when the queue is at capacity. The record was not
	// accepted; the drop is counted in Stats.Dropped and reported through the logger.
	ErrQueueFull = errors.New("auditkit: writer queue is full, record dropped")
	// ErrClosed is returned by Enqueue and Flush after Close. A record Enqueue refuses with it is
	// lost like one refused for a full queue: it is counted in Stats.Dropped and reported.
	ErrClosed = errors.New("auditkit: writer is closed")
	// ErrNoWriter is returned by Dispatch when records have neither a collector nor a writer to go to.
	ErrNoWriter = errors.New("auditkit: no writer configured")
)

// Sink stores batches of records. The Writer calls Write from a single goroutine.
//
// Write must be all or nothing for the records it is given, and it may be called again with the
// same records after a failure whose outcome is unknown (a connection lost during commit): a Sink
// must never store a record twice (Record.ID is unique). An error that says some records can never
// be stored is reported as a *RejectedError; every other error is treated as transient and the
// batch is retried with backoff.
type Sink interface {
	// Write stores recs, all or nothing, and returns when they are stored or ctx is done.
	Write(ctx context.Context, recs []*Record) error
}

// RejectedError reports that a sink refused records permanently (the database rejected their
// content). Index is the position of the offending record in the batch, or -1 when unknown; the
// Writer then isolates it by splitting the batch.
type RejectedError struct {
	Index int   // the rejected record's position in the batch, or -1
	Err   error // why: the database's error, or why the record could not be encoded
}

// Error says which record was rejected, when known, and why.
func (e *RejectedError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("record %d rejected: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("batch rejected: %v", e.Err)
}

// Unwrap returns the reason, so that errors.Is and errors.As see through the rejection (to a
// *pgconn.PgError, with the PostgreSQL sink).
func (e *RejectedError) Unwrap() error { return e.Err }

// WriterOptions configure a Writer. The zero value is usable.
type WriterOptions struct {
	// BatchSize is the most records written at once. Default 500.
	BatchSize int
	// FlushInterval is how long the first record of a batch waits for the batch to fill. Default 1s.
	FlushInterval time.Duration
	// QueueSize bounds the records accepted and waiting, including the batch being collected.
	// Default 10,000; never less than BatchSize. With one batch per worker in flight and one
	// waiting for a worker, the Writer holds at most QueueSize + (Workers+1)*BatchSize records in
	// memory, however long the sink is down.
	QueueSize int
	// Workers is how many batches are written at once, each through its own sink call (and so,
	// with the PostgreSQL sink, its own connection). Default 2: one batch is redacted and encoded
	// while another is being stored.
	Workers int
	// AttemptTimeout bounds one write attempt. Default 30s.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts after a transient error; the wait
	// doubles from MinBackoff up to MaxBackoff, with jitter. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Redactor is applied to every record before it reaches the sink. Default NewRedactor(nil, nil).
	Redactor *Redactor
	// Logger receives drops, invalid records, retries and rejected records. Default slog.Default().
	Logger *slog.Logger
	// OnReject, when set, is called (from the writer's goroutine) with each record the sink rejected
	// permanently, after redaction, so that it can be kept elsewhere.
	OnReject func(*Record, error)
	// OnClose, when set, is called once, by the first Close to finish, with that Close's context:
	// after the last batch was written, or at once when Close gave up, in which case the context
	// has already ended and a write may still be running (OnClose must then return promptly and
	// may finish its work in the background). Open uses it to close the connection pool the
	// writer owns.
	OnClose func(context.Context) error
	// DisableORMDiffs tells the ORM integrations given this writer (gormaudit, entaudit) to
	// record no row changes, and to do none of the work of capturing them; the writer itself
	// ignores it. Open sets it from Config.DisableORMDiffs (AUDIT_CAPTURE_ORM_DIFFS=false).
	DisableORMDiffs bool
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	// The batch being collected lives in the queue, so the queue must hold a whole batch.
	o.QueueSize = max(o.QueueSize, o.BatchSize)
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 30 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	if o.Redactor == nil {
		o.Redactor = NewRedactor(nil, nil)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Stats are the Writer's counters since it was created.
//
// Every valid record offered to Enqueue ends up counted once in Enqueued or in Dropped, and every
// record counted in Enqueued ends up in Written, Failed or Dropped, or is still in QueueDepth.
type Stats struct {
	Enqueued uint64 // records accepted by Enqueue
	Written  uint64 // records the sink stored
	Retried  uint64 // write attempts repeated after a transient error
	// Dropped counts the audit records lost: refused by Enqueue because the queue was full
	// (ErrQueueFull) or the Writer was closed (ErrClosed), and accepted records abandoned when
	// Close gave up (see Close).
	Dropped    uint64
	Failed     uint64 // records the sink rejected permanently
	Invalid    uint64 // records refused by Enqueue because they failed validation
	Batches    uint64 // successful sink writes
	QueueDepth int    // records accepted and not yet written, failed or dropped
}

// Writer is the asynchronous batch writer. Enqueue hands a record over without waiting; a
// background goroutine batches records by size and by time and writes them through a Sink,
// retrying transient errors with capped exponential backoff, isolating records the sink rejects,
// and never storing a record twice when the sink honours the Sink contract.
//
// Overflow policy: the queue is bounded; when it is full Enqueue refuses the record with
// ErrQueueFull at once (the request path never waits on the database) and counts it in
// Stats.Dropped. Records refused (full queue, closed Writer, failed validation) are reported
// through the logger with counts, at most once per second: a refusal inside that second is
// reported when it ends, and Close reports what is left, so every refusal is reported.
type Writer struct {
	opts WriterOptions
	sink Sink
	// The queue is guarded by mu rather than being a channel: the collecting goroutine is woken
	// when a batch starts (to arm the interval timer) and when it is full, not for every record.
	mu        sync.Mutex
	queue     *batchQueue
	inFlight  int           // records taken from the queue whose outcome is not yet counted
	closed    bool          // Enqueue refuses records
	abandoned bool          // Close gave up: every record not yet counted was counted as dropped
	wake      chan struct{} // capacity 1

	flushReq    chan chan struct{}
	batches     chan []*Record // from the collecting goroutine to the workers
	pending     sync.WaitGroup // batches handed to workers and not yet finished
	closing     chan struct{}
	closeOnce   sync.Once
	onCloseOnce sync.Once
	done        chan struct{}
	ctx         context.Context // cancelled when Close gives up waiting
	abort       context.CancelFunc

	enqueued, written, retried, dropped, failed, invalid, stored atomic.Uint64

	// Refusals by Enqueue, reported by report. The collecting goroutine cannot do the deferred
	// reporting: while the queue overflows it is usually waiting for a worker.
	full, late  atomic.Uint64         // refused with ErrQueueFull, with ErrClosed
	lastInvalid atomic.Pointer[error] // the latest validation error, as an example
	reportDue   atomic.Bool           // a deferred report is scheduled
	reportMu    sync.Mutex            // guards the fields below
	reported    struct{ full, late, invalid uint64 }
	lastReport  time.Time
	reportTimer *time.Timer
	reportGen   int // tells a deferred report whose timer Close stopped from a current one
}

// NewWriter starts a Writer that writes to sink. Close it to drain and stop it.
func NewWriter(sink Sink, opts WriterOptions) *Writer {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		opts:     opts,
		sink:     sink,
		queue:    newBatchQueue(opts.BatchSize, opts.Workers+2),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan chan struct{}),
		batches:  make(chan []*Record),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		ctx:      ctx,
		abort:    cancel,
	}
	go w.run()
	return w
}

// CaptureORMDiffs reports whether ORM integrations given w record row changes: false when w was
// opened from a Config with DisableORMDiffs (or WriterOptions.DisableORMDiffs was set). A nil
// Writer reports true.
func (w *Writer) CaptureORMDiffs() bool { return w == nil || !w.opts.DisableORMDiffs }

// Enqueue validates r, fills its defaults (id, time, action, severity, actor type) and queues it.
// It never blocks. The Writer owns r from then on: do not modify it.
func (w *Writer) Enqueue(r *Record) error {
	if err := r.Validate(); err != nil {
		example := err // a copy, so that err itself does not escape on the valid path
		w.lastInvalid.Store(&example)
		w.invalid.Add(1)
		w.refused()
		return err
	}
	r.normalize(time.Now())
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.late.Add(1)
		w.dropped.Add(1)
		w.refused()
		return ErrClosed
	}
	n := w.queue.len
	if n >= w.opts.QueueSize {
		w.mu.Unlock()
		w.full.Add(1)
		w.dropped.Add(1)
		w.refused()
		return ErrQueueFull
	}
	full := w.queue.push(r)
	w.mu.Unlock()
	w.enqueued.Add(1)
	if n == 0 || full {
		select {
		case w.wake <- struct{}{}:
		default: // already signalled
		}
	}
	return nil
}

// refused reports refusals by Enqueue: at once when nothing was reported in the last second,
// otherwise when that second ends.
func (w *Writer) refused() {
	if w.reportDue.Load() {
		return // the scheduled report will include this one
	}
	w.reportMu.Lock()
	defer w.reportMu.Unlock()
	if w.reportTimer != nil {
		return
	}
	if wait := time.Until(w.lastReport.Add(time.Second)); wait > 0 {
		gen := w.reportGen
		w.reportDue.Store(true)
		w.reportTimer = time.AfterFunc(wait, func() {
			w.reportMu.Lock()
			defer w.reportMu.Unlock()
			if gen != w.reportGen {
				return // Close stopped this timer and reported
			}
			w.reportTimer = nil
			w.reportDue.Store(false)
			w.report()
		})
		return
	}
	w.report()
}

// reportNow reports every refusal not yet reported, whenever the last report was; a scheduled
// report is cancelled.
func (w *Writer) reportNow() {
	w.reportMu.Lock()
	defer w.reportMu.Unlock()
	if w.reportTimer != nil {
		w.reportTimer.Stop()
		w.reportTimer = nil
		w.reportGen++
		w.reportDue.Store(false)
	}
	w.report()
}

// report logs the refusals since the last report, one line per reason. reportMu must be held.
func (w *Writer) report() {
	logged := false
	if total := w.full.Load(); total > w.reported.full {
		w.opts.Logger.Error("auditkit: audit queue full, records dropped",
			"dropped_since_last_report", total-w.reported.full, "dropped_total", total, "queue_size", w.opts.QueueSize)
		w.reported.full, logged = total, true
	}
	if total := w.late.Load(); total > w.reported.late {
		w.opts.Logger.Error("auditkit: audit records offered after the writer was closed, dropped",
			"dropped_since_last_report", total-w.reported.late, "dropped_total", total)
		w.reported.late, logged = total, true
	}
	if total := w.invalid.Load(); total > w.reported.invalid {
		var example error
		if p := w.lastInvalid.Load(); p != nil {
			example = *p
		}
		w.opts.Logger.Error("auditkit: invalid audit records refused",
			"refused_since_last_report", total-w.reported.invalid, "refused_total", total, "latest_error", example)
		w.reported.invalid, logged = total, true
	}
	if logged {
		w.lastReport = time.Now()
	}
}

// Flush writes every record accepted before the call and returns when they are stored (or failed
// permanently), or when ctx is done.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return ErrClosed
	}
	req := make(chan struct{})
	select {
	case w.flushReq <- req:
	case <-w.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("auditkit: flush: %w", ctx.Err())
	}
	select {
	case <-req:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("auditkit: flush: %w (%d records still pending)", ctx.Err(), w.depth())
	}
}

// Close stops accepting records, writes everything accepted, and stops the background goroutine.
//
// When ctx ends first, Close gives up at once: the records not yet written (queued, or in a write
// that is abandoned by cancelling its context) are counted in Stats.Dropped and reported through
// the logger, and Close returns an error saying how many. A sink that ignores its context keeps the
// background goroutine until it returns; the goroutine then ends without counting those records
// again, even if the sink stored them.
//
// Close may be called more than once; a later call waits for the goroutine as the first did, and
// OnClose runs only once.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.closing)
	})
	var err error
	select {
	case <-w.done:
	case <-ctx.Done():
		select {
		case <-w.done: // finished as ctx ended: nothing was given up
		default:
			n := w.abandon()
			err = fmt.Errorf("auditkit: close: %w: %d audit records were not written", ctx.Err(), n)
		}
	}
	w.abort()
	w.reportNow()
	w.onCloseOnce.Do(func() {
		if w.opts.OnClose != nil {
			if cerr := w.opts.OnClose(ctx); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	})
	return err
}

// abandon counts every record whose outcome is not yet counted as dropped and cancels the writes
// in progress. Outcomes that arrive later are ignored, so that no record is counted twice. It
// returns how many records it counted (none when an earlier Close already gave up).
func (w *Writer) abandon() int {
	w.mu.Lock()
	if w.abandoned {
		w.mu.Unlock()
		return 0
	}
	w.abandoned = true
	n := w.queue.reset() + w.inFlight
	w.inFlight = 0
	w.dropped.Add(uint64(n))
	w.mu.Unlock()
	w.abort()
	if n > 0 {
		w.opts.Logger.Error("auditkit: writer closed before audit records were written", "records", n)
	}
	return n
}

// settle counts the outcome of n records taken from the queue in c. It reports false, and counts
// nothing, when Close has already counted them as dropped.
func (w *Writer) settle(n int, c *atomic.Uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.abandoned {
		return false
	}
	w.inFlight -= n
	c.Add(uint64(n))
	return true
}

// Stats returns the current counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Enqueued:   w.enqueued.Load(),
		Written:    w.written.Load(),
		Retried:    w.retried.Load(),
		Dropped:    w.dropped.Load(),
		Failed:     w.failed.Load(),
		Invalid:    w.invalid.Load(),
		Batches:    w.stored.Load(),
		QueueDepth: w.depth(),
	}
}

func (w *Writer) depth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queue.len + w.inFlight
}

// take removes one batch from the front of the queue: a full one, or with all set whatever is
// there. Taking one batch at a time keeps at most one batch outside the queue while the workers
// are busy, which is what bounds memory.
func (w *Writer) take(all bool) []*Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.abandoned {
		return nil
	}
	batch := w.queue.pop(all)
	w.inFlight += len(batch)
	return batch
}

// run collects records into batches and hands them to the workers.
func (w *Writer) run() {
	var workers sync.WaitGroup
	for range w.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for b := range w.batches {
				w.write(b)
				w.pending.Done()
			}
		}()
	}
	defer func() {
		close(w.batches)
		workers.Wait()
		close(w.done)
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	send := func(all bool) {
		for b := w.take(all); b != nil; b = w.take(all) {
			w.pending.Add(1)
			w.batches <- b
		}
	}
	for {
		select {
		case <-w.wake:
			send(false)
			if !armed && w.depthQueued() > 0 {
				timer.Reset(w.opts.FlushInterval)
				armed = true
			}
		case <-timer.C:
			armed = false
			send(true)
		case req := <-w.flushReq:
			// Every Enqueue that returned before Flush was called has appended under mu.
			send(true)
			w.pending.Wait()
			close(req)
		case <-w.closing:
			// Close set closed under mu: nothing can be appended any more.
			send(true)
			return
		}
	}
}

func (w *Writer) depthQueued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queue.len
}

// write redacts a batch once and delivers it; it returns when every record is stored, failed, or
// abandoned because Close gave up.
func (w *Writer) write(batch []*Record) {
	recs := make([]*Record, len(batch))
	for i, r := range batch {
		recs[i] = w.opts.Redactor.Record(r)
	}
	w.mu.Lock()
	w.queue.recycle(batch)
	w.mu.Unlock()
	w.deliver(recs)
}

func (w *Writer) deliver(recs []*Record) {
	backoff := w.opts.MinBackoff
	for attempt := 0; ; attempt++ {
		if w.ctx.Err() != nil {
			w.settle(len(recs), &w.dropped) // counted already by Close, which cancelled w.ctx
			return
		}
		ctx, cancel := context.WithTimeout(w.ctx, w.opts.AttemptTimeout)
		err := w.sink.Write(ctx, recs)
		cancel()
		if err == nil {
			if !w.settle(len(recs), &w.written) {
				return
			}
			w.stored.Add(1)
			if attempt > 0 {
				w.opts.Logger.Info("auditkit: audit write recovered", "records", len(recs), "attempts", attempt+1)
			}
			return
		}
		var rej *RejectedError
		if errors.As(err, &rej) {
			w.isolate(recs, rej)
			return
		}
		if w.ctx.Err() != nil {
			w.settle(len(recs), &w.dropped)
			return
		}
		w.retried.Add(1)
		if attempt == 0 || attempt%10 == 0 {
			w.opts.Logger.Warn("auditkit: audit write failed, retrying", "records", len(recs),
				"attempt", attempt+1, "backoff", backoff, "error", err)
		}
		// Full jitter keeps writers of several processes from retrying in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, w.opts.MaxBackoff)
	}
}

// isolate handles a permanent rejection: the named record fails and the rest is written; without
// a position the batch is split in halves until the offending records stand alone.
func (w *Writer) isolate(recs []*Record, rej *RejectedError) {
	if rej.Index >= 0 && rej.Index < len(recs) {
		w.reject(recs[rej.Index], rej.Err)
		rest := make([]*Record, 0, len(recs)-1)
		rest = append(rest, recs[:rej.Index]...)
		rest = append(rest, recs[rej.Index+1:]...)
		if len(rest) > 0 {
			w.deliver(rest)
		}
		return
	}
	if len(recs) == 1 {
		w.reject(recs[0], rej.Err)
		return
	}
	mid := len(recs) / 2
	w.deliver(recs[:mid])
	w.deliver(recs[mid:])
}

func (w *Writer) reject(r *Record, err error) {
	if !w.settle(1, &w.failed) {
		return
	}
	w.opts.Logger.Error("auditkit: audit record rejected by the database", "id", r.ID.String(),
		"action", r.Action, "kind", string(r.Kind), "error", err)
	if w.opts.OnReject != nil {
		w.opts.OnReject(r, err)
	}
}
