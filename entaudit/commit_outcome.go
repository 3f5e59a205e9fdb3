package entaudit

import (
	"context"
	stdsql "database/sql"
	"errors"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/xact"
)

// A COMMIT can fail in a way that does not say whether the transaction committed: the context is
// cancelled while COMMIT is in flight (the client went away), the connection is cut, or a
// deadline passes. PostgreSQL may well have committed. The records of such a transaction are
// therefore not dropped on the error alone: the transaction's id is known before COMMIT (only when
// records wait for it): returned by an UPDATE of a few rows the Driver wrapper extended, or read
// inside the transaction just before COMMIT; and when COMMIT fails without a definite answer its
// status is asked on another connection (pg_xact_status). Committed: the records are delivered.
// Aborted: they are dropped. No answer within commitResolveTimeout, or no other connection to
// ask (an ent.Tx on a driver not wrapped with Driver): they are delivered with metadata
// commit_outcome "unknown" and a warning is logged, because an audit trail prefers a flagged
// record to a committed change without one. The application gets COMMIT's error unchanged.
// In InTransaction mode the records are rows of the transaction and share its fate.

// commitResolveTimeout bounds both the read of the transaction's id and the wait for its status
// after a failed COMMIT.
const commitResolveTimeout = 5 * time.Second

// txID reads the id of the transaction q runs statements in, with a context the application
// cannot cancel. See xact.ID.
func txID(ctx context.Context, q dialect.ExecQuerier) (string, bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitResolveTimeout)
	defer cancel()
	s, err := queryText(ctx, q, xact.IDQuery, []any{})
	if err != nil {
		return "", false
	}
	return s.String, true
}

// statusVia returns a StatusFunc that asks q. Through the driver of an ent.Tx on a wrapped
// driver, the question goes to another connection of the wrapped driver (see wrappedTx.Query).
func statusVia(q dialect.ExecQuerier) xact.StatusFunc {
	return func(ctx context.Context, xid string) (stdsql.NullString, error) {
		return queryText(ctx, q, xact.StatusQuery, []any{xid})
	}
}

// queryText runs a query returning one nullable text value.
func queryText(ctx context.Context, q dialect.ExecQuerier, query string, args []any) (stdsql.NullString, error) {
	var s stdsql.NullString
	var rows sql.Rows
	if err := q.Query(ctx, query, args, &rows); err != nil {
		return s, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return s, err
		}
		return s, stdsql.ErrNoRows
	}
	if err := rows.Scan(&s); err != nil {
		return s, err
	}
	return s, rows.Close()
}

// commitError is the error of a failed COMMIT of one of the hook's own transactions, with what
// became of the transaction. It reads and unwraps as COMMIT's error.
type commitError struct {
	err     error
	outcome xact.Outcome
	xid     string
	cause   error // why the outcome is unknown
}

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// resolveCommit learns the outcome of a failed COMMIT (see xact.Resolve).
func resolveCommit(ctx context.Context, c xact.Commit, status xact.StatusFunc) *commitError {
	out, err := xact.Resolve(ctx, c, status, commitResolveTimeout)
	return &commitError{err: c.Err, outcome: out, xid: c.ID, cause: err}
}

// failedCommit delivers or drops ps, the records of a transaction whose COMMIT failed with err,
// by the outcome err carries (a commitError); any other error leaves the outcome unknown. The
// room reserved for dropped records is given back. In InTransaction mode the records were written
// in the transaction and nothing is done.
func (h *hook) failedCommit(ps []pending, err error) {
	if h.opts.InTransaction || len(ps) == 0 {
		return
	}
	var ce *commitError
	if !errors.As(err, &ce) {
		ce = &commitError{err: err, outcome: xact.Unknown, cause: errors.New("the outcome was not looked up")}
		if xact.Definite(err) {
			ce.outcome = xact.Aborted
		}
	}
	switch ce.outcome {
	case xact.Committed:
		h.deliver(ps)
	case xact.Unknown:
		n := 0
		for _, p := range ps {
			for _, r := range p.recs {
				flagCommitUnknown(r)
				n++
			}
		}
		h.log.Warn("entaudit: COMMIT failed and the transaction's outcome could not be learned; "+
			"its records are delivered flagged commit_outcome unknown",
			"records", n, "xid", ce.xid, "commit_error", ce.err, "error", ce.cause)
		h.deliver(ps)
	default:
		release(ps)
	}
}

// flagCommitUnknown marks a record of a transaction that may or may not have committed.
func flagCommitUnknown(r *core.Record) {
	if r.Metadata == nil {
		r.Metadata = map[string]any{}
	}
	r.Metadata["commit_outcome"] = "unknown"
}
