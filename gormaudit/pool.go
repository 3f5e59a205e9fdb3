package gormaudit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
)

// GORM has no after-commit hook: Commit and Rollback call the connection pool's transaction
// object directly. The plugin therefore wraps the pool (in Initialize) so that every transaction
// GORM begins - db.Transaction, db.Begin, and GORM's implicit per-statement transaction - is a
// *txn whose Commit and Rollback it sees. Records made inside wait in the txn and are delivered
// after COMMIT succeeded; a rollback, a COMMIT that failed and did not commit (see
// commit_outcome.go), or a ROLLBACK TO SAVEPOINT drops them (only the ones made after the
// savepoint).

// pool is the commit-aware wrapper of the application's connection pool (normally *sql.DB).
// It is a gorm.ConnPoolBeginner, so GORM begins transactions through it.
type pool struct {
	gorm.ConnPool
	p *Plugin
}

func (c *pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var tx gorm.Tx
	switch b := c.ConnPool.(type) {
	case gorm.TxBeginner:
		t, err := b.BeginTx(ctx, opts)
		if err != nil {
			return nil, err
		}
		tx = t
	case gorm.ConnPoolBeginner:
		cp, err := b.BeginTx(ctx, opts)
		if err != nil {
			return nil, err
		}
		t, ok := cp.(gorm.Tx)
		if !ok {
			return cp, nil
		}
		tx = t
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	return &txn{Tx: tx, p: c.p, ctx: ctx, db: c}, nil
}

// GetDBConn keeps gorm.DB.DB() working.
func (c *pool) GetDBConn() (*sql.DB, error) { return sqlDBOf(c.ConnPool) }

// Ping keeps GORM's connection check working.
func (c *pool) Ping() error {
	if p, ok := c.ConnPool.(interface{ Ping() error }); ok {
		return p.Ping()
	}
	db, err := c.GetDBConn()
	if err != nil {
		return err
	}
	return db.Ping()
}

func sqlDBOf(cp gorm.ConnPool) (*sql.DB, error) {
	switch v := cp.(type) {
	case *sql.DB:
		return v, nil
	case gorm.GetDBConnector:
		return v.GetDBConn()
	}
	return nil, gorm.ErrInvalidDB
}

// pendingRecord is a record waiting for its transaction, with the context of its statement
// (identity, request collector).
type pendingRecord struct {
	ctx context.Context
	rec *core.Record
}

type savepoint struct {
	name string
	n    int // len(pending) when the savepoint was set
}

// txn is a transaction begun through pool. It embeds the driver's transaction, so it is a
// gorm.Tx (which PrepareStmt mode requires).
type txn struct {
	gorm.Tx
	p   *Plugin
	ctx context.Context // the context the transaction was begun with
	db  *pool

	mu         sync.Mutex
	pending    []pendingRecord
	savepoints []savepoint
	// id is the transaction's id, learned from a column the plugin added to one of its
	// statements (see xidColumn): COMMIT then needs no query to read it first.
	id string
}

// GetDBConn keeps gorm.DB.DB() working inside transactions.
func (t *txn) GetDBConn() (*sql.DB, error) { return t.db.GetDBConn() }

func (t *txn) add(ctx context.Context, recs []*core.Record) {
	t.mu.Lock()
	for _, r := range recs {
		t.pending = append(t.pending, pendingRecord{ctx: ctx, rec: r})
	}
	t.mu.Unlock()
}

// noteID keeps the transaction's id as a statement of it returned it; empty is ignored.
func (t *txn) noteID(id string) {
	if id == "" {
		return
	}
	t.mu.Lock()
	t.id = id
	t.mu.Unlock()
}

// knowsID reports whether the transaction's id is known already.
func (t *txn) knowsID() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id != ""
}

func (t *txn) take() []pendingRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pending
	t.pending, t.savepoints = nil, nil
	return p
}

// Commit commits and then delivers the records made in the transaction, or, in InTransaction
// mode, first inserts them through the transaction and rolls back if that fails. Under
// core.FailClosed it first reserves room for the records, and rolls back instead of committing
// when the room is refused (see admit.go).
func (t *txn) Commit() error {
	recs := t.take()
	if t.p.s.InTransaction && len(recs) > 0 {
		if err := t.p.writeInTx(t.ctx, t.Tx, recs); err != nil {
			rbErr := t.Tx.Rollback()
			return errors.Join(fmt.Errorf("gormaudit: audit records could not be written, transaction rolled back: %w", err), rbErr)
		}
	}
	if t.p.s.InTransaction || len(recs) == 0 {
		// Records written in the transaction share its fate, whatever COMMIT reports.
		return t.Tx.Commit()
	}
	res, err := t.p.admit(recs)
	if err != nil {
		return refusedCommit(err, t.Tx.Rollback())
	}
	id, idKnown := t.xid()
	if err := t.Tx.Commit(); err != nil {
		t.failedCommit(recs, res, id, idKnown, err)
		return err
	}
	t.p.deliver(recs, res)
	return nil
}

// Rollback drops the records made in the transaction.
func (t *txn) Rollback() error {
	t.take()
	return t.Tx.Rollback()
}

// control keeps the records in step with savepoints; it reports whether sql was a savepoint
// command. GORM's nested Transaction issues exactly "SAVEPOINT <name>" and
// "ROLLBACK TO SAVEPOINT <name>" (through db.Exec); RELEASE and the short forms are handled for
// applications that issue their own.
func (t *txn) control(sql string) bool {
	if len(sql) > 200 {
		return false
	}
	f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(sql), ";"))
	var op, name string
	switch {
	case len(f) == 2 && strings.EqualFold(f[0], "SAVEPOINT"):
		op, name = "set", f[1]
	case len(f) == 4 && strings.EqualFold(f[0], "ROLLBACK") && strings.EqualFold(f[1], "TO") && strings.EqualFold(f[2], "SAVEPOINT"):
		op, name = "rollback", f[3]
	case len(f) == 3 && strings.EqualFold(f[0], "ROLLBACK") && strings.EqualFold(f[1], "TO"):
		op, name = "rollback", f[2]
	case len(f) == 3 && strings.EqualFold(f[0], "RELEASE") && strings.EqualFold(f[1], "SAVEPOINT"):
		op, name = "release", f[2]
	case len(f) == 2 && strings.EqualFold(f[0], "RELEASE"):
		op, name = "release", f[1]
	default:
		return false
	}
	name = savepointName(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	if op == "set" {
		t.savepoints = append(t.savepoints, savepoint{name: name, n: len(t.pending)})
		return true
	}
	i := len(t.savepoints) - 1
	for i >= 0 && t.savepoints[i].name != name {
		i--
	}
	if i < 0 {
		return true
	}
	if op == "rollback" {
		// The savepoint survives ROLLBACK TO; those set after it do not.
		n := t.savepoints[i].n
		clear(t.pending[n:])
		t.pending = t.pending[:n]
		t.savepoints = t.savepoints[:i+1]
	} else {
		t.savepoints = t.savepoints[:i]
	}
	return true
}

// savepointName folds an identifier the way PostgreSQL does: quoted names keep their case.
func savepointName(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return strings.ToLower(s)
}

// txnOf returns the commit-aware transaction a statement runs in, or nil.
func txnOf(cp gorm.ConnPool) *txn {
	switch v := cp.(type) {
	case *txn:
		return v
	case *gorm.PreparedStmtTX:
		t, _ := v.Tx.(*txn)
		return t
	case *stmtConn:
		return txnOf(v.ConnPool)
	}
	return nil
}

// wrapPool installs the commit-aware pool on db. It handles a plain pool (*sql.DB or any
// ConnPool that begins transactions) and PrepareStmt mode, whose prepared-statement pool wraps
// the plain one.
func (p *Plugin) wrapPool(db *gorm.DB) error {
	wrap := func(cp gorm.ConnPool) (gorm.ConnPool, error) {
		switch cp.(type) {
		case *pool:
			return cp, nil
		case gorm.TxBeginner, gorm.ConnPoolBeginner:
			return &pool{ConnPool: cp, p: p}, nil
		}
		return nil, fmt.Errorf("gormaudit: the connection pool %T cannot begin transactions; open GORM on a *sql.DB", cp)
	}
	switch cp := db.ConnPool.(type) {
	case *gorm.PreparedStmtDB:
		inner, err := wrap(cp.ConnPool)
		if err != nil {
			return err
		}
		cp.ConnPool = inner
	case gorm.TxCommitter:
		return errors.New("gormaudit: Register needs the root *gorm.DB, not a transaction")
	default:
		w, err := wrap(cp)
		if err != nil {
			return err
		}
		db.ConnPool = w
		// The root statement holds the pool GORM opened with; sessions derive theirs from it.
		if db.Statement != nil {
			if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); !ok {
				db.Statement.ConnPool = w
			}
		}
	}
	return nil
}
