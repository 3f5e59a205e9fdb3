package entaudit

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/xact"
)

// txState holds the records of one transaction until it commits. Commit hooks of ent nest, so
// records are kept in one list per transaction, ordered by the sequence number each mutation
// takes when it starts (a CreateBulk runs its mutations nested: the first one finishes last).
type txState struct {
	mu    sync.Mutex
	seq   uint64
	pend  []pending
	taken int // records take has returned, so that COMMIT knows whether an outcome matters
	// id is the transaction's id once a statement of the hook returned it (see xidColumn).
	id string
	// wrapped is 1 when the statements of the ent.Tx pass through the wrapped driver, 2 when
	// they do not, 0 until asked (see throughWrapper).
	wrapped atomic.Int32
}

// throughWrapper reports whether the statements of the ent.Tx whose driver is drv pass through
// the wrapped driver (see Driver), asked once per transaction with a probe that the wrapper
// answers itself; only a driver that is not wrapped runs it ("SELECT 1"). A probe that fails is
// taken for no.
func (s *txState) throughWrapper(ctx context.Context, drv dialect.ExecQuerier) bool {
	switch s.wrapped.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	p := &probe{}
	var res stdsql.Result
	if err := drv.Exec(context.WithValue(ctx, probeKey{}, p), probeQuery, []any{}, &res); err != nil || !p.seen {
		s.wrapped.Store(2)
		return false
	}
	s.wrapped.Store(1)
	return true
}

// noteID keeps the transaction's id; empty is ignored.
func (s *txState) noteID(id string) {
	if id == "" {
		return
	}
	s.mu.Lock()
	s.id = id
	s.mu.Unlock()
}

// knowsID reports whether the transaction's id is known already.
func (s *txState) knowsID() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id != ""
}

// txID returns the transaction's id: the one a statement returned, or else the one read through
// q (see the package-level txID). An id never changes within a transaction.
func (s *txState) txID(ctx context.Context, q dialect.ExecQuerier) (string, bool) {
	s.mu.Lock()
	id := s.id
	s.mu.Unlock()
	if id != "" {
		return id, true
	}
	return txID(ctx, q)
}

// pending are the records of one mutation, with the context the mutation ran with (it carries
// the request Collector or the identity).
type pending struct {
	seq  uint64
	ctx  context.Context
	recs []*core.Record
	res  *core.Reservation // room reserved for recs under core.FailClosed (see admit.go); may be nil
}

func (s *txState) next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

func (s *txState) add(p pending) {
	s.mu.Lock()
	s.pend = append(s.pend, p)
	s.mu.Unlock()
}

// take removes and returns the pending records in statement order.
func (s *txState) take() []pending {
	s.mu.Lock()
	p := s.pend
	s.pend = nil
	for _, x := range p {
		s.taken += len(x.recs)
	}
	s.mu.Unlock()
	slices.SortFunc(p, func(a, b pending) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return p
}

// userTx returns the state of the ent transaction tx, registering the commit and rollback hooks
// that deliver or drop its records the first time a mutation of tx is seen. A COMMIT that fails
// is looked into (see commit_outcome.go): its records are delivered if it committed after all.
func (h *hook) userTx(tx Tx) *txState {
	key := tx.Driver()
	if v, ok := h.txs.Load(key); ok {
		return v.(*txState)
	}
	st := &txState{}
	if v, loaded := h.txs.LoadOrStore(key, st); loaded {
		return v.(*txState)
	}
	tx.OnCommit(func(ctx context.Context, commit, rollback func() error) error {
		defer h.txs.Delete(key)
		p := st.take()
		if h.opts.InTransaction && len(p) > 0 {
			if err := h.writeTx(ctx, key, p); err != nil {
				return errors.Join(fmt.Errorf("entaudit: transaction rolled back: %w", err), rollback())
			}
			return commit()
		}
		if len(p) == 0 {
			return commit()
		}
		if err := h.admit(p); err != nil {
			return refusedCommit(err, rollback())
		}
		id, idKnown := st.txID(ctx, key)
		// ctx is the one the transaction was begun with: once it is done, database/sql no
		// longer sends COMMIT.
		done := ctx.Err() != nil
		if err := commit(); err != nil {
			c := xact.Commit{Err: err, ID: id, IDKnown: idKnown}
			ce := resolveCommit(ctx, c, statusVia(key))
			if ce.outcome == xact.Unknown && done {
				ce.outcome = xact.Aborted
			}
			h.failedCommit(p, ce)
			return err
		}
		h.deliver(p)
		return nil
	})
	tx.OnRollback(func(ctx context.Context, rollback func() error) error {
		h.txs.Delete(key)
		st.take()
		return rollback()
	})
	return st
}

// deliver hands committed records to the request Collector of their context, or to the Writer,
// with the room reserved for them.
func (h *hook) deliver(ps []pending) {
	for _, p := range ps {
		if err := core.DispatchReserved(p.ctx, h.opts.Writer, p.res, p.recs...); err != nil {
			h.log.Error("entaudit: audit records of a committed change were not accepted",
				"records", len(p.recs), "error", err)
		}
	}
}

// writeTx inserts records through drv, the transaction that made the changes.
func (h *hook) writeTx(ctx context.Context, drv dialect.ExecQuerier, ps []pending) error {
	var recs []*core.Record
	for _, p := range ps {
		for _, r := range p.recs {
			core.StampFromContext(p.ctx, r)
		}
		recs = append(recs, p.recs...)
	}
	return h.txw.Write(ctx, execer{drv}, recs...)
}

// execer adapts an ent driver to core.Execer.
type execer struct{ drv dialect.ExecQuerier }

// QueryRows lets core.TxWriter read the hash chain's heads in the transaction, so that records
// written in it are chained.
func (e execer) QueryRows(ctx context.Context, query string, args ...any) (core.Rows, error) {
	var rows entsql.Rows
	if err := e.drv.Query(ctx, query, args, &rows); err != nil {
		return nil, err
	}
	return &rows, nil
}

func (e execer) ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error) {
	var res stdsql.Result
	if err := e.drv.Exec(ctx, query, args, &res); err != nil {
		return nil, err
	}
	return res, nil
}
