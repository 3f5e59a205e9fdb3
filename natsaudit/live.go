package natsaudit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// TenantStatuses answers whether a tenant is suspended; *store.Store is one.
type TenantStatuses interface {
	TenantStatusOf(ctx context.Context, id string) (store.TenantStatus, error)
}

// LiveOptions configure a Live.
type LiveOptions struct {
	// Conn is the connection to NATS. Required; the caller closes it after the Live.
	Conn *nats.Conn
	// Stream is the stream the Sink publishes to. Default DefaultStream.
	Stream string
	// SubjectPrefix is the Sink's subject prefix. Default DefaultSubjectPrefix.
	SubjectPrefix string
	// Buffer is how many records a subscriber may fall behind before its stream is ended with
	// store.ErrLagged. Default 1024, as store.Options.StreamBuffer.
	Buffer int
	// Tenants answers the suspension checks of streams opened with
	// store.SubscribeOptions.EndOnSuspend (the Store that reads the same log). Without it such
	// streams are refused.
	Tenants TenantStatuses
	// StatusInterval is how often those streams check their tenant's status. Default 1s.
	StatusInterval time.Duration
	// Logger receives the messages that cannot be decoded and failed status checks. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Live is a store.LiveSource that follows the stream's subjects: each live stream is an ordered,
// ephemeral JetStream consumer of the subject of its tenant (every tenant's for the all-tenants
// scope) starting at the stream's next message. Records are delivered when they are published,
// before the ingest process stores them, as the Record List returns once they are stored
// (store.RecordOf), and filtered in Go (store.Filter.Match): a filter with a full-text search
// (q) is refused with a *store.ParamError, since only PostgreSQL evaluates it.
//
// Records carry personal values as the application redacted them (the ingest process encrypts
// them when it stores them): a Store with store.Options.PII shows the same values once it
// decrypted them, in documents it re-encodes, and an erased subject's values as erased, which
// this stream cannot know. Give the stream the access control the audit data needs.
//
// A record published twice (a spool replayed after JetStream's duplicate window) is delivered
// once when both copies arrive within the last 4096 records of the stream; the PostgreSQL source
// never delivers a record twice.
type Live struct {
	opts LiveOptions
	js   jetstream.JetStream
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[*liveSub]struct{}
	closed bool

	// decoded shares the records decoded from the last messages between the streams that
	// receive them: an all-tenants stream and a tenant's stream decode each message once.
	decMu   sync.Mutex
	decoded map[uint64]*store.Record
	decRing []uint64
	decNext int
}

// liveDecodedShared is how many decoded messages a Live keeps for its other streams.
const liveDecodedShared = 4096

// decode returns the record of msg, decoded once for every stream that receives it. A shared
// record is used only when its id is the message id the Sink set, so that a stream deleted and
// made again (its sequence numbers start over) never yields another message's record; messages
// without a message id or JetStream metadata are decoded each time.
func (l *Live) decode(msg jetstream.Msg) (*store.Record, error) {
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	meta, err := msg.Metadata()
	if id == "" || err != nil || meta == nil {
		return decodeRecord(msg.Data())
	}
	seq := meta.Sequence.Stream
	l.decMu.Lock()
	r := l.decoded[seq]
	l.decMu.Unlock()
	if r != nil && r.ID.String() == id {
		return r, nil
	}
	if r, err = decodeRecord(msg.Data()); err != nil {
		return nil, err
	}
	l.decMu.Lock()
	defer l.decMu.Unlock()
	if prev, ok := l.decoded[seq]; ok {
		// Another stream decoded the message meanwhile: every stream gets the record stored first.
		if prev.ID.String() == id {
			return prev, nil
		}
		l.decoded[seq] = r
		return r, nil
	}
	if len(l.decRing) < liveDecodedShared {
		l.decRing = append(l.decRing, seq)
	} else {
		delete(l.decoded, l.decRing[l.decNext])
		l.decRing[l.decNext] = seq
		l.decNext = (l.decNext + 1) % len(l.decRing)
	}
	l.decoded[seq] = r
	return r, nil
}

// decodeRecord decodes one message's row into the read side's record.
func decodeRecord(b []byte) (*store.Record, error) {
	rec, err := core.RecordFromRow(b)
	if err != nil {
		return nil, err
	}
	return store.RecordOf(rec)
}

// NewLive returns a Live reading the stream of opts.
func NewLive(opts LiveOptions) (*Live, error) {
	if opts.Conn == nil {
		return nil, errors.New("natsaudit: NewLive: nil NATS connection")
	}
	if opts.Stream == "" {
		opts.Stream = DefaultStream
	}
	if opts.SubjectPrefix == "" {
		opts.SubjectPrefix = DefaultSubjectPrefix
	}
	if err := checkName("stream", opts.Stream); err != nil {
		return nil, err
	}
	if err := checkPrefix(opts.SubjectPrefix); err != nil {
		return nil, err
	}
	switch {
	case opts.Buffer < 0:
		return nil, fmt.Errorf("natsaudit: NewLive: negative Buffer %d", opts.Buffer)
	case opts.Buffer == 0:
		opts.Buffer = 1024
	}
	switch {
	case opts.StatusInterval < 0:
		return nil, fmt.Errorf("natsaudit: NewLive: negative StatusInterval %s", opts.StatusInterval)
	case opts.StatusInterval == 0:
		opts.StatusInterval = time.Second
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("natsaudit: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Live{opts: opts, js: js, log: log, subs: map[*liveSub]struct{}{}, decoded: map[uint64]*store.Record{}}, nil
}

// SubscribeLive starts a live stream of the records in sc that match f and are published from
// now on. It ends when ctx ends, when it is closed, when its consumer falls more than
// LiveOptions.Buffer records behind (store.ErrLagged), when the consumer stops for good
// (store.ErrInterrupted), with o.EndOnSuspend when the tenant is suspended
// (store.ErrTenantSuspended), or when the Live is closed (store.ErrClosed).
func (l *Live) SubscribeLive(ctx context.Context, sc store.Scope, f store.Filter, o store.SubscribeOptions) (store.LiveStream, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := f.CanMatch(); err != nil {
		return nil, err
	}
	watch := o.EndOnSuspend && !sc.AllTenants
	if watch && l.opts.Tenants == nil {
		return nil, errors.New("natsaudit: a stream that ends when its tenant is suspended needs LiveOptions.Tenants")
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, store.ErrClosed
	}
	subject := l.opts.SubjectPrefix + ".>"
	if !sc.AllTenants {
		subject = Subject(l.opts.SubjectPrefix, sc.TenantID)
	}
	// Start at the stream's next message rather than with DeliverNewPolicy: an ordered consumer
	// re-created after a lost connection then resumes there even before its first message.
	s, err := l.js.Stream(ctx, l.opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("natsaudit: live stream: stream %s: %w", l.opts.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsaudit: live stream: stream %s: %w", l.opts.Stream, err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
		// The server drops a consumer left behind by a process that died after this long.
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("natsaudit: live stream: consumer of %s: %w", subject, err)
	}
	ch := make(chan *store.Record, l.opts.Buffer)
	sub := &liveSub{l: l, scope: sc, filter: f, ch: ch, done: make(chan struct{}), seen: newIDRing(4096)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, store.ErrClosed
	}
	l.subs[sub] = struct{}{}
	l.mu.Unlock()
	cc, err := cons.Consume(sub.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		l.log.Debug("natsaudit: live stream consumer", "subject", subject, "error", err)
	}))
	if err != nil {
		sub.end(nil)
		go l.release(nil, cons)
		return nil, fmt.Errorf("natsaudit: live stream: consuming %s: %w", subject, err)
	}
	sub.mu.Lock()
	sub.cc, sub.cons = cc, cons
	ended := sub.ended
	sub.mu.Unlock()
	if ended {
		go l.release(cc, cons)
		return sub, nil
	}
	stop := context.AfterFunc(ctx, func() { sub.end(ctx.Err()) })
	go sub.watch(cc, stop, watch)
	return sub, nil
}

// release stops consuming and deletes the consumer: stopping leaves it on the server until its
// inactivity limit.
func (l *Live) release(cc jetstream.ConsumeContext, cons jetstream.Consumer) {
	if cc != nil {
		cc.Stop()
	}
	if info := cons.CachedInfo(); info != nil && !l.opts.Conn.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.js.DeleteConsumer(ctx, l.opts.Stream, info.Name)
	}
}

// Close ends every live stream with store.ErrClosed and refuses new ones.
func (l *Live) Close() {
	l.mu.Lock()
	l.closed = true
	subs := make([]*liveSub, 0, len(l.subs))
	for s := range l.subs {
		subs = append(subs, s)
	}
	l.mu.Unlock()
	for _, s := range subs {
		s.end(store.ErrClosed)
	}
}

// liveSub is one live stream.
type liveSub struct {
	l      *Live
	scope  store.Scope
	filter store.Filter

	mu    sync.Mutex
	ch    chan *store.Record
	cc    jetstream.ConsumeContext
	cons  jetstream.Consumer
	ended bool
	err   error
	done  chan struct{}
	seen  *idRing
	bad   bool // a malformed message was logged
}

func (s *liveSub) Records() <-chan *store.Record { return s.ch }

func (s *liveSub) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *liveSub) Close() { s.end(nil) }

// end ends the stream once, with err.
func (s *liveSub) end(err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.err = err
	close(s.ch)
	close(s.done)
	cc, cons := s.cc, s.cons
	s.mu.Unlock()
	if cc != nil {
		// Not inline: end may run on the consumer's own goroutine.
		go s.l.release(cc, cons)
	}
	s.l.mu.Lock()
	delete(s.l.subs, s)
	s.l.mu.Unlock()
}

// handle decodes, filters and delivers one message without blocking.
func (s *liveSub) handle(msg jetstream.Msg) {
	r, err := s.l.decode(msg)
	if err != nil {
		s.mu.Lock()
		first := !s.bad
		s.bad = true
		s.mu.Unlock()
		if first {
			s.l.log.Warn("natsaudit: the live stream skips a message that is not an audit record", "subject", msg.Subject(), "error", err)
		}
		return
	}
	// The subject names the tenant; the record's own tenant decides, so that a message published
	// on another tenant's subject never reaches this tenant.
	if !s.scope.Contains(r) || !s.filter.Match(r) {
		return
	}
	s.mu.Lock()
	if s.ended || !s.seen.add(r.ID) {
		s.mu.Unlock()
		return
	}
	select {
	case s.ch <- r:
		s.mu.Unlock()
		return
	default:
	}
	s.mu.Unlock()
	s.end(store.ErrLagged)
}

// watch ends the stream when its consumer stops for good, and with watchStatus when its tenant
// is suspended.
func (s *liveSub) watch(cc jetstream.ConsumeContext, stop func() bool, watchStatus bool) {
	defer stop()
	var tick <-chan time.Time
	if watchStatus {
		t := time.NewTicker(s.l.opts.StatusInterval)
		defer t.Stop()
		tick = t.C
		if s.suspended() {
			s.end(store.ErrTenantSuspended)
			return
		}
	}
	for {
		select {
		case <-s.done:
			return
		case <-cc.Closed():
			s.end(store.ErrInterrupted)
			return
		case <-tick:
			if s.suspended() {
				s.end(store.ErrTenantSuspended)
				return
			}
		}
	}
}

func (s *liveSub) suspended() bool {
	ctx, cancel := context.WithTimeout(context.Background(), max(s.l.opts.StatusInterval, 5*time.Second))
	defer cancel()
	st, err := s.l.opts.Tenants.TenantStatusOf(ctx, s.scope.TenantID)
	if err != nil {
		if !errors.Is(err, store.ErrTenantUnknown) {
			s.l.log.Warn("natsaudit: checking the status of a streamed tenant failed", "tenant", s.scope.TenantID, "error", err)
		}
		return false
	}
	return st == store.TenantSuspended
}

// idRing remembers the last ids delivered.
type idRing struct {
	ids  map[uuid.UUID]struct{}
	ring []uuid.UUID
	next int
}

func newIDRing(n int) *idRing {
	return &idRing{ids: make(map[uuid.UUID]struct{}, n), ring: make([]uuid.UUID, 0, n)}
}

// add reports whether id is new, remembering it.
func (r *idRing) add(id uuid.UUID) bool {
	if _, ok := r.ids[id]; ok {
		return false
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, id)
	} else {
		delete(r.ids, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % len(r.ring)
	}
	r.ids[id] = struct{}{}
	return true
}
