package natsaudit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
)

// IngestOptions configure an Ingester.
type IngestOptions struct {
	// Conn is the NATS connection to read from; required. The caller keeps ownership.
	Conn *nats.Conn
	// Sink stores the records; required. Use core.NewPostgresSink (chained unless
	// PostgresSinkOptions.DisableChain): it stores each batch in one transaction, skipping
	// the ids already stored, which is what makes a message delivered again harmless.
	Sink core.Sink
	// Stream is the stream to read. Default DefaultStream.
	Stream string
	// Durable is the durable pull consumer's name. Every Ingester with the same Stream and
	// Durable, in any process, shares its messages. Default DefaultDurable.
	Durable string
	// SubjectPrefix restricts the consumer to prefix + ".>". Default DefaultSubjectPrefix.
	SubjectPrefix string
	// BatchSize is the most messages stored in one transaction. Default 500.
	BatchSize int
	// MaxWait is how long a batch waits to fill, from its first message, before the messages it
	// has are stored. Default 200ms.
	MaxWait time.Duration
	// Workers is how many batches one Ingester stores at once. Default 2: one batch is decoded
	// while another is stored.
	Workers int
	// AckWait is how long the stream waits for a delivered message's acknowledgement before
	// delivering it again (to any Ingester): the time a crashed ingest process holds its
	// messages. A batch being stored, or waiting for a worker, is kept from redelivery (the
	// Ingester tells the stream it is in progress every third of AckWait); the messages pulled
	// ahead (up to BatchSize) are not, so keep AckWait above two batch writes. Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet acknowledged, across every
	// Ingester of the durable consumer. Default 20,000; at least Workers*BatchSize.
	MaxAckPending int
	// AttemptTimeout bounds one Sink.Write. Default 30s.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts after a transient error.
	// Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// RecheckInterval is the wait between attempts while the sink is unavailable (a
	// *core.UnavailableError). Default 5s.
	RecheckInterval time.Duration
	// ProgressInterval is how often progress is logged while records flow. Default 10s; a
	// negative value logs none.
	ProgressInterval time.Duration
	// Logger receives progress, retries and rejected messages. Default slog.Default().
	Logger *slog.Logger
}

func (o IngestOptions) withDefaults() IngestOptions {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Durable == "" {
		o.Durable = DefaultDurable
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 200 * time.Millisecond
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 20000
	}
	o.MaxAckPending = max(o.MaxAckPending, o.Workers*o.BatchSize)
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 30 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.RecheckInterval <= 0 {
		o.RecheckInterval = 5 * time.Second
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// IngestStats are an Ingester's counters since it was created, and its view of the lag.
type IngestStats struct {
	Fetched uint64 // messages delivered to this Ingester
	// Redelivered counts the messages delivered more than once (after an ingest process
	// crashed, or a batch outlived AckWait): the sink skipped those already stored.
	Redelivered uint64
	Written     uint64 // records stored (or found already stored) and acknowledged
	Batches     uint64 // batches stored
	Retried     uint64 // Sink.Write attempts repeated after an error
	// Failed counts the messages terminated without being stored: a payload that does not
	// decode as a record, or a record the sink rejected permanently. Each is logged with its
	// stream sequence; the stream keeps it until MaxAge.
	Failed uint64
	// Pending is the number of messages of the stream not yet delivered to any Ingester of the
	// durable consumer, as of the last batch fetched.
	Pending uint64
	// Latency is the time from the stream storing the oldest message of the last batch to that
	// batch's commit: how far PostgreSQL is behind the applications. MaxLatency is the largest.
	Latency, MaxLatency time.Duration
	// LastCommit is when the last batch was stored; zero before the first.
	LastCommit time.Time
}

// Ingester reads a stream with a durable pull consumer and stores its records through a sink,
// acknowledging each batch's messages only after the sink stored them. Create it with
// NewIngester and run it with Run.
type Ingester struct {
	opts IngestOptions
	cons jetstream.Consumer

	fetched, redelivered, written, batches, retried, failed, pending atomic.Uint64
	latency, maxLatency, lastCommit                                  atomic.Int64
}

// NewIngester creates (or updates) the durable pull consumer on the stream and returns an Ingester
// reading it. The stream must exist (EnsureStream).
func NewIngester(ctx context.Context, opts IngestOptions) (*Ingester, error) {
	if opts.Conn == nil {
		return nil, errors.New("natsaudit: IngestOptions.Conn is nil")
	}
	if opts.Sink == nil {
		return nil, errors.New("natsaudit: IngestOptions.Sink is nil")
	}
	opts = opts.withDefaults()
	if err := checkName("stream", opts.Stream); err != nil {
		return nil, err
	}
	if err := checkName("durable consumer", opts.Durable); err != nil {
		return nil, err
	}
	if err := checkPrefix(opts.SubjectPrefix); err != nil {
		return nil, err
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("natsaudit: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, opts.Stream, jetstream.ConsumerConfig{
		Durable:       opts.Durable,
		Description:   "auditkit ingest into PostgreSQL",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		FilterSubject: opts.SubjectPrefix + ".>",
		MaxAckPending: opts.MaxAckPending,
		MaxWaiting:    512,
	})
	if err != nil {
		return nil, fmt.Errorf("natsaudit: creating the durable consumer %s on stream %s: %w", opts.Durable, opts.Stream, err)
	}
	return &Ingester{opts: opts, cons: cons}, nil
}

// Ingest creates an Ingester with opts and runs it until ctx ends; see Ingester.Run.
func Ingest(ctx context.Context, opts IngestOptions) error {
	in, err := NewIngester(ctx, opts)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}

// Stats returns the current counters.
func (in *Ingester) Stats() IngestStats {
	st := IngestStats{
		Fetched:     in.fetched.Load(),
		Redelivered: in.redelivered.Load(),
		Written:     in.written.Load(),
		Batches:     in.batches.Load(),
		Retried:     in.retried.Load(),
		Failed:      in.failed.Load(),
		Pending:     in.pending.Load(),
		Latency:     time.Duration(in.latency.Load()),
		MaxLatency:  time.Duration(in.maxLatency.Load()),
	}
	if t := in.lastCommit.Load(); t != 0 {
		st.LastCommit = time.Unix(0, t)
	}
	return st
}

// Run reads the stream and stores its batches until ctx ends, and returns nil then: one
// goroutine pulls messages continuously (up to BatchSize ahead) and cuts them into batches,
// Workers goroutines store them. When ctx ends, a write under way is finished (within
// AttemptTimeout) and its batch acknowledged; a batch waiting for a worker or for a retry is
// abandoned unacknowledged (the stream delivers it again, and the sink skips what an earlier
// attempt had committed). Run returns an error only when the consumer is gone (deleted, or its
// stream deleted).
func (in *Ingester) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []jetstream.Msg)
	var wg sync.WaitGroup
	for range in.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				in.store(ctx, b)
			}
		}()
	}
	if in.opts.ProgressInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.progress(ctx)
		}()
	}
	err := in.collect(ctx, batches)
	close(batches)
	cancel()
	wg.Wait()
	return err
}

// progress logs the counters every ProgressInterval while records flow.
func (in *Ingester) progress(ctx context.Context) {
	t := time.NewTicker(in.opts.ProgressInterval)
	defer t.Stop()
	last, lastAt := in.written.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st := in.Stats()
			if st.Written == last && st.Pending == 0 {
				continue
			}
			rate := float64(st.Written-last) / now.Sub(lastAt).Seconds()
			in.opts.Logger.Info("auditkit: ingest progress", "stream", in.opts.Stream, "consumer", in.opts.Durable,
				"written", st.Written, "records_per_second", int64(rate), "pending", st.Pending,
				"latency", st.Latency.Round(time.Millisecond), "redelivered", st.Redelivered, "failed", st.Failed)
			last, lastAt = st.Written, now
		}
	}
}

// collect pulls messages and sends them to out in batches: BatchSize messages, or what arrived
// within MaxWait of a batch's first message. It returns nil when ctx ends, and an error when the
// consumer is gone.
func (in *Ingester) collect(ctx context.Context, out chan<- []jetstream.Msg) error {
	var it jetstream.MessagesContext
	defer func() {
		if it != nil {
			it.Stop()
		}
	}()
	backoff := in.opts.MinBackoff
	batch := make([]jetstream.Msg, 0, in.opts.BatchSize)
	var deadline time.Time
	send := func() bool {
		// While every worker is busy the batch waits here: keep it from redelivery meanwhile.
		t := time.NewTicker(in.opts.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case out <- batch:
				batch = make([]jetstream.Msg, 0, in.opts.BatchSize)
				return true
			case <-ctx.Done():
				return false
			case <-t.C:
				for _, m := range batch {
					_ = m.InProgress()
				}
			}
		}
	}
	for ctx.Err() == nil {
		if it == nil {
			var err error
			it, err = in.cons.Messages(jetstream.PullMaxMessages(in.opts.BatchSize),
				jetstream.PullExpiry(30*time.Second))
			if err != nil {
				if gone(err) {
					return in.goneError(err)
				}
				in.opts.Logger.Warn("auditkit: ingest cannot pull from the stream, retrying", "stream", in.opts.Stream, "error", err, "backoff", backoff)
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, in.opts.MaxBackoff)
				continue
			}
			backoff = in.opts.MinBackoff
		}
		var (
			m   jetstream.Msg
			err error
		)
		if len(batch) == 0 {
			m, err = it.Next(jetstream.NextContext(ctx))
		} else if wait := time.Until(deadline); wait > 0 {
			m, err = it.Next(jetstream.NextMaxWait(wait))
		} else {
			err = nats.ErrTimeout
		}
		switch {
		case err == nil:
			if len(batch) == 0 {
				deadline = time.Now().Add(in.opts.MaxWait)
			}
			batch = append(batch, m)
			if len(batch) == in.opts.BatchSize && !send() {
				return nil
			}
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, nats.ErrTimeout):
			if !send() {
				return nil
			}
		case gone(err):
			return in.goneError(err)
		default:
			// The iterator ended (the connection closed, the server said so): pull anew. The
			// messages of the batch being collected are delivered again after AckWait.
			in.opts.Logger.Warn("auditkit: ingest pull ended, pulling again", "stream", in.opts.Stream, "error", err)
			it.Stop()
			it = nil
			batch = batch[:0]
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, in.opts.MaxBackoff)
		}
	}
	return nil
}

// gone reports whether err says the consumer or its stream no longer exists.
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

func (in *Ingester) goneError(err error) error {
	return fmt.Errorf("natsaudit: consumer %s on stream %s: %w", in.opts.Durable, in.opts.Stream, err)
}

// pending is a message being stored and the record it holds.
type pending struct {
	msg    jetstream.Msg
	rec    *core.Record
	seq    uint64
	stored time.Time
}

// store decodes msgs, stores their records and acknowledges them.
func (in *Ingester) store(ctx context.Context, msgs []jetstream.Msg) {
	in.fetched.Add(uint64(len(msgs)))
	batch := make([]pending, 0, len(msgs))
	for _, m := range msgs {
		p := pending{msg: m}
		if md, err := m.Metadata(); err == nil {
			p.seq, p.stored = md.Sequence.Stream, md.Timestamp
			if md.NumDelivered > 1 {
				in.redelivered.Add(1)
			}
			in.pending.Store(md.NumPending)
		}
		rec, err := core.RecordFromRow(m.Data())
		if err != nil {
			in.terminate(p, fmt.Errorf("the message is not an audit record: %w", err))
			continue
		}
		p.rec = rec
		batch = append(batch, p)
	}
	if len(batch) > 0 {
		in.deliver(ctx, batch)
	}
}

// deliver writes batch through the sink until it is stored, or rejected records are isolated, or
// ctx ends; it acknowledges what was stored.
func (in *Ingester) deliver(ctx context.Context, batch []pending) {
	recs := make([]*core.Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	backoff := in.opts.MinBackoff
	for attempt := 0; ; attempt++ {
		// An attempt under way when ctx ends is finished (within AttemptTimeout) rather than
		// abandoned, so that a shutdown does not leave its batch to be delivered again.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.opts.AttemptTimeout)
		stop := in.keepAlive(batch)
		err := in.opts.Sink.Write(actx, recs)
		stop()
		cancel()
		if err == nil {
			in.committed(batch, attempt)
			return
		}
		var rej *core.RejectedError
		if errors.As(err, &rej) {
			in.isolate(ctx, batch, rej)
			return
		}
		if ctx.Err() != nil {
			return // unacknowledged: delivered again to whichever Ingester runs
		}
		in.retried.Add(1)
		wait := backoff/2 + rand.N(backoff/2+1)
		var unavail *core.UnavailableError
		if errors.As(err, &unavail) {
			wait = in.opts.RecheckInterval
			if attempt == 0 || attempt%10 == 0 {
				in.opts.Logger.Error("auditkit: the database refuses the ingest consumer; messages are kept in the stream until it is fixed",
					"records", len(batch), "error", err, "recheck", wait)
			}
		} else {
			if attempt == 0 || attempt%10 == 0 {
				in.opts.Logger.Warn("auditkit: ingest write failed, retrying", "records", len(batch), "attempt", attempt+1,
					"backoff", wait, "error", err)
			}
			backoff = min(backoff*2, in.opts.MaxBackoff)
		}
		// The batch stays this Ingester's while it is retried.
		for _, p := range batch {
			_ = p.msg.InProgress()
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// keepAlive tells the stream, every third of AckWait until the returned function is called, that
// batch is still being worked on, so that a slow write does not make the stream deliver the
// batch to another Ingester meanwhile.
func (in *Ingester) keepAlive(batch []pending) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(in.opts.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, p := range batch {
					_ = p.msg.InProgress()
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// committed acknowledges a stored batch and counts it.
func (in *Ingester) committed(batch []pending, attempt int) {
	now := time.Now()
	oldest := now
	for _, p := range batch {
		if err := p.msg.Ack(); err != nil {
			// The message is delivered again and the sink skips it: nothing is lost.
			in.opts.Logger.Warn("auditkit: ingest acknowledgement failed; the message will be delivered again", "seq", p.seq, "error", err)
		}
		if !p.stored.IsZero() && p.stored.Before(oldest) {
			oldest = p.stored
		}
	}
	lat := now.Sub(oldest)
	in.latency.Store(int64(lat))
	for {
		m := in.maxLatency.Load()
		if int64(lat) <= m || in.maxLatency.CompareAndSwap(m, int64(lat)) {
			break
		}
	}
	in.lastCommit.Store(now.UnixNano())
	in.written.Add(uint64(len(batch)))
	in.batches.Add(1)
	if attempt > 0 {
		in.opts.Logger.Info("auditkit: ingest write recovered", "records", len(batch), "attempts", attempt+1)
	}
}

// isolate stores what it can of a batch the sink rejected: the named record is terminated and
// the rest stored; without a position the batch is split in halves until the rejected records
// stand alone.
func (in *Ingester) isolate(ctx context.Context, batch []pending, rej *core.RejectedError) {
	if rej.Index >= 0 && rej.Index < len(batch) {
		in.terminate(batch[rej.Index], rej.Err)
		rest := make([]pending, 0, len(batch)-1)
		rest = append(rest, batch[:rej.Index]...)
		rest = append(rest, batch[rej.Index+1:]...)
		if len(rest) > 0 {
			in.deliver(ctx, rest)
		}
		return
	}
	if len(batch) == 1 {
		in.terminate(batch[0], rej.Err)
		return
	}
	mid := len(batch) / 2
	in.deliver(ctx, batch[:mid])
	in.deliver(ctx, batch[mid:])
}

// terminate gives up a message that can never be stored: it is logged, counted and not delivered
// again; the stream keeps it until MaxAge.
func (in *Ingester) terminate(p pending, why error) {
	in.failed.Add(1)
	id := ""
	if p.rec != nil {
		id = p.rec.ID.String()
	}
	in.opts.Logger.Error("auditkit: audit message cannot be stored; it is left in the stream and not delivered again",
		"stream", in.opts.Stream, "seq", p.seq, "subject", p.msg.Subject(), "id", id, "error", why)
	if err := p.msg.Term(); err != nil { // no reason: servers before 2.10 ignore a TERM with one
		in.opts.Logger.Warn("auditkit: terminating an audit message failed; it will be delivered again", "seq", p.seq, "error", err)
	}
}

// sleep waits d, or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backlog is the durable consumer's view of the work left, shared by every Ingester of it.
type Backlog struct {
	Pending    uint64 // messages of the stream not yet delivered to any Ingester
	AckPending int    // messages delivered and not yet acknowledged (being stored, or held by a crashed process until AckWait)
}

// Empty reports whether every message of the stream has been stored and acknowledged.
func (b Backlog) Empty() bool { return b.Pending == 0 && b.AckPending == 0 }

// Backlog asks the server for the durable consumer's backlog.
func (in *Ingester) Backlog(ctx context.Context) (Backlog, error) {
	info, err := in.cons.Info(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("natsaudit: consumer %s on stream %s: %w", in.opts.Durable, in.opts.Stream, err)
	}
	return Backlog{Pending: info.NumPending, AckPending: info.NumAckPending}, nil
}
