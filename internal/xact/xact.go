// Package xact finds out whether a PostgreSQL transaction committed when its COMMIT returned an
// error that does not say: a cancelled context, a lost connection or a timeout leave the
// transaction committed or rolled back, and only the server knows which.
//
// The ORM integrations learn the transaction's id (IDQuery) inside the transaction just before
// COMMIT, and, when COMMIT fails without a definite answer, ask its status on another connection
// (StatusQuery), polling while it is still in progress.
package xact

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// IDQuery returns the id of the transaction it runs in as text, or NULL when the transaction has
// none yet, which means it has written nothing. It does not assign an id.
const IDQuery = "SELECT pg_current_xact_id_if_assigned()::text"

// StatusQuery returns the status of the transaction whose id is $1: committed, aborted,
// in progress, or NULL when the id is too old to be known. A transaction is committed once a
// query that follows sees its changes: PostgreSQL marks the commit in its commit log a moment
// before it takes the transaction off the running ones, and in that moment pg_xact_status says
// committed while a new snapshot still holds the transaction as running. StatusQuery says in
// progress until the snapshot it runs with sees the transaction completed.
const StatusQuery = `SELECT CASE WHEN s = 'committed' AND NOT pg_visible_in_snapshot(x, pg_current_snapshot())
	THEN 'in progress' ELSE s END FROM (SELECT x, pg_xact_status(x) AS s FROM (SELECT $1::text::xid8 AS x) i) o`

// DefaultTimeout bounds how long Resolve waits for an answer when the caller gives none.
const DefaultTimeout = 5 * time.Second

// Outcome is what became of a transaction whose COMMIT was sent or attempted.
type Outcome int

const (
	// Committed means the transaction's changes are in the database.
	Committed Outcome = iota + 1
	// Aborted means the transaction was rolled back (or never committed).
	Aborted
	// Unknown means the outcome could not be learned in time.
	Unknown
)

// String returns "committed", "aborted" or "unknown".
func (o Outcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	}
	return "unknown"
}

// Definite reports whether err, returned by COMMIT, means for certain that the server rolled the
// transaction back: a transaction rollback error (SQLSTATE class 40, such as a serialization
// failure), an integrity constraint violation found at commit (class 23, deferred constraints),
// or a COMMIT that answered ROLLBACK because the transaction had already failed. Any other error
// (a cancelled context, a lost connection, a timeout, the server shutting down) leaves the
// outcome open: the server may have committed before the error reached the client.
func Definite(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return true
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		if c := st.SQLState(); len(c) == 5 && (c[:2] == "40" || c[:2] == "23") {
			return true
		}
	}
	return false
}

// Querier runs a query returning one row; *sql.DB, *sql.Conn and *sql.Tx are Queriers.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ID returns the id of the transaction tx, and false when it cannot be read. An empty id with
// true means the transaction has written nothing. ctx should not be one the application may
// cancel: a COMMIT that follows may still succeed, and its outcome is what the id is for.
func ID(ctx context.Context, tx Querier) (string, bool) {
	var id sql.NullString
	if err := tx.QueryRowContext(ctx, IDQuery).Scan(&id); err != nil {
		return "", false
	}
	return id.String, true
}

// StatusFunc returns the status of transaction xid as StatusQuery does, asked on a connection
// other than the transaction's own.
type StatusFunc func(ctx context.Context, xid string) (sql.NullString, error)

// StatusOn returns a StatusFunc that asks q.
func StatusOn(q Querier) StatusFunc {
	return func(ctx context.Context, xid string) (sql.NullString, error) {
		var s sql.NullString
		err := q.QueryRowContext(ctx, StatusQuery, xid).Scan(&s)
		return s, err
	}
}

// Commit is what is known of a transaction before and after its COMMIT.
type Commit struct {
	// Err is what COMMIT returned.
	Err error
	// ID is the transaction's id read just before COMMIT, empty when it had written nothing.
	ID string
	// IDKnown is false when the id could not be read: the transaction had already failed or been
	// rolled back, so COMMIT cannot have committed it.
	IDKnown bool
}

// Resolve returns the outcome of c. A COMMIT without error committed; a definite error, a
// transaction that had written nothing, or one whose id could not be read before COMMIT did not.
// Otherwise status is asked until it answers committed or aborted (polling while the transaction
// is in progress, as it is while its connection is being torn down) or until timeout (zero
// means DefaultTimeout) has passed; then the outcome is Unknown, returned with the last error.
// A status that cannot ever answer (it asks on the finished transaction itself or on a closed
// connection: sql.ErrTxDone, sql.ErrConnDone) gives Unknown at once, so that the application's
// COMMIT does not wait for an answer that will not come.
// ctx is the caller's, whose cancellation Resolve ignores: the application's context is usually
// the reason COMMIT failed.
func Resolve(ctx context.Context, c Commit, status StatusFunc, timeout time.Duration) (Outcome, error) {
	switch {
	case c.Err == nil:
		return Committed, nil
	case Definite(c.Err), !c.IDKnown, c.ID == "":
		return Aborted, nil
	case status == nil:
		return Unknown, errors.New("xact: no connection to ask the transaction's status on")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	wait := 2 * time.Millisecond
	for {
		s, err := status(ctx, c.ID)
		switch {
		case errors.Is(err, sql.ErrTxDone), errors.Is(err, sql.ErrConnDone):
			return Unknown, fmt.Errorf("xact: nowhere to ask the status of transaction %s: %w", c.ID, err)
		case err != nil:
		case s.String == "committed":
			return Committed, nil
		case s.String == "aborted":
			return Aborted, nil
		case !s.Valid:
			return Unknown, fmt.Errorf("xact: the status of transaction %s is no longer known", c.ID)
		default:
			err = fmt.Errorf("xact: transaction %s still %s", c.ID, s.String)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Unknown, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
