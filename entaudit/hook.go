package entaudit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"entgo.io/ent"
	"entgo.io/ent/dialect"

	"github.com/auditkit/auditkit/core"
)

// Errors that describe a set-up the hook cannot audit fully. Check and Options.Validate return
// them at start-up; an audited write never fails with them: the hook logs them once and records
// what it can.
var (
	// ErrNoTransaction is reported for a client whose driver is not wrapped with Driver: an update
	// or delete outside an ent.Tx then has no transaction in which to lock its before image, so
	// its records are made from an unlocked read and flagged before_unlocked.
	ErrNoTransaction = errors.New("entaudit: update or delete outside a transaction on a driver not wrapped with entaudit.Driver")
	// ErrDialect is reported for a database other than PostgreSQL: its changes are not recorded.
	ErrDialect = errors.New("entaudit: only PostgreSQL is supported")
	// ErrSchema is reported when the Schema given to Hook is nil or does not describe a mutation:
	// its changes are not recorded.
	ErrSchema = errors.New("entaudit: the schema does not describe this mutation")
)

// Check reports whether drv, the driver an audited client is created with, lets the hook record
// every change exactly: it must be a PostgreSQL driver wrapped with Driver (ent's Debug wrapper
// may go around it). Call it at start-up, where a set-up error can stop the program:
//
//	drv := entaudit.Driver(entsql.OpenDB(dialect.Postgres, db))
//	if err := entaudit.Check(drv); err != nil {
//		return err
//	}
//
// The hook makes the same check on the first mutation and logs its result once; it never fails a
// write because of it.
func Check(drv dialect.Driver) error {
	if drv == nil {
		return fmt.Errorf("%w: the driver is nil", ErrNoTransaction)
	}
	if drv.Dialect() != dialect.Postgres {
		return fmt.Errorf("%w (the driver's dialect is %q)", ErrDialect, drv.Dialect())
	}
	if unwrap(drv) == nil {
		return fmt.Errorf("%w (the driver is a %T)", ErrNoTransaction, drv)
	}
	return nil
}

// Hook returns the ent hook that records every change of every audited type of s. Register it
// once, on the whole client:
//
//	client.Use(entaudit.Hook(ent.AuditSchema, entaudit.Options{Writer: w}))
//
// For each create, update and delete it reads the affected rows from the database inside the
// transaction that makes the change: before images locked before the write (FOR NO KEY UPDATE
// for an update, FOR UPDATE for a delete), after images once the write ran. It records one row
// per affected database row, and delivers the records only when the transaction commits (see
// Options for where they go).
//
// Updates and deletes need a transaction to lock their before images: an ent.Tx, or the one the
// hook opens itself when the client's driver is wrapped with Driver. Without the wrapper they
// still run, and are recorded from an unlocked read, flagged before_unlocked (see Check). A
// create outside a transaction is recorded right after its INSERT, which committed on its own (a
// CreateBulk once all its creates have finished).
//
// A set-up the hook cannot use (invalid Options, a nil Schema, a database other than
// PostgreSQL, a driver not wrapped) is logged once, when Hook is called or on the first
// mutation that shows it; it never fails a write. Invalid options fall back to their defaults.
// An audit record that cannot be captured for a reason of the database (the before image cannot
// be read, for example) fails the mutation: a change is never made without its record.
func Hook(s Schema, opts Options) ent.Hook {
	h := newHook(s, opts)
	if h.err != nil {
		h.log.Error("entaudit: invalid options; the defaults are used instead", "error", h.err)
	}
	if h.disabled() {
		h.log.Info("entaudit: recording of ORM changes is disabled by the configuration (DisableORMDiffs); mutations pass through the hook untouched")
		return func(next ent.Mutator) ent.Mutator { return next }
	}
	if s == nil {
		h.log.Error("entaudit: the hook was given no Schema; no change is recorded", "error", ErrSchema)
	}
	return func(next ent.Mutator) ent.Mutator {
		return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
			return h.mutate(ctx, m, next)
		})
	}
}

// hook is the state shared by the hook's closures.
type hook struct {
	schema   Schema
	opts     Options
	err      error // invalid options, logged when the hook is made
	warned   sync.Map
	maxRows  int
	log      *slog.Logger
	redactor *core.Redactor
	txw      *core.TxWriter
	types    map[string]*typeInfo
	ignore   map[string]bool
	exclude  map[string]bool
	txs      sync.Map // ent transaction driver -> *txState
	// oldNew is 1 when the server is PostgreSQL 18 or later, whose UPDATE returns a row's
	// values before it (RETURNING OLD), 2 when it is not, 0 until asked (see returnsOld).
	oldNew  atomic.Int32
	batches sync.Map // Batch.Key of a CreateBulk outside a transaction -> *batchState
	pres    sync.Map // Batch.Key of an upsert CreateBulk -> *rowSet (see batchPre)
}

// typeInfo is a Type with its lookups prepared.
type typeInfo struct {
	*Type
	Skip   bool // Type.Skip, or the table is in Options.ExcludeTables
	redact map[string]bool
	omit   map[string]bool
	edges  map[string]*edgeInfo
	// referring lists the foreign keys to the type that only the referring types declare.
	referring []*edgeInfo
	// layouts caches how the result shapes the hook reads from the table are read.
	layouts [numShapes]atomic.Pointer[layout]
	// plain caches whether the table has no trigger or rule (see plainTable): 0 not known yet,
	// 1 none, 2 some.
	plain atomic.Int32
}

type edgeInfo struct {
	Edge
	target *typeInfo // nil when the target is not described
	// referring is set for a foreign key that refers to the type but is declared only by the
	// type holding it (incoming): Edge is seen from the referred type, target holds the key, and
	// via names the declaring edge.
	referring bool
	via       string
}

func newHook(s Schema, opts Options) *hook {
	h := &hook{schema: s, types: map[string]*typeInfo{}}
	h.err = h.configure(opts)
	if s == nil {
		return h
	}
	for _, t := range s.Types() {
		ti := &typeInfo{Type: t, Skip: t.Skip || h.exclude[t.Table], redact: set(t.Redact), omit: set(t.Omit), edges: map[string]*edgeInfo{}}
		h.types[t.Name] = ti
	}
	for _, ti := range h.types {
		for _, e := range ti.Edges {
			ti.edges[e.Name] = &edgeInfo{Edge: e, target: h.types[e.Target]}
		}
	}
	for _, t := range s.Types() {
		h.addReferring(h.types[t.Name])
	}
	return h
}

// addReferring lists the foreign keys in the table of ti that refer to another type and that
// the other type does not declare as an edge of its own (a one-way M2O, a same-type O2O) as
// incoming keys of that type: deleting a row of it makes the database null or delete the
// referring rows (ON DELETE SET NULL or CASCADE).
func (h *hook) addReferring(ti *typeInfo) {
	for _, e := range ti.Edges {
		to := h.types[e.Target]
		if e.Storage != StoredInOwnTable || to == nil || declares(to, e.Table, e.Column) {
			continue
		}
		to.referring = append(to.referring, &edgeInfo{
			Edge:      Edge{Name: e.Name, Target: ti.Name, Storage: StoredInTargetTable, Table: e.Table, Column: e.Column},
			target:    ti,
			referring: true,
			via:       ti.Table + "." + e.Name,
		})
	}
}

// declares reports whether t has an edge stored as the foreign key column of table.
func declares(t *typeInfo, table, column string) bool {
	for _, e := range t.Edges {
		if e.Storage == StoredInTargetTable && e.Table == table && e.Column == column {
			return true
		}
	}
	return false
}

func set(cols []string) map[string]bool {
	m := make(map[string]bool, len(cols))
	for _, c := range cols {
		m[c] = true
	}
	return m
}

// reentry marks the context a mutation is executed with, so that the hook recognises the same
// mutation coming back through the chain (a soft-delete hook that turns a delete into an update
// and executes it again).
type reentry struct {
	m         ent.Mutation
	reentered bool
}

type reentryKey struct{}

func (h *hook) mutate(ctx context.Context, m ent.Mutation, next ent.Mutator) (ent.Value, error) {
	t := h.types[m.Type()]
	if t == nil || t.Skip {
		return next.Mutate(ctx, m)
	}
	if r, ok := ctx.Value(reentryKey{}).(*reentry); ok && r.m == m {
		r.reentered = true
		return next.Mutate(ctx, m)
	}
	drv := h.schema.Driver(m)
	if drv == nil {
		h.warnOnce("schema:"+m.Type(), "entaudit: the schema does not give the driver of a mutation; its changes are not recorded",
			"type", m.Type(), "error", ErrSchema)
		return next.Mutate(ctx, m)
	}
	if drv.Dialect() != dialect.Postgres {
		h.warnOnce("dialect", "entaudit: the client's database is not PostgreSQL; no change is recorded",
			"dialect", drv.Dialect(), "error", ErrDialect)
		return next.Mutate(ctx, m)
	}
	op := m.Op()
	c := &capture{h: h, t: t, m: m, op: op, drv: drv}
	var own *autoTx
	w := unwrap(drv)
	tx, inTx := h.schema.Tx(m)
	if w == nil && !inTx {
		h.warnOnce("unwrapped", "entaudit: the client's driver is not wrapped with entaudit.Driver; updates and "+
			"deletes outside an ent.Tx are recorded from before images read without a lock, flagged before_unlocked",
			"driver", fmt.Sprintf("%T", drv), "error", ErrNoTransaction)
	}
	switch {
	case inTx:
		c.state, c.inTx = h.userTx(tx), true
	case w != nil && w.active(ctx) != nil:
		c.state = &w.active(ctx).state // a mutation made while one of the hook's transactions runs
	case op.Is(ent.OpCreate):
		// An INSERT needs no before image; it commits on its own and is recorded right after.
	case w != nil:
		a, actx, err := w.begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("entaudit: beginning a transaction: %w", err)
		}
		own, ctx, c.state = a, actx, &a.state
	default:
		// No transaction to lock the rows in: the write runs as ent runs it, and its records
		// are made from what the reads around it saw, flagged.
		c.unlocked = true
	}
	if c.state == nil {
		return h.alone(ctx, c, next)
	}
	seq := c.state.next()
	if own != nil {
		finished := false
		defer func() {
			if !finished { // the write panicked: release the transaction, let the panic go on
				_ = own.rollback()
			}
		}()
		v, recs, err := c.run(ctx, next)
		finished = true
		return h.finishOwn(ctx, own, seq, recs, v, err)
	}
	v, recs, err := c.run(ctx, next)
	if err != nil {
		return v, err
	}
	if len(recs) > 0 {
		c.state.add(pending{seq: seq, ctx: ctx, recs: recs})
	}
	return v, nil
}

// alone runs a mutation made outside any transaction (a create, or any mutation on a driver not
// wrapped with Driver): its statement commits on its own, and its records are delivered right
// after it. The creates of a CreateBulk wait for one another: ent
// runs them nested, the last finishing first, and their records are delivered together, in
// statement order, once the whole bulk has finished. Under core.FailClosed room for its records
// is reserved before it runs (see admit.go).
func (h *hook) alone(ctx context.Context, c *capture, next ent.Mutator) (ent.Value, error) {
	reported := false
	defer func() {
		if !reported { // the create panicked: the bulk must still be able to finish
			h.batchDone(c.m, nil)
		}
	}()
	res, reserved, aerr := h.admitAlone(ctx, c)
	if aerr != nil {
		return nil, aerr
	}
	v, recs, err := c.run(ctx, next)
	var p *pending
	if err == nil && len(recs) > 0 {
		p = &pending{ctx: ctx, recs: recs, res: h.topUp(ctx, res, reserved, len(recs))}
	} else {
		res.Release()
	}
	ps, batched := h.batchDone(c.m, p)
	reported = true
	if !batched && p != nil {
		ps = []pending{*p}
	}
	if len(ps) == 0 {
		return v, err
	}
	if h.opts.InTransaction {
		if werr := h.writeTx(ctx, c.drv, ps); werr != nil {
			return v, errors.Join(err, werr)
		}
		return v, err
	}
	h.deliver(ps)
	return v, err
}

// batchState gathers the records of the creates of one CreateBulk.
type batchState struct {
	mu   sync.Mutex
	done int
	pend []pending
}

// batchPre shares the before images an upsert's INSERT read among the creates of its CreateBulk:
// the create whose context ran the statement gives them (pre not nil), the others take them. The
// first create of the bulk finishes last (ent nests them) and forgets them.
func (h *hook) batchPre(m ent.Mutation, pre *rowSet) *rowSet {
	b, ok := h.schema.Batch(m)
	if !ok || b.Size < 2 {
		return pre
	}
	if pre != nil {
		h.pres.Store(b.Key, pre)
		return pre
	}
	v, _ := h.pres.Load(b.Key)
	pre, _ = v.(*rowSet)
	return pre
}

// batchForget drops what batchPre keeps for the CreateBulk of m once its first create, the last
// to finish, is done.
func (h *hook) batchForget(m ent.Mutation) {
	if b, ok := h.schema.Batch(m); ok && b.Index == 0 {
		h.pres.Delete(b.Key)
	}
}

// batchDone reports that the create m finished, with its records p (nil when it has none or
// failed). For a create that is not part of a CreateBulk it returns false. Otherwise it keeps p
// and, once every create of the bulk has reported, returns all their records in statement order.
func (h *hook) batchDone(m ent.Mutation, p *pending) ([]pending, bool) {
	b, ok := h.schema.Batch(m)
	if !ok || b.Size < 2 {
		return nil, false
	}
	v, _ := h.batches.LoadOrStore(b.Key, &batchState{})
	st := v.(*batchState)
	st.mu.Lock()
	defer st.mu.Unlock()
	if p != nil {
		p.seq = uint64(b.Index)
		st.pend = append(st.pend, *p)
	}
	if st.done++; st.done < b.Size {
		return nil, true
	}
	h.batches.Delete(b.Key)
	slices.SortFunc(st.pend, func(a, b pending) int { return cmp.Compare(a.seq, b.seq) })
	return st.pend, true
}

// finishOwn completes a transaction the hook opened: it commits when the write succeeded
// (writing the records in it with InTransaction) and rolls back otherwise.
func (h *hook) finishOwn(ctx context.Context, a *autoTx, seq uint64, recs []*core.Record, v ent.Value, err error) (ent.Value, error) {
	if err != nil {
		return v, errors.Join(err, a.rollback())
	}
	if len(recs) > 0 {
		a.state.add(pending{seq: seq, ctx: ctx, recs: recs})
	}
	p := a.state.take()
	if h.opts.InTransaction && len(p) > 0 {
		if err := h.writeTx(ctx, a.tx, p); err != nil {
			return v, errors.Join(err, a.rollback())
		}
	}
	if !h.opts.InTransaction {
		if err := h.admit(p); err != nil {
			return v, refusedCommit(err, a.rollback())
		}
	}
	if err := a.commit(); err != nil {
		h.failedCommit(p, err) // it may have committed all the same
		return v, fmt.Errorf("entaudit: committing: %w", err)
	}
	if !h.opts.InTransaction {
		h.deliver(p)
	}
	return v, nil
}

// warnOnce logs msg once per key and hook.
func (h *hook) warnOnce(key, msg string, args ...any) {
	if _, loaded := h.warned.LoadOrStore(key, true); !loaded {
		h.log.Warn(msg, args...)
	}
}

// returningOldVersion is the first server_version_num whose RETURNING has OLD and NEW.
const returningOldVersion = 180000

// returnsOld reports whether the server is PostgreSQL 18 or later, whose UPDATE returns each
// row's values before it (RETURNING OLD). It is asked once, through drv; a question that fails is
// asked again by the next update.
func (h *hook) returnsOld(ctx context.Context, drv dialect.ExecQuerier) bool {
	switch h.oldNew.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	s, err := queryText(ctx, drv, "SELECT current_setting('server_version_num')", nil)
	if err != nil || !s.Valid {
		return false
	}
	if v, err := strconv.Atoi(s.String); err == nil && v >= returningOldVersion {
		h.oldNew.Store(1)
		return true
	}
	h.oldNew.Store(2)
	return false
}
