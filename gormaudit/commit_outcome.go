package gormaudit

import (
	"context"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/xact"
)

// A COMMIT can fail in a way that does not say whether the transaction committed: the request's
// context is cancelled while COMMIT is in flight (the client went away), the connection is cut,
// or a deadline passes. PostgreSQL may well have committed. The records of such a transaction are
// therefore not dropped on the error alone: the transaction's id is known before COMMIT (only
// when records wait for it): returned by a statement of a few rows the plugin rewrote, or read
// inside the transaction just before COMMIT; and when COMMIT fails without a definite answer its
// status is asked on another connection of the pool (pg_xact_status). Committed: the records are
// delivered. Aborted: they are dropped. No answer within commitResolveTimeout: they are
// delivered with metadata commit_outcome "unknown" and a warning is logged, because an audit
// trail prefers a flagged record to a committed change without one. The application gets
// COMMIT's error unchanged either way.

// commitResolveTimeout bounds both the read of the transaction's id and the wait for its status
// after a failed COMMIT.
const commitResolveTimeout = 5 * time.Second

// xid returns the id of t's transaction: the one a statement of the plugin returned with its
// rows (an id never changes within a transaction, subtransactions included), or else the one read
// with a context the application cannot cancel.
func (t *txn) xid() (string, bool) {
	t.mu.Lock()
	id := t.id
	t.mu.Unlock()
	if id != "" {
		return id, true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), commitResolveTimeout)
	defer cancel()
	return xact.ID(ctx, t.Tx)
}

// failedCommit decides the fate of recs, the records of a transaction whose COMMIT returned err.
// res is the room reserved for them (see admit): it goes with them when they are delivered and
// is given back when they are dropped.
func (t *txn) failedCommit(recs []pendingRecord, res []*core.Reservation, id string, idKnown bool, err error) {
	c := xact.Commit{Err: err, ID: id, IDKnown: idKnown}
	out, rerr := xact.Resolve(t.ctx, c, xact.StatusOn(t.db.ConnPool), commitResolveTimeout)
	switch out {
	case xact.Committed:
		t.p.deliver(recs, res)
	case xact.Unknown:
		for _, r := range recs {
			flagCommitUnknown(r.rec)
		}
		t.p.s.log.Warn("gormaudit: COMMIT failed and the transaction's outcome could not be learned; "+
			"its records are delivered flagged commit_outcome unknown",
			"records", len(recs), "xid", id, "commit_error", err, "error", rerr)
		t.p.deliver(recs, res)
	default:
		release(res)
	}
}

// flagCommitUnknown marks a record of a transaction that may or may not have committed.
func flagCommitUnknown(r *core.Record) {
	if r.Metadata == nil {
		r.Metadata = map[string]any{}
	}
	r.Metadata["commit_outcome"] = "unknown"
}
