package natsaudit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
)

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Stream is the stream the records must land in: a publish the server routes elsewhere (or
	// nowhere) fails. Default DefaultStream.
	Stream string
	// SubjectPrefix is the first token(s) of the subjects records are published on (see
	// Subject). Default DefaultSubjectPrefix; the stream must take prefix + ".>".
	SubjectPrefix string
	// MaxInFlight bounds the messages of one Write published and not yet acknowledged by the
	// stream. Default 1024.
	MaxInFlight int
	// AckTimeout bounds the wait for one message's acknowledgement. Default 5s.
	AckTimeout time.Duration
	// ReconnectGrace is how long Write waits for a lost connection to come back (the client
	// moving to another server of a cluster, a server restarting) before it reports the sink
	// unavailable. Default 2s; keep it below WriterOptions.AttemptTimeout.
	ReconnectGrace time.Duration
}

func (o SinkOptions) withDefaults() SinkOptions {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.ReconnectGrace <= 0 {
		o.ReconnectGrace = 2 * time.Second
	}
	return o
}

// Sink is a core.Sink that publishes records to a JetStream stream. Write publishes a batch
// asynchronously, at most MaxInFlight messages ahead of their acknowledgements, and returns when
// the stream has acknowledged every message: the records are then stored by JetStream (on
// Replicas servers). Each message's id is the record's id, so a batch written again after a
// failure, or replayed from the writer's spool, is dropped by the stream's duplicate window
// rather than stored twice.
//
// Write reports a *core.UnavailableError when the connection is closed, or down for longer than
// ReconnectGrace, or when no stream takes the subjects (the stream is missing, or JetStream is
// not enabled): a writer with a spool keeps the
// records on disk and tries again every WriterOptions.RecheckInterval, and Close leaves them in
// the spool for the next start. A record larger than the server's or stream's message size limit
// is a *core.RejectedError; every other error (a lost acknowledgement, a timeout during a
// cluster's leader election) is transient and the writer retries the batch.
type Sink struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	opts   SinkOptions
	prefix string

	published, duplicates atomic.Uint64
}

// SinkStats are a Sink's counters since it was created.
type SinkStats struct {
	Published  uint64 // messages the stream acknowledged as new
	Duplicates uint64 // messages the stream acknowledged as duplicates of one it already had
}

// NewSink returns a Sink publishing on nc. The caller keeps ownership of nc and closes it after
// the writer; give nc a reconnect policy that never gives up (nats.MaxReconnects(-1)), so that a
// long outage does not close it for good.
func NewSink(nc *nats.Conn, opts SinkOptions) (*Sink, error) {
	if nc == nil {
		return nil, errors.New("natsaudit: NewSink: nil NATS connection")
	}
	opts = opts.withDefaults()
	if err := checkName("stream", opts.Stream); err != nil {
		return nil, err
	}
	if err := checkPrefix(opts.SubjectPrefix); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout),
		// Write bounds its own window; the connection's covers all the Writer's workers.
		jetstream.WithPublishAsyncMaxPending(4*opts.MaxInFlight))
	if err != nil {
		return nil, fmt.Errorf("natsaudit: %w", err)
	}
	return &Sink{nc: nc, js: js, opts: opts, prefix: opts.SubjectPrefix + "."}, nil
}

// TakesRows makes the sink a core.RowSink: it publishes each record's row as AppendRecordRow
// writes it, and reads no map of the record, so the Writer hands it rows redacted and encoded
// in one pass.
func (s *Sink) TakesRows() {}

var _ core.RowSink = (*Sink)(nil)

// Stats returns the current counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{Published: s.published.Load(), Duplicates: s.duplicates.Load()}
}

// Write publishes recs and returns when the stream has acknowledged all of them. See Sink.
func (s *Sink) Write(ctx context.Context, recs []*core.Record) error {
	if !s.nc.IsConnected() {
		if err := s.awaitConnection(ctx); err != nil {
			return err
		}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(recs))
	waited := 0
	wait := func() error {
		f := futures[waited]
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				s.duplicates.Add(1)
			} else {
				s.published.Add(1)
			}
		case err := <-f.Err():
			return s.classify(waited, err)
		case <-ctx.Done():
			return fmt.Errorf("natsaudit: waiting for the stream's acknowledgements: %w", ctx.Err())
		}
		waited++
		return nil
	}
	for i, r := range recs {
		data, err := core.AppendRecordRow(nil, r)
		if err != nil {
			return &core.RejectedError{Index: i, Err: err}
		}
		if int64(len(data)) > s.nc.MaxPayload()-256 {
			return &core.RejectedError{Index: i, Err: fmt.Errorf("natsaudit: record %s is %d bytes encoded, over the server's message limit of %d", r.ID, len(data), s.nc.MaxPayload())}
		}
		for len(futures)-waited >= s.opts.MaxInFlight {
			if err := wait(); err != nil {
				return err
			}
		}
		m := &nats.Msg{
			Subject: s.prefix + TenantToken(r.Tenant.ID),
			Data:    data,
			Header: nats.Header{
				jetstream.MsgIDHeader:          []string{r.ID.String()},
				jetstream.ExpectedStreamHeader: []string{s.opts.Stream},
			},
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return s.classify(i, err)
		}
		futures = append(futures, f)
	}
	for waited < len(futures) {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// awaitConnection waits up to ReconnectGrace for the connection to come back. It returns a
// *core.UnavailableError when the connection is closed or stays down, and ctx's error when ctx
// ends first.
func (s *Sink) awaitConnection(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	grace := time.NewTimer(s.opts.ReconnectGrace)
	defer grace.Stop()
	for !s.nc.IsConnected() {
		if s.nc.IsClosed() {
			return &core.UnavailableError{Err: errors.New("natsaudit: the NATS connection is closed")}
		}
		select {
		case <-t.C:
		case <-grace.C:
			return &core.UnavailableError{Err: fmt.Errorf("natsaudit: the NATS connection is %s (for more than %s)", s.nc.Status(), s.opts.ReconnectGrace)}
		case <-ctx.Done():
			return fmt.Errorf("natsaudit: waiting for the NATS connection: %w", ctx.Err())
		}
	}
	return nil
}

// classify turns a publish error of the record at index i into the error the Writer acts on.
func (s *Sink) classify(i int, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return &core.RejectedError{Index: i, Err: err}
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// No stream took the message: the stream is missing (or JetStream is off), which needs an
		// operator, or its servers are electing a new leader, which passes.
		if missing := s.streamMissing(); missing != nil {
			return &core.UnavailableError{Err: fmt.Errorf("natsaudit: no JetStream stream takes %s*: %w", s.prefix, missing)}
		}
		return fmt.Errorf("natsaudit: stream %s did not answer (electing a leader?): %w", s.opts.Stream, err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining), s.nc.IsClosed():
		return &core.UnavailableError{Err: fmt.Errorf("natsaudit: the NATS connection is %s: %w", s.nc.Status(), err)}
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamNotMatch:
		return &core.UnavailableError{Err: fmt.Errorf("natsaudit: subject %s* is not bound to stream %s: %w", s.prefix, s.opts.Stream, err)}
	}
	return fmt.Errorf("natsaudit: publish: %w", err)
}

// errCodeStreamNotMatch is JetStream's error code for a message whose Nats-Expected-Stream header
// names another stream than the one its subject is bound to.
const errCodeStreamNotMatch jetstream.ErrorCode = 10060

// streamMissing asks the JetStream API for the stream and returns why it cannot take messages
// when the answer says so (the stream does not exist, JetStream is not enabled); nil when it
// exists or the question goes unanswered.
func (s *Sink) streamMissing() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := s.js.Stream(ctx, s.opts.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s does not exist (create it with natsaudit.EnsureStream or auditkit ingest -create-stream): %w", s.opts.Stream, err)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("JetStream is not enabled on the server (start nats-server with -js): %w", err)
	}
	return nil
}
