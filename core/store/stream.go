package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Live streams.
//
// Writers in any process insert into audit_logs; the statement-level trigger of migration 0002
// sends one NOTIFY per statement on channel notifyChannel, naming per tenant the occurred_at and
// id ranges of the rows it inserted — but only while some process has registered a listener in
// audit_stream_listeners, so writers pay nothing when nobody watches. A Store with subscribers
// holds one dedicated connection that LISTENs, merges the announced ranges, and re-queries them
// per distinct (scope, filter) with the same SQL as List. Rows commit in a different order than
// they were inserted, and one range can cover rows of several statements, so every round may see
// rows again: each group remembers the ids it delivered and drops repeats. Delivery to a
// subscriber never blocks: a subscriber whose buffer is full is ended with ErrLagged, so a slow
// consumer slows neither the writers nor the other subscribers.

// ErrLagged ends a subscription whose consumer fell more than Options.StreamBuffer records
// behind. Records it missed can be read with List over the time since its last record.
var ErrLagged = errors.New("store: the stream consumer fell behind and was disconnected; reconnect and catch up with a query")

// ErrInterrupted ends the subscriptions whose new records could not be read (the database failed
// a query), so that their consumers know to catch up with List rather than miss records silently.
var ErrInterrupted = errors.New("store: the stream could not read new records and was ended; reconnect and catch up with a query")

const (
	notifyChannel     = "auditkit_logs"
	listenerTTL       = 60 * time.Second
	listenerHeartbeat = 20 * time.Second
	streamPage        = 1000
	streamSeen        = 1 << 16
	maxRangesPerQuery = 100
	gapMargin         = 10 * time.Second
)

// Subscription is a live stream of new records. Receive from C until it is closed, then read
// Err. Records are shared between subscribers and must not be modified.
type Subscription struct {
	// C delivers the new records that match the subscription's scope and filter, each once. It is
	// closed when the subscription ends.
	C <-chan *Record

	ch chan *Record
	h  *hub
	// tenant is set for a subscription that ends when its tenant is suspended.
	tenant string
	g      *group
	err    error
	ended  bool
	stop   func() bool
}

// Err returns why the subscription ended: nil after Close, ctx's error, ErrLagged,
// ErrInterrupted, ErrTenantSuspended (SubscribeOptions.EndOnSuspend), or ErrClosed when the Store
// was closed. It returns nil while the subscription runs.
func (sub *Subscription) Err() error {
	sub.h.mu.Lock()
	defer sub.h.mu.Unlock()
	return sub.err
}

// Close ends the subscription.
func (sub *Subscription) Close() {
	sub.h.mu.Lock()
	defer sub.h.mu.Unlock()
	sub.h.endLocked(sub, nil)
}

// Subscribe starts a live stream of the records in scope that match f and are inserted from now
// on, by this process or any other. It ends when ctx ends, when Close is called, when the
// consumer falls behind (ErrLagged), or when the Store is closed.
func (s *Store) Subscribe(ctx context.Context, sc Scope, f Filter) (*Subscription, error) {
	return s.SubscribeWith(ctx, sc, f, SubscribeOptions{})
}

// SubscribeOptions adjust a subscription; the zero value is Subscribe's.
type SubscribeOptions struct {
	// EndOnSuspend ends a subscription to one tenant's records with ErrTenantSuspended when that
	// tenant is suspended, by this process or any other, within about
	// Options.StreamStatusInterval; a tenant already suspended ends it at the first check. It is
	// for streams opened by the tenant's own users, whom a suspension shuts out (platform
	// administrators keep access). It has no effect on the all-tenants scope.
	EndOnSuspend bool
}

// SubscribeWith is Subscribe with options.
func (s *Store) SubscribeWith(ctx context.Context, sc Scope, f Filter, o SubscribeOptions) (*Subscription, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f.normalize()
	if s.closed() {
		return nil, ErrClosed
	}
	s.hubOnce.Do(func() { s.hub = newHub(s) })
	if s.hub == nil {
		return nil, ErrClosed
	}
	tenant := ""
	if o.EndOnSuspend && !sc.AllTenants {
		tenant = sc.TenantID
	}
	return s.hub.subscribe(ctx, sc, f, tenant)
}

// srange is the part of the table a notification announced: the rows of one tenant (or of every
// tenant, after a gap) within an occurred_at range and an id range.
type srange struct {
	tenant     *string // nil: rows without a tenant
	anyTenant  bool    // a catch-up after a gap: every tenant
	loAt, hiAt time.Time
	loID, hiID uuid.UUID
}

func (r *srange) merge(o srange) {
	if o.loAt.Before(r.loAt) {
		r.loAt = o.loAt
	}
	if o.hiAt.After(r.hiAt) {
		r.hiAt = o.hiAt
	}
	if uuidLess(o.loID, r.loID) {
		r.loID = o.loID
	}
	if uuidLess(r.hiID, o.hiID) {
		r.hiID = o.hiID
	}
}

func uuidLess(a, b uuid.UUID) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// group is the subscribers of one scope and filter.
type group struct {
	key    string
	scope  Scope
	filter Filter
	subs   map[*Subscription]struct{}
	seen   *seenSet
}

// seenSet remembers the last ids delivered, in insertion order.
type seenSet struct {
	ids  map[uuid.UUID]struct{}
	ring []uuid.UUID
	next int
}

func newSeenSet(n int) *seenSet {
	return &seenSet{ids: make(map[uuid.UUID]struct{}, n), ring: make([]uuid.UUID, 0, n)}
}

// add reports whether id is new, remembering it.
func (s *seenSet) add(id uuid.UUID) bool {
	if _, ok := s.ids[id]; ok {
		return false
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, id)
	} else {
		delete(s.ids, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % len(s.ring)
	}
	s.ids[id] = struct{}{}
	return true
}

type hub struct {
	s      *Store
	id     uuid.UUID
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	regMu      sync.Mutex // serialises registration changes and the LISTEN connection's start
	registered bool
	listening  chan struct{} // closed once the first LISTEN succeeded

	mu      sync.Mutex
	groups  map[string]*group
	nsubs   int
	pending map[string]*srange
	closed  bool
	// watched holds the subscriptions that end when their tenant is suspended.
	watched map[*Subscription]struct{}
}

func newHub(s *Store) *hub {
	ctx, cancel := context.WithCancel(s.life)
	return &hub{
		s:         s,
		id:        uuid.New(),
		ctx:       ctx,
		cancel:    cancel,
		wake:      make(chan struct{}, 1),
		groups:    map[string]*group{},
		pending:   map[string]*srange{},
		watched:   map[*Subscription]struct{}{},
		listening: make(chan struct{}),
	}
}

func (h *hub) subscribe(ctx context.Context, sc Scope, f Filter, tenant string) (*Subscription, error) {
	if err := h.start(ctx); err != nil {
		return nil, err
	}
	key := sc.String() + "\x00" + f.canonical()
	ch := make(chan *Record, h.s.opts.StreamBuffer)
	sub := &Subscription{C: ch, ch: ch, h: h, tenant: tenant}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	g := h.groups[key]
	if g == nil {
		g = &group{key: key, scope: sc, filter: f, subs: map[*Subscription]struct{}{}, seen: newSeenSet(streamSeen)}
		h.groups[key] = g
	}
	g.subs[sub] = struct{}{}
	sub.g = g
	h.nsubs++
	if tenant != "" {
		h.watched[sub] = struct{}{}
	}
	h.mu.Unlock()

	// Writers notify only while a listener is registered: register before returning, so that
	// every statement that inserts after Subscribe returns is announced.
	if err := h.register(ctx); err != nil {
		sub.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.endLocked(sub, ctx.Err())
	})
	// Under h.mu: the background goroutines may end the subscription meanwhile (a suspension,
	// a lagging consumer) and read sub.stop when they do.
	h.mu.Lock()
	ended := sub.ended
	if !ended {
		sub.stop = stop
	}
	h.mu.Unlock()
	if ended {
		stop()
	}
	return sub, nil
}

// endLocked ends a subscription once. h.mu is held.
func (h *hub) endLocked(sub *Subscription, err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	sub.err = err
	close(sub.ch)
	if sub.stop != nil {
		sub.stop()
	}
	delete(h.watched, sub)
	if g := sub.g; g != nil {
		delete(g.subs, sub)
		if len(g.subs) == 0 {
			delete(h.groups, g.key)
		}
	}
	h.nsubs--
}

// start opens the LISTEN connection and the background goroutines once.
func (h *hub) start(ctx context.Context) error {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	select {
	case <-h.listening:
		return nil
	default:
	}
	if h.ctx.Err() != nil {
		return ErrClosed
	}
	conn, err := h.connect(ctx)
	if err != nil {
		return fmt.Errorf("store: starting the live stream listener: %w", err)
	}
	close(h.listening)
	h.wg.Add(4)
	go h.listen(conn)
	go h.process()
	go h.heartbeat()
	go h.watchStatus()
	return nil
}

func (h *hub) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, h.s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// register makes sure this hub's listener row exists and is fresh.
func (h *hub) register(ctx context.Context) error {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	if h.registered {
		return nil
	}
	if err := h.upsertListener(ctx); err != nil {
		return fmt.Errorf("store: registering the live stream listener: %w", err)
	}
	h.registered = true
	return nil
}

func (h *hub) upsertListener(ctx context.Context) error {
	_, err := h.s.pool.Exec(ctx, `INSERT INTO `+h.s.listeners+` (id, expires_at) VALUES ($1, now() + $2::interval)
		ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at`, h.id, fmt.Sprintf("%d seconds", int(listenerTTL/time.Second)))
	return err
}

// heartbeat keeps the listener row fresh while there are subscribers and removes it when there
// are none, so that writers stop notifying.
func (h *hub) heartbeat() {
	defer h.wg.Done()
	t := time.NewTicker(listenerHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		// Count under regMu: a subscriber counts itself before it registers, so a registration
		// cannot slip between this count and the DELETE below.
		h.regMu.Lock()
		h.mu.Lock()
		n := h.nsubs
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		switch {
		case n > 0:
			if err := h.upsertListener(ctx); err != nil {
				h.s.log.Warn("auditkit: refreshing the live stream listener failed", "error", err)
			} else if !h.registered {
				h.registered = true
			}
		case h.registered:
			if _, err := h.s.pool.Exec(ctx, `DELETE FROM `+h.s.listeners+` WHERE id = $1 OR expires_at < now()`, h.id); err == nil {
				h.registered = false
			}
		}
		cancel()
		h.regMu.Unlock()
	}
}

// watchStatus ends the subscriptions of EndOnSuspend whose tenant is suspended. Polling the
// registry (one indexed query per interval, only while such subscriptions exist) sees a
// suspension made by any process or tool, not only by this Store's UpdateTenant.
func (h *hub) watchStatus() {
	defer h.wg.Done()
	t := time.NewTicker(h.s.opts.StreamStatusInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		seen := map[string]bool{}
		var ids []string
		for sub := range h.watched {
			if !seen[sub.tenant] {
				seen[sub.tenant] = true
				ids = append(ids, sub.tenant)
			}
		}
		h.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(h.ctx, max(h.s.opts.StreamStatusInterval, 5*time.Second))
		rows, err := h.s.pool.Query(ctx, `SELECT id FROM `+h.s.tenants+` WHERE id = ANY($1::text[]) AND status = 'suspended'`, ids)
		var suspended []string
		if err == nil {
			suspended, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		cancel()
		if err != nil {
			if h.ctx.Err() == nil {
				h.s.log.Warn("auditkit: checking the status of streamed tenants failed", "error", err)
			}
			continue
		}
		if len(suspended) == 0 {
			continue
		}
		h.mu.Lock()
		for sub := range h.watched {
			for _, id := range suspended {
				if sub.tenant == id {
					h.endLocked(sub, ErrTenantSuspended)
					break
				}
			}
		}
		h.mu.Unlock()
	}
}

// listen receives notifications and records the announced ranges; it reconnects when the
// connection is lost and then announces a catch-up over the time it was away.
func (h *hub) listen(conn *pgx.Conn) {
	defer h.wg.Done()
	defer func() {
		if conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn.Close(ctx)
			cancel()
		}
	}()
	lastHeard := time.Now()
	backoff := 100 * time.Millisecond
	for {
		if conn == nil {
			var err error
			conn, err = h.connect(h.ctx)
			if err != nil {
				if h.ctx.Err() != nil {
					return
				}
				h.s.log.Warn("auditkit: live stream listener cannot reconnect", "error", err, "retry_in", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-h.ctx.Done():
					t.Stop()
					return
				}
				backoff = min(backoff*2, 10*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			// Rows committed while the connection was down were announced to nobody: look at every
			// id made since shortly before the last notification (ids are UUIDv7; the upper bound
			// leaves room for writers whose clocks run ahead).
			h.addRange(srange{anyTenant: true, loID: uuidAt(lastHeard.Add(-gapMargin), false), hiID: uuidAt(time.Now().Add(time.Hour), true)})
		}
		n, err := conn.WaitForNotification(h.ctx)
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			h.s.log.Warn("auditkit: live stream listener lost its connection", "error", err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(ctx)
			cancel()
			conn = nil
			continue
		}
		lastHeard = time.Now()
		h.notification(n.Payload)
	}
}

// uuidAt returns the smallest UUIDv7 of the millisecond of t, or with last the largest.
func uuidAt(t time.Time, last bool) uuid.UUID {
	var id uuid.UUID
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (40 - 8*i))
	}
	if last {
		for i := 6; i < len(id); i++ {
			id[i] = 0xff
		}
	}
	return id
}

// notification parses one payload: {"s": schema, "r": [[tenant, loAt, hiAt, loID, hiID], ...]}
// with times in Unix microseconds.
func (h *hub) notification(payload string) {
	var p struct {
		S string              `json:"s"`
		R [][]json.RawMessage `json:"r"`
	}
	if err := json.Unmarshal([]byte(payload), &p); err != nil || p.S != h.s.schema {
		return
	}
	for _, e := range p.R {
		if len(e) != 5 {
			continue
		}
		var r srange
		var tenant *string
		var loAt, hiAt int64
		var loID, hiID string
		if json.Unmarshal(e[0], &tenant) != nil || json.Unmarshal(e[1], &loAt) != nil ||
			json.Unmarshal(e[2], &hiAt) != nil || json.Unmarshal(e[3], &loID) != nil || json.Unmarshal(e[4], &hiID) != nil {
			continue
		}
		var err1, err2 error
		r.loID, err1 = uuid.Parse(loID)
		r.hiID, err2 = uuid.Parse(hiID)
		if err1 != nil || err2 != nil {
			continue
		}
		r.tenant = tenant
		r.loAt, r.hiAt = time.UnixMicro(loAt).UTC(), time.UnixMicro(hiAt).UTC()
		h.addRange(r)
	}
}

func rangeKey(r srange) string {
	switch {
	case r.anyTenant:
		return "\x00*"
	case r.tenant == nil:
		return "\x00null"
	}
	return *r.tenant
}

func (h *hub) addRange(r srange) {
	h.mu.Lock()
	k := rangeKey(r)
	if cur := h.pending[k]; cur != nil {
		cur.merge(r)
	} else {
		h.pending[k] = &r
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// process answers announcements: for each group with subscribers, it queries the announced ranges
// that concern it and delivers the rows not delivered before.
func (h *hub) process() {
	defer h.wg.Done()
	for {
		select {
		case <-h.wake:
		case <-h.ctx.Done():
			return
		}
		for {
			h.mu.Lock()
			pending := h.pending
			h.pending = map[string]*srange{}
			groups := make([]*group, 0, len(h.groups))
			for _, g := range h.groups {
				groups = append(groups, g)
			}
			h.mu.Unlock()
			if len(pending) == 0 {
				break
			}
			for _, g := range groups {
				if err := h.serve(g, pending); err != nil {
					if h.ctx.Err() != nil {
						return
					}
					h.s.log.Warn("auditkit: live stream query failed; its subscribers are disconnected", "error", err)
					h.mu.Lock()
					for sub := range g.subs {
						h.endLocked(sub, ErrInterrupted)
					}
					h.mu.Unlock()
				}
			}
		}
	}
}

// serve queries and delivers one group's share of the pending ranges.
func (h *hub) serve(g *group, pending map[string]*srange) error {
	var ranges []srange
	if gap := pending["\x00*"]; gap != nil {
		ranges = append(ranges, *gap)
	}
	if g.scope.AllTenants {
		for k, r := range pending {
			if k != "\x00*" {
				ranges = append(ranges, *r)
			}
		}
	} else if r := pending[g.scope.TenantID]; r != nil {
		ranges = append(ranges, *r)
	}
	for len(ranges) > 0 {
		n := min(len(ranges), maxRangesPerQuery)
		if err := h.serveRanges(g, ranges[:n]); err != nil {
			return err
		}
		ranges = ranges[n:]
	}
	return nil
}

func (h *hub) serveRanges(g *group, ranges []srange) error {
	var after *position
	for {
		var b sqlBuilder
		b.w("SELECT ", selectColumns, " FROM ", h.s.logs)
		h.s.where(&b, g.scope, g.filter)
		b.w(" AND (")
		for i, r := range ranges {
			if i > 0 {
				b.w(" OR ")
			}
			b.w("(TRUE")
			switch {
			case r.anyTenant:
			case r.tenant == nil:
				b.w(" AND tenant_id IS NULL")
			default:
				b.w(" AND tenant_id = ", b.arg(*r.tenant))
			}
			if !r.loAt.IsZero() {
				b.w(" AND occurred_at BETWEEN ", b.arg(r.loAt), " AND ", b.arg(r.hiAt))
			}
			b.w(" AND id BETWEEN ", b.arg(r.loID), " AND ", b.arg(r.hiID), ")")
		}
		b.w(")")
		if after != nil {
			b.w(" AND (occurred_at, id) > (", b.arg(after.at), ", ", b.arg(after.id), ")")
		}
		b.w(" ORDER BY occurred_at, id LIMIT ", b.arg(streamPage))
		var recs []*Record
		err := h.s.scoped(h.ctx, g.scope, func(db querier) error {
			var err error
			if recs, err = queryRecords(h.ctx, db, recs, b.sb.String(), append([]any{customPlan}, b.args...)...); err != nil {
				return err
			}
			return h.s.decryptRecords(h.ctx, db, recs...)
		})
		if err != nil {
			return err
		}
		if !h.deliver(g, recs) || len(recs) < streamPage {
			return nil
		}
		last := recs[len(recs)-1]
		after = &position{at: last.OccurredAt, id: last.ID}
	}
}

// deliver hands new records to the group's subscribers without blocking; it reports whether the
// group still has subscribers.
func (h *hub) deliver(g *group, recs []*Record) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range recs {
		if !g.seen.add(r.ID) {
			continue
		}
		for sub := range g.subs {
			select {
			case sub.ch <- r:
			default:
				h.endLocked(sub, ErrLagged)
			}
		}
	}
	return len(g.subs) > 0
}

// close ends every subscription and stops the hub.
func (h *hub) close() {
	h.cancel()
	h.wg.Wait()
	h.mu.Lock()
	h.closed = true
	for _, g := range h.groups {
		for sub := range g.subs {
			h.endLocked(sub, ErrClosed)
		}
	}
	h.mu.Unlock()
	h.regMu.Lock()
	defer h.regMu.Unlock()
	if h.registered {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = h.s.pool.Exec(ctx, `DELETE FROM `+h.s.listeners+` WHERE id = $1`, h.id)
		h.registered = false
	}
}
