package xact_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/xact"
)

// transaction runs a transaction that writes a row and ends it with end ("COMMIT", "ROLLBACK" or
// "" to leave it open until the test ends); it returns the id IDQuery read before the end.
func transaction(t *testing.T, db *sql.DB, end string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := xact.ID(ctx, tx); !ok || id != "" {
		t.Fatalf("ID of a transaction that wrote nothing = %q, %v; want empty, true", id, ok)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	id, ok := xact.ID(ctx, tx)
	if !ok || id == "" {
		t.Fatalf("ID = %q, %v", id, ok)
	}
	switch end {
	case "COMMIT":
		err = tx.Commit()
	case "ROLLBACK":
		err = tx.Rollback()
	default:
		t.Cleanup(func() { _ = tx.Rollback() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// openDB returns a database of the test's own with an empty table t for transaction to write.
func openDB(t *testing.T) *sql.DB {
	t.Helper()
	pg := pgtest.NewEmpty(t)
	db, err := sql.Open("pgx", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec("CREATE TABLE t (n int)"); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestResolve(t *testing.T) {
	db := openDB(t)
	committed := transaction(t, db, "COMMIT")
	aborted := transaction(t, db, "ROLLBACK")
	open := transaction(t, db, "")
	lost := errors.New("connection lost")
	status := xact.StatusOn(db)
	unreachable := func(context.Context, string) (sql.NullString, error) {
		return sql.NullString{}, errors.New("connection refused")
	}
	forgotten := func(context.Context, string) (sql.NullString, error) { return sql.NullString{}, nil }

	for _, c := range []struct {
		name   string
		commit xact.Commit
		status xact.StatusFunc
		want   xact.Outcome
	}{
		{"no error", xact.Commit{ID: committed, IDKnown: true}, nil, xact.Committed},
		{"committed despite the error", xact.Commit{Err: context.Canceled, ID: committed, IDKnown: true}, status, xact.Committed},
		{"rolled back", xact.Commit{Err: lost, ID: aborted, IDKnown: true}, status, xact.Aborted},
		{"serialization failure", xact.Commit{Err: fmt.Errorf("commit: %w", &pgconn.PgError{Code: "40001"}), ID: committed, IDKnown: true}, status, xact.Aborted},
		{"deferred constraint", xact.Commit{Err: &pgconn.PgError{Code: "23505"}, ID: committed, IDKnown: true}, status, xact.Aborted},
		{"COMMIT answered ROLLBACK", xact.Commit{Err: pgx.ErrTxCommitRollback, ID: committed, IDKnown: true}, status, xact.Aborted},
		{"terminated: not definite", xact.Commit{Err: &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, ID: committed, IDKnown: true}, status, xact.Committed},
		{"wrote nothing", xact.Commit{Err: lost, IDKnown: true}, status, xact.Aborted},
		{"id unreadable before COMMIT", xact.Commit{Err: lost}, status, xact.Aborted},
		{"still in progress", xact.Commit{Err: lost, ID: open, IDKnown: true}, status, xact.Unknown},
		{"status unreachable", xact.Commit{Err: lost, ID: committed, IDKnown: true}, unreachable, xact.Unknown},
		{"status forgotten", xact.Commit{Err: lost, ID: committed, IDKnown: true}, forgotten, xact.Unknown},
		{"nowhere to ask", xact.Commit{Err: lost, ID: committed, IDKnown: true}, nil, xact.Unknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			got, err := xact.Resolve(context.Background(), c.commit, c.status, 200*time.Millisecond)
			if got != c.want {
				t.Fatalf("Resolve = %v (%v), want %v", got, err, c.want)
			}
			if (got == xact.Unknown) != (err != nil) {
				t.Fatalf("Resolve = %v with error %v: an unknown outcome, and only that, says why", got, err)
			}
			if time.Since(start) > time.Second {
				t.Fatalf("Resolve took %v past its timeout", time.Since(start))
			}
		})
	}
}

// An application context cancelled before the lookup does not stop it: it is usually why COMMIT
// failed.
func TestResolveIgnoresCancellation(t *testing.T) {
	db := openDB(t)
	id := transaction(t, db, "COMMIT")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := xact.Resolve(ctx, xact.Commit{Err: ctx.Err(), ID: id, IDKnown: true}, xact.StatusOn(db), time.Second)
	if got != xact.Committed {
		t.Fatalf("Resolve = %v (%v), want committed", got, err)
	}
}

// A status asked on the finished transaction itself or on a closed connection can never answer:
// Resolve gives up at once instead of polling until its timeout, which the application's COMMIT
// would wait for.
func TestResolveNowhereToAsk(t *testing.T) {
	db := openDB(t)
	id := transaction(t, db, "COMMIT")
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]xact.Querier{"finished transaction": tx, "closed connection": conn} {
		t.Run(name, func(t *testing.T) {
			asked := 0
			status := func(ctx context.Context, xid string) (sql.NullString, error) {
				asked++
				return xact.StatusOn(q)(ctx, xid)
			}
			got, err := xact.Resolve(ctx, xact.Commit{Err: context.Canceled, ID: id, IDKnown: true}, status, time.Minute)
			if got != xact.Unknown || err == nil {
				t.Fatalf("Resolve = %v (%v), want unknown with the reason", got, err)
			}
			if asked != 1 {
				t.Fatalf("status asked %d times, want once", asked)
			}
		})
	}
}

// A transaction is committed for StatusQuery only once the snapshot the query runs with sees it:
// a query that follows an outcome of committed must find the changes. PostgreSQL's own window
// (the commit log says committed before the transaction leaves the running ones) cannot be held
// open in a test; a REPEATABLE READ snapshot taken before the COMMIT stands in for it.
func TestStatusWaitsForVisibility(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	early, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = early.Rollback() }()
	if _, err := early.ExecContext(ctx, "SELECT count(*) FROM t"); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	id := transaction(t, db, "COMMIT")
	var raw string
	if err := early.QueryRowContext(ctx, "SELECT pg_xact_status($1::text::xid8)", id).Scan(&raw); err != nil || raw != "committed" {
		t.Fatalf("pg_xact_status = %q, %v; want committed", raw, err)
	}
	s, err := xact.StatusOn(early)(ctx, id)
	if err != nil || s.String != "in progress" {
		t.Fatalf("status under a snapshot that does not see the commit = %q, %v; want in progress", s.String, err)
	}
	if s, err := xact.StatusOn(db)(ctx, id); err != nil || s.String != "committed" {
		t.Fatalf("status under a new snapshot = %q, %v; want committed", s.String, err)
	}
}
