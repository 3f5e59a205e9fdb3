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

// Sink stores batches of records. The Writer calls Write from as many goroutines as it has
// workers (WriterOptions.Workers), each with its own batch.
//
// Write must be all or nothing for the records it is given, and it may be called again with the
// same records after a failure whose outcome is unknown (a connection lost during commit), or
// after a restart when the records come back from the spool: a Sink must never store a record
// twice (Record.ID is unique). An error that says some records can never be stored is reported as
// a *RejectedError; an error that says nothing can be stored until an operator acts (a missing
// table, a missing privilege) as an *UnavailableError; every other error is treated as transient
// and the batch is retried with backoff.
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

// UnavailableError reports that the sink refuses every write for a reason retrying cannot fix
// until an operator acts: the table, schema or a column is missing, the role lacks a privilege, the
// server is read-only, the login fails. The Writer then reports itself failing (Health), keeps the
// batch and tries again every WriterOptions.RecheckInterval rather than with backoff, and Flush
// and Close stop waiting for it.
type UnavailableError struct {
	Err error // the database's error
}

// Error says why the sink is unavailable.
func (e *UnavailableError) Error() string { return "audit sink unavailable: " + e.Err.Error() }

// Unwrap returns the reason.
func (e *UnavailableError) Unwrap() error { return e.Err }

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
	// AttemptTimeout bounds one write attempt. Default 5s: shorter than the shutdown deadlines
	// applications give Close, so that a hung connection (a black-holed server) is abandoned and
	// the batch retried on a new one well before the application gives up.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts after a transient error; the wait
	// doubles from MinBackoff up to MaxBackoff, with jitter. Defaults 100ms and 1s.
	MinBackoff, MaxBackoff time.Duration
	// RecheckInterval is the wait between attempts while the sink is unavailable (an
	// *UnavailableError: a missing table, a missing privilege). Default 5s.
	RecheckInterval time.Duration
	// FailurePolicy says what happens to work whose record cannot be accepted; see FailurePolicy.
	// A context can override it (WithFailurePolicy). Default FailOpen.
	FailurePolicy FailurePolicy
	// Spool, when its Dir is set, keeps every accepted record on disk until it is stored, so that
	// records survive a crash of the process and outages longer than the queue can hold. See
	// SpoolOptions. A Writer with a spool is created by OpenWriter.
	Spool SpoolOptions
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
	// PII is the cipher of personal values (Config.Erasure) that the ORM integrations given this
	// writer use for the records they write inside the application's transaction (their
	// InTransaction modes), as the PostgreSQL sink does for the records it stores; the writer itself
	// ignores it. Open sets it.
	PII *PIICipher
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
		o.AttemptTimeout = 5 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Second, o.MinBackoff)
	}
	if o.RecheckInterval <= 0 {
		o.RecheckInterval = 5 * time.Second
	}
	o.Spool = o.Spool.withDefaults()
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
// record counted in Enqueued or Replayed ends up in Written, Failed, Dropped or Kept, or is still
// in QueueDepth.
type Stats struct {
	Enqueued uint64 // records accepted by Enqueue
	Written  uint64 // records the sink stored
	Retried  uint64 // write attempts repeated after a transient error
	// Dropped counts the audit records lost: refused by Enqueue because the queue (and the spool)
	// was full (ErrQueueFull) or the Writer was closed (ErrClosed), and accepted records abandoned
	// when Close gave up without a spool to keep them (see Close).
	Dropped uint64
	Failed  uint64 // records the sink rejected permanently (and records the spool could not decode)
	Invalid uint64 // records refused by Enqueue because they failed validation or could not be encoded
	Batches uint64 // successful sink writes
	// QueueDepth counts the records accepted and not yet written, failed or dropped: in memory,
	// being written, and waiting in the spool.
	QueueDepth int

	// Spool counters; zero without a spool.
	Spooled    uint64 // records appended to the spool by this Writer
	Replayed   uint64 // records found in the spool when the Writer started, from an earlier run
	Kept       uint64 // records left in the spool when Close gave up: the next start writes them
	SpoolBytes int64  // bytes of the spool's segment files
	// SpoolErrors counts appends that failed (a full spool or a disk error); the record then
	// went to the memory queue when it had room, and was dropped otherwise.
	SpoolErrors uint64
	// SpoolCorrupt counts damaged regions found in the spool's files (a torn tail after a
	// crash, corrupted bytes); each is skipped and reported through the logger.
	SpoolCorrupt uint64
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
	// encodes is set when the sink stores the rows the Writer encodes (rowSink): the collecting
	// goroutine then redacts and encodes each batch in one pass while the workers write.
	encodes bool
	// recycles is set when the sink holds nothing of a batch once Write has returned it stored
	// (PostgresSink): the memory of the batch's rows is then made the next batches' rows in
	// (spare) instead of being left to the garbage collector.
	recycles bool
	spare    sync.Pool     // of *rowBatch
	recycled atomic.Uint64 // the batches whose rowBatch was kept for a later one
	// The queue is guarded by mu rather than being a channel: the collecting goroutine is woken
	// when a batch starts (to arm the interval timer) and when it is full, not for every record.
	mu       sync.Mutex
	queue    *batchQueue
	inFlight int // records taken from the queue whose outcome is not yet counted
	// inFlightUnspooled counts those of inFlight not in the spool (without one: all of them).
	inFlightUnspooled int
	closed            bool          // Enqueue refuses records
	abandoned         bool          // Close gave up: every record not yet counted was counted as dropped
	wake              chan struct{} // capacity 1

	flushReq    chan chan struct{}
	batches     chan batchJob  // from the collecting goroutine to the workers
	pending     sync.WaitGroup // batches handed to workers and not yet finished
	closing     chan struct{}
	closeOnce   sync.Once
	onCloseOnce sync.Once
	done        chan struct{}
	ctx         context.Context // cancelled when Close gives up waiting
	abort       context.CancelFunc

	enqueued, written, retried, dropped, failed, invalid, stored atomic.Uint64

	reserved int // records Reserve promised room for, not yet enqueued or released; guarded by mu

	// Health: the latest write outcome.
	failing   atomic.Pointer[writeFailure] // set while the sink is unavailable (*UnavailableError)
	retrying  atomic.Pointer[writeFailure] // set while a batch is being retried after a transient error
	lastDrop  atomic.Int64                 // UnixNano of the latest drop
	failingCh chan struct{}                // signalled (capacity 1) when failing is set

	sp *spoolState // nil without a spool

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

// writeFailure is a write error and when the condition it reports began.
type writeFailure struct {
	err   error
	since time.Time
}

// NewWriter starts a Writer that writes to sink. Close it to drain and stop it.
//
// NewWriter cannot report an error, so it panics when opts.Spool.Dir is set and the spool cannot be
// opened; use OpenWriter for a Writer with a spool.
func NewWriter(sink Sink, opts WriterOptions) *Writer {
	w, err := OpenWriter(sink, opts)
	if err != nil {
		panic(err)
	}
	return w
}

// OpenWriter starts a Writer that writes to sink, opening its spool first when opts.Spool.Dir is
// set; the records an earlier run left in the spool are written before new ones. Close it to
// drain and stop it.
func OpenWriter(sink Sink, opts WriterOptions) (*Writer, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	_, encodes := sink.(rowSink)
	if _, takes := sink.(RowSink); takes {
		encodes = true
	}
	_, recycles := sink.(*PostgresSink)
	w := &Writer{
		opts:      opts,
		sink:      sink,
		encodes:   encodes,
		recycles:  recycles && encodes,
		queue:     newBatchQueue(opts.BatchSize, opts.Workers+2),
		wake:      make(chan struct{}, 1),
		flushReq:  make(chan chan struct{}),
		batches:   make(chan batchJob),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		failingCh: make(chan struct{}, 1),
		ctx:       ctx,
		abort:     cancel,
	}
	if opts.Spool.Dir != "" {
		sp, err := openSpoolState(opts.Spool, opts.Logger)
		if err != nil {
			cancel()
			return nil, err
		}
		w.sp = sp
		if sp.overflow {
			w.signal() // what an earlier run left in the spool
		}
	}
	go w.run()
	return w, nil
}

// PIICipher returns WriterOptions.PII: the cipher of personal values that records written
// outside the writer (in the application's transaction) must be stored with. Nil for a nil
// Writer or when erasure is not configured.
func (w *Writer) PIICipher() *PIICipher {
	if w == nil {
		return nil
	}
	return w.opts.PII
}

// CaptureORMDiffs reports whether ORM integrations given w record row changes: false when w was
// opened from a Config with DisableORMDiffs (or WriterOptions.DisableORMDiffs was set). A nil
// Writer reports true.
func (w *Writer) CaptureORMDiffs() bool { return w == nil || !w.opts.DisableORMDiffs }

// Enqueue validates r, fills its defaults (id, time, action, severity, actor type) and queues it.
// It never blocks, and never waits for the database. The Writer owns r from then on: do not
// modify it.
//
// With a spool, r is redacted, encoded and appended to the spool's current file before Enqueue
// returns (no fsync is awaited: see SpoolOptions.Sync), so that a record Enqueue accepted survives a
// crash of the process. A record that cannot be encoded is refused then, as invalid, rather than
// being rejected later by the database.
func (w *Writer) Enqueue(r *Record) error { return w.enqueue(r, nil) }

// EnqueueReserved queues r like Enqueue, in room res promised (see Reserve), so that it is
// accepted even when the queue or spool has filled since. When res has no room left (or is nil, or
// belongs to another Writer), it is Enqueue.
func (w *Writer) EnqueueReserved(res *Reservation, r *Record) error { return w.enqueue(r, res) }

func (w *Writer) enqueue(r *Record, res *Reservation) error {
	if err := r.Validate(); err != nil {
		w.refuseInvalid(err)
		res.releaseOne(w)
		return err
	}
	r.normalize(time.Now())
	var frame *[]byte
	if w.sp != nil {
		red, row, err := w.encodeOne(r)
		if err == nil {
			frame = getFrame()
			*frame, err = encodeRow((*frame)[:0], row)
		}
		if err != nil {
			putFrame(frame)
			err = fmt.Errorf("%w: %s: %w", ErrInvalidRecord, r.ID, err)
			w.refuseInvalid(err)
			res.releaseOne(w)
			return err
		}
		red.row = row
		r = red
	}
	w.mu.Lock()
	slot := res != nil && res.w == w && res.n > 0
	if slot {
		res.n--
		w.unreserve(1)
	}
	if w.closed {
		w.mu.Unlock()
		putFrame(frame)
		w.late.Add(1)
		w.drop(1)
		w.refused()
		return ErrClosed
	}
	n := w.queue.len
	if w.sp != nil {
		wake, err := w.sp.append(w, r, *frame, n+w.reserved < w.opts.QueueSize)
		if err == nil {
			w.mu.Unlock()
			putFrame(frame)
			w.enqueued.Add(1)
			if wake {
				w.signal()
			}
			return nil
		}
		// The spool is full or failing: the record waits in memory when there is room (or room was
		// reserved for it), without the spool's protection against a crash.
		putFrame(frame)
		if n+w.reserved >= w.opts.QueueSize && !slot {
			w.mu.Unlock()
			w.full.Add(1)
			w.drop(1)
			w.refused()
			return fmt.Errorf("%w: %w", ErrQueueFull, err)
		}
	} else if n+w.reserved >= w.opts.QueueSize && !slot {
		w.mu.Unlock()
		w.full.Add(1)
		w.drop(1)
		w.refused()
		return ErrQueueFull
	}
	full := w.queue.push(r)
	w.mu.Unlock()
	w.enqueued.Add(1)
	if n == 0 || full {
		w.signal()
	}
	return nil
}

// signal wakes the collecting goroutine.
func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default: // already signalled
	}
}

// drop counts n records lost.
func (w *Writer) drop(n int) {
	w.dropped.Add(uint64(n))
	w.lastDrop.Store(time.Now().UnixNano())
}

// refuseInvalid counts and reports a record refused as invalid.
func (w *Writer) refuseInvalid(err error) {
	example := err // a copy, so that err itself does not escape on the valid path
	w.lastInvalid.Store(&example)
	w.invalid.Add(1)
	w.refused()
}

// Reservation is room on a Writer promised to records not yet enqueued: records enqueued with
// EnqueueReserved take it, and are accepted even when the queue or spool filled after Reserve.
// Integrations reserve before a change commits, under FailClosed, so that a change never commits
// without room for its record. Release gives back what was not used. A nil *Reservation is valid
// and holds no room.
type Reservation struct {
	w *Writer
	n int // guarded by w.mu
}

// Reserve promises room for n records, or refuses with an error wrapping ErrAuditUnavailable
// that says why: the Writer is closed, the sink is unavailable (see Health), or the queue (with a
// spool: the spool) has no room for them. Release what is not used; room not released is held
// until the Writer is closed.
func (w *Writer) Reserve(n int) (*Reservation, error) {
	if n <= 0 {
		return &Reservation{w: w}, nil
	}
	if f := w.failing.Load(); f != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, f.err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, ErrClosed)
	case w.sp != nil:
		if err := w.sp.room(w.reserved + n); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
		}
	case w.queue.len+w.reserved+n > w.opts.QueueSize:
		return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, ErrQueueFull)
	}
	w.reserved += n
	return &Reservation{w: w, n: n}, nil
}

// Remaining returns how much room r still holds.
func (r *Reservation) Remaining() int {
	if r == nil || r.w == nil {
		return 0
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	return r.n
}

// Release gives back the room r still holds. It may be called more than once.
func (r *Reservation) Release() {
	if r == nil || r.w == nil {
		return
	}
	r.w.mu.Lock()
	r.w.unreserve(r.n)
	r.n = 0
	r.w.mu.Unlock()
}

// Join moves the room o holds into r (both must belong to the same Writer; otherwise o is
// released). It lets a request gather the room reserved by each of its changes.
func (r *Reservation) Join(o *Reservation) {
	if o == nil || o == r {
		return
	}
	if r == nil || r.w != o.w {
		o.Release()
		return
	}
	r.w.mu.Lock()
	r.n += o.n
	o.n = 0
	r.w.mu.Unlock()
}

// unreserve gives back n records of room. mu must be held. Close voids all room at once.
func (w *Writer) unreserve(n int) {
	if !w.closed {
		w.reserved -= n
	}
}

// releaseOne gives back the room of one record that was refused.
func (r *Reservation) releaseOne(w *Writer) {
	if r == nil || r.w != w {
		return
	}
	w.mu.Lock()
	if r.n > 0 {
		r.n--
		w.unreserve(1)
	}
	w.mu.Unlock()
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
// permanently), or when ctx is done. It stops waiting, with an error wrapping ErrAuditUnavailable,
// when the sink is unavailable (see Health).
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := w.unavailable(); err != nil {
		return fmt.Errorf("auditkit: flush: %w (%d records still pending)", err, w.depth())
	}
	req := make(chan struct{})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for sent := false; !sent; {
		select {
		case w.flushReq <- req:
			sent = true
		case <-w.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("auditkit: flush: %w", ctx.Err())
		case <-tick.C:
			if err := w.unavailable(); err != nil {
				return fmt.Errorf("auditkit: flush: %w (%d records still pending)", err, w.depth())
			}
		}
	}
	for {
		select {
		case <-req:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("auditkit: flush: %w (%d records still pending)", ctx.Err(), w.depth())
		case <-tick.C:
			if err := w.unavailable(); err != nil {
				return fmt.Errorf("auditkit: flush: %w (%d records still pending)", err, w.depth())
			}
		}
	}
}

// unavailable returns an error wrapping ErrAuditUnavailable and the sink's error while the sink is
// unavailable.
func (w *Writer) unavailable() error {
	if f := w.failing.Load(); f != nil {
		return fmt.Errorf("%w since %s: %w", ErrAuditUnavailable, f.since.Format(time.RFC3339), f.err)
	}
	return nil
}

// Close stops accepting records, writes everything accepted, and stops the background goroutine.
//
// Give Close a context of its own with a deadline, not the one that was cancelled to start the
// shutdown: a context that has already ended makes Close give up at once.
//
//	<-ctx.Done() // the signal
//	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	if err := w.Close(closeCtx); err != nil { ... }
//
// When ctx ends first, or the sink is unavailable (see Health), Close gives up at once: the records
// not yet written (queued, or in a write that is abandoned by cancelling its context) stay in the
// spool when there is one, counted in Stats.Kept, and the next start writes them; without a spool
// they are counted in Stats.Dropped and reported through the logger. Close then returns an error
// saying how many and why. A sink that ignores its context keeps the background goroutine (and the
// spool's files) until it returns; the goroutine then ends without counting those records again,
// even if the sink stored them.
//
// Close may be called more than once; a later call waits for the goroutine as the first did, and
// OnClose runs only once.
func (w *Writer) Close(ctx context.Context) error {
	if ctx.Err() != nil && w.depth() > 0 {
		w.opts.Logger.Error("auditkit: Close was given a context that had already ended; pending audit records "+
			"cannot be written (give Close a fresh context with a timeout, created after the shutdown signal)",
			"records", w.depth())
	}
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		// Room promised and never used is void now: a record enqueued later is refused with ErrClosed.
		w.reserved = 0
		w.mu.Unlock()
		close(w.closing)
	})
	var err error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-w.done:
			break wait
		case <-ctx.Done():
			select {
			case <-w.done: // finished as ctx ended: nothing was given up
			default:
				err = w.giveUp(ctx.Err())
			}
			break wait
		case <-tick.C:
			if u := w.unavailable(); u != nil {
				err = w.giveUp(u)
				break wait
			}
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

// giveUp abandons the records not yet written and returns Close's error.
func (w *Writer) giveUp(why error) error {
	dropped, kept := w.abandon()
	switch {
	case dropped == 0 && kept == 0:
		return fmt.Errorf("auditkit: close: %w", why)
	case dropped == 0:
		return fmt.Errorf("auditkit: close: %w: %d audit records were not written; they stay in the spool for the next start", why, kept)
	case kept == 0:
		return fmt.Errorf("auditkit: close: %w: %d audit records were not written", why, dropped)
	}
	return fmt.Errorf("auditkit: close: %w: %d audit records were not written (%d stay in the spool for the next start)", why, dropped+kept, kept)
}

// abandon counts every record whose outcome is not yet counted as dropped (or, when it is in the
// spool, as kept) and cancels the writes in progress. Outcomes that arrive later are ignored, so
// that no record is counted twice. It returns how many records it counted (none when an earlier
// Close already gave up).
func (w *Writer) abandon() (dropped, kept int) {
	w.mu.Lock()
	if w.abandoned {
		w.mu.Unlock()
		return 0, 0
	}
	w.abandoned = true
	for _, c := range w.queue.chunks() {
		for _, r := range c {
			if r.spooled {
				kept++
			} else {
				dropped++
			}
		}
	}
	w.queue.reset()
	dropped += w.inFlightUnspooled
	kept += w.inFlight - w.inFlightUnspooled
	if w.sp != nil {
		kept += w.sp.diskOnly
		w.sp.diskOnly = 0
	}
	w.inFlight, w.inFlightUnspooled = 0, 0
	w.dropped.Add(uint64(dropped))
	if w.sp != nil {
		w.sp.kept.Add(uint64(kept))
	}
	w.mu.Unlock()
	w.abort()
	if dropped > 0 {
		w.drop(0)
		w.opts.Logger.Error("auditkit: writer closed before audit records were written", "records", dropped)
	}
	if kept > 0 {
		w.opts.Logger.Warn("auditkit: writer closed before audit records were written; they stay in the spool and are written at the next start",
			"records", kept, "spool", w.opts.Spool.Dir)
	}
	return dropped, kept
}

// settle counts the outcome of records taken from the queue in c. It reports false, and counts
// nothing, when Close has already counted them.
func (w *Writer) settle(recs []*Record, c *atomic.Uint64) bool {
	unspooled := 0
	for _, r := range recs {
		if !r.spooled {
			unspooled++
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.abandoned {
		return false
	}
	w.inFlight -= len(recs)
	w.inFlightUnspooled -= unspooled
	c.Add(uint64(len(recs)))
	return true
}

// Stats returns the current counters.
func (w *Writer) Stats() Stats {
	st := Stats{
		Enqueued:   w.enqueued.Load(),
		Written:    w.written.Load(),
		Retried:    w.retried.Load(),
		Dropped:    w.dropped.Load(),
		Failed:     w.failed.Load(),
		Invalid:    w.invalid.Load(),
		Batches:    w.stored.Load(),
		QueueDepth: w.depth(),
	}
	if w.sp != nil {
		w.sp.stats(&st)
	}
	return st
}

func (w *Writer) depth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.queue.len + w.inFlight
	if w.sp != nil {
		n += w.sp.diskOnly
	}
	return n
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
	for _, r := range batch {
		if !r.spooled {
			w.inFlightUnspooled++
		}
	}
	return batch
}

// run collects records into batches and hands them to the workers.
func (w *Writer) run() {
	var workers sync.WaitGroup
	for range w.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range w.batches {
				w.write(j.recs, j.rows)
				w.pending.Done()
			}
		}()
	}
	defer func() {
		close(w.batches)
		workers.Wait()
		if w.sp != nil {
			w.sp.close(w.opts.Logger)
		}
		close(w.done)
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	sendSpooled := func() {
		if w.sp == nil {
			return
		}
		for b := w.sp.next(w); b != nil; b = w.sp.next(w) {
			w.pending.Add(1)
			w.batches <- batchJob{recs: b}
		}
	}
	send := func(all bool) {
		for b := w.take(all); b != nil; b = w.take(all) {
			var rows *rowBatch
			if w.encodes {
				// While a worker waits on the database with the batch before this one.
				rows = w.encode(b)
			}
			w.pending.Add(1)
			w.batches <- batchJob{recs: b, rows: rows}
		}
		// Records that did not fit in memory (or that an earlier run left) wait in the spool: they
		// are read back once the memory queue has drained.
		if w.sp != nil && w.depthQueued() == 0 {
			sendSpooled()
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

// batchJob is a batch handed to a worker: its records and, when the Writer encoded them, the
// rowBatch their rows were made in.
type batchJob struct {
	recs []*Record
	rows *rowBatch
}

// write redacts a batch once (records from the spool, and records encode has made rows of,
// already are) and delivers it; it returns when every record is stored, failed, or abandoned
// because Close gave up. rows, when not nil, is the rowBatch encode made the batch's rows in.
func (w *Writer) write(batch []*Record, rows *rowBatch) {
	var recs []*Record
	if rows != nil {
		recs = rows.pointers(len(batch))
	} else {
		recs = make([]*Record, len(batch))
	}
	for i, r := range batch {
		if r.row != nil {
			recs[i] = r
			continue
		}
		recs[i] = w.opts.Redactor.Record(r)
	}
	w.mu.Lock()
	w.queue.recycle(batch)
	w.mu.Unlock()
	if w.deliver(recs) && rows != nil && w.recycles {
		w.recycle(rows)
	}
}

// recycle keeps rows, the rowBatch of a batch the sink stored, for the rows of a later batch
// (see encode). Only a batch the sink stored in its first Write gets here: a Write that returned
// an error may have left the driver reading the rows (pgconn's CopyFrom returns on a broken
// connection without waiting for the goroutine that reads them), and a record that failed went
// to OnReject, which may keep it. After a stored first Write, PostgresSink, the Writer's
// counters and the spool hold nothing of the batch: its rows and redacted records are read by
// no one when rows.release zeroes them.
func (w *Writer) recycle(rows *rowBatch) {
	rows.release()
	w.spare.Put(rows)
	w.recycled.Add(1)
}

// deliver writes recs through the sink until each is stored, rejected or given up. It reports
// whether they were all stored by the first Write (see recycle).
func (w *Writer) deliver(recs []*Record) (firstWrite bool) {
	backoff := w.opts.MinBackoff
	for attempt := 0; ; attempt++ {
		if w.ctx.Err() != nil {
			w.settle(recs, &w.dropped) // counted already by Close, which cancelled w.ctx
			return false
		}
		ctx, cancel := context.WithTimeout(w.ctx, w.opts.AttemptTimeout)
		start := time.Now()
		err := w.sink.Write(ctx, recs)
		cancel()
		w.observe(len(recs), attempt, start, err)
		if err == nil {
			w.recovered(len(recs), attempt)
			w.ack(recs)
			if !w.settle(recs, &w.written) {
				return false
			}
			w.stored.Add(1)
			return attempt == 0
		}
		var rej *RejectedError
		if errors.As(err, &rej) {
			w.recovered(0, 0)
			w.isolate(recs, rej)
			return false
		}
		if w.ctx.Err() != nil {
			w.settle(recs, &w.dropped)
			return false
		}
		w.retried.Add(1)
		wait := backoff/2 + rand.N(backoff/2+1) // full jitter keeps writers of several processes apart
		var unavail *UnavailableError
		if errors.As(err, &unavail) {
			// Retrying at once cannot help: say so, once, and look again now and then.
			if w.failing.Load() == nil {
				w.failing.Store(&writeFailure{err: err, since: time.Now()})
				w.opts.Logger.Error("auditkit: the database refuses the audit writer; records are kept and written once it is fixed",
					"records", len(recs), "error", err, "recheck", w.opts.RecheckInterval)
			}
			wait = w.opts.RecheckInterval
		} else {
			if w.retrying.Load() == nil {
				w.retrying.Store(&writeFailure{err: err, since: time.Now()})
			}
			if attempt == 0 || attempt%10 == 0 {
				w.opts.Logger.Warn("auditkit: audit write failed, retrying", "records", len(recs),
					"attempt", attempt+1, "backoff", wait, "error", err)
			}
			backoff = min(backoff*2, w.opts.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
		}
	}
}

// recovered clears the failure states after a write the sink answered.
func (w *Writer) recovered(n, attempt int) {
	f, r := w.failing.Swap(nil), w.retrying.Swap(nil)
	if n > 0 && (attempt > 0 || f != nil || r != nil) {
		since := time.Time{}
		if f != nil {
			since = f.since
		} else if r != nil {
			since = r.since
		}
		if since.IsZero() {
			w.opts.Logger.Info("auditkit: audit write recovered", "records", n, "attempts", attempt+1)
		} else {
			w.opts.Logger.Info("auditkit: audit write recovered", "records", n, "attempts", attempt+1,
				"outage", time.Since(since).Round(time.Millisecond))
		}
	}
}

// ack tells the spool that recs are settled (stored, or rejected and reported).
func (w *Writer) ack(recs []*Record) {
	if w.sp != nil {
		w.sp.ack(recs)
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
	w.ack([]*Record{r})
	if !w.settle([]*Record{r}, &w.failed) {
		return
	}
	w.opts.Logger.Error("auditkit: audit record rejected by the database", "id", r.ID.String(),
		"action", r.Action, "kind", string(r.Kind), "error", err)
	if w.opts.OnReject != nil {
		w.opts.OnReject(withDocs(r), err)
	}
}

// RowSink is a Sink that takes the records it is given as audit_logs rows: each record carries
// its row, which AppendRecordRow writes out as it is, and its maps of values (Before, After, Diff
// and Metadata) are nil, the row holding them redacted. The Writer then redacts and encodes each
// batch in one pass, while its workers write the batch before, instead of building redacted
// copies of every map and encoding them again. A sink that forwards records with
// AppendRecordRow implements it (natsaudit's does); a sink that reads the maps must not.
type RowSink interface {
	Sink
	// TakesRows marks the sink as a RowSink; the Writer never calls it.
	TakesRows()
}

// rowSink is a Sink that stores the rows the Writer encodes: the records it is given carry their
// row, and their maps of values (Before, After, Diff, Metadata) may be nil since the row holds
// them. The Writer then redacts and encodes each record in one pass (see rowBatch) instead of
// building redacted copies of its maps.
type rowSink interface {
	Sink
	storesRows()
}

// encode replaces the records of batch that have no row yet by redacted records carrying their
// row, made in one pass; a record that cannot be encoded is left for write to redact, and for
// the sink to reject.
func (w *Writer) encode(batch []*Record) *rowBatch {
	rb, _ := w.spare.Get().(*rowBatch)
	if rb != nil {
		rb.resize(len(batch))
	} else {
		rb = newRowBatch(w.opts.Redactor, len(batch))
		if w.chainsRows() {
			rb.chain()
		}
	}
	reds := rb.records(len(batch))
	for i, r := range batch {
		if r.row != nil {
			continue
		}
		row, err := rb.rowOf(r, &reds[i])
		if err != nil {
			continue
		}
		rb.prepareChain(row, &reds[i])
		reds[i].row = row
		batch[i] = &reds[i]
	}
	if s, ok := w.sink.(*PostgresSink); ok && rb.canon {
		// Linked here, while a worker stores the batch before, when the heads are known.
		s.prelink(batch)
	}
	return rb
}

// encodeOne returns the redacted record the Writer keeps for r and its row. With a sink that
// stores rows, the record's maps of values are left out (the row holds them).
func (w *Writer) encodeOne(r *Record) (*Record, []any, error) {
	if !w.encodes {
		red := w.opts.Redactor.Record(r)
		row, err := rowValues(red)
		return red, row, err
	}
	red := new(Record)
	rb := newRowBatch(w.opts.Redactor, 1)
	if w.chainsRows() {
		rb.chain()
	}
	row, err := rb.rowOf(r, red)
	return red, row, err
}

// chainsRows reports whether the sink hashes the rows the Writer encodes into a chain as they
// are, its documents in jsonb's text form: the Writer then writes those texts while it encodes
// the documents (see canon.go). A sink that encrypts personal values rewrites the documents first.
func (w *Writer) chainsRows() bool {
	s, ok := w.sink.(*PostgresSink)
	return ok && s.chained && s.pii == nil
}
