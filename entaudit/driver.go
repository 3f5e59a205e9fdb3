package entaudit

import (
	"context"
	stdsql "database/sql"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"

	"entgo.io/ent/dialect"

	"github.com/auditkit/auditkit/internal/xact"
)

// Driver wraps an ent driver so that the hook can give updates and deletes made outside an
// ent.Tx a transaction of their own: the hook begins it, reads and locks the before images in it,
// runs the write in it and commits. Without the transaction a before image could be changed by
// another writer between the read and the write. Create the client with it:
//
//	client := ent.NewClient(ent.Driver(entaudit.Driver(drv)))
//
// The wrapper also extends the audited mutation's own INSERT or UPDATE with a RETURNING clause,
// so that the hook gets the after image from the statement instead of another round trip; what
// ent sees of the statement's result is unchanged, and ent's read of the row an UpdateOne just
// updated is answered from it where that is exactly what the read would return. Everything else passes through unchanged:
// queries, ent transactions, and migrations, whose transaction is the wrapped driver's own (so
// the schema.ApplyHook pattern conn.(*sql.Tx) works as without the wrapper). Wrap the driver
// last (outermost), after tracing or logging wrappers; ent's own Debug wrapper may go around it.
func Driver(drv dialect.Driver) dialect.Driver {
	return &driver{Driver: drv}
}

// driver routes the statements of a context that carries one of its own transactions (autoTx)
// into that transaction.
type driver struct {
	dialect.Driver
}

// ErrTxUnsupported is returned by the ExecContext, QueryContext and BeginTx methods of a wrapped
// driver whose underlying driver lacks them.
var ErrTxUnsupported = errors.New("entaudit: the wrapped driver does not support this method")

type autoTxKey struct{}

// autoTx is a transaction the hook opened for a write made outside an ent.Tx.
type autoTx struct {
	drv   *driver
	ctx   context.Context // the context of the write it was begun for
	tx    dialect.Tx
	state txState
	done  atomic.Bool
}

// active returns the transaction of ctx that belongs to d and is still open.
func (d *driver) active(ctx context.Context) *autoTx {
	a, _ := ctx.Value(autoTxKey{}).(*autoTx)
	if a == nil || a.drv != d || a.done.Load() {
		return nil
	}
	return a
}

// begin opens a transaction and returns it with a context that routes statements into it.
func (d *driver) begin(ctx context.Context) (*autoTx, context.Context, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, ctx, err
	}
	a := &autoTx{drv: d, ctx: ctx, tx: tx}
	return a, context.WithValue(ctx, autoTxKey{}, a), nil
}

// commit commits. When records wait for the transaction its id is read first, so that a COMMIT
// that fails without a definite answer can be looked up on another connection: its error is then
// a *commitError carrying the outcome (see commit_outcome.go).
func (a *autoTx) commit() error {
	a.done.Store(true)
	a.state.mu.Lock()
	recorded := a.state.taken > 0
	a.state.mu.Unlock()
	if !recorded {
		return a.tx.Commit()
	}
	id, idKnown := a.state.txID(a.ctx, a.tx)
	err := a.tx.Commit()
	if err == nil {
		return nil
	}
	return resolveCommit(a.ctx, xact.Commit{Err: err, ID: id, IDKnown: idKnown}, statusVia(a.drv.Driver))
}

func (a *autoTx) rollback() error {
	a.done.Store(true)
	return a.tx.Rollback()
}

// Exec implements dialect.ExecQuerier.
func (d *driver) Exec(ctx context.Context, query string, args, v any) error {
	if a := d.active(ctx); a != nil {
		return intercept(ctx, a.tx, query, args, v, true)
	}
	return intercept(ctx, d.Driver, query, args, v, true)
}

// Query implements dialect.ExecQuerier.
func (d *driver) Query(ctx context.Context, query string, args, v any) error {
	if a := d.active(ctx); a != nil {
		return intercept(ctx, a.tx, query, args, v, false)
	}
	return intercept(ctx, d.Driver, query, args, v, false)
}

// Tx implements dialect.Driver. Inside one of the hook's transactions it returns that transaction
// with Commit and Rollback that do nothing, so that ent's internal transactions (an UpdateOne
// opens one) join it. The transaction of ent's schema migration is the wrapped driver's own, so
// that an ApplyHook gets what it gets without the wrapper (conn.(*sql.Tx) holds).
func (d *driver) Tx(ctx context.Context) (dialect.Tx, error) {
	if a := d.active(ctx); a != nil {
		return nopTx{wrappedTx{Tx: a.tx}}, nil
	}
	if fromMigration() {
		return d.Driver.Tx(ctx)
	}
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	return wrappedTx{tx, d.Driver}, nil
}

// BeginTx starts a transaction with options, as ent's generated BeginTx expects of SQL drivers.
func (d *driver) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (dialect.Tx, error) {
	if a := d.active(ctx); a != nil {
		return nopTx{wrappedTx{Tx: a.tx}}, nil
	}
	var tx dialect.Tx
	var err error
	if b, ok := d.Driver.(interface {
		BeginTx(context.Context, *stdsql.TxOptions) (dialect.Tx, error)
	}); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else if opts == nil {
		tx, err = d.Driver.Tx(ctx)
	} else {
		err = ErrTxUnsupported
	}
	if err != nil {
		return nil, err
	}
	return wrappedTx{tx, d.Driver}, nil
}

// migrationPackage is the package of ent's schema migration, which opens the transaction it
// applies a plan in (and hands to schema.ApplyHook) through the client's driver.
const migrationPackage = "entgo.io/ent/dialect/sql/schema."

// fromMigration reports whether Tx was called by ent's schema migration. ent passes no sign of
// it to the driver but the caller, so the few frames above Tx are looked at; this costs about a
// microsecond per transaction begun, next to the round trip of BEGIN.
func fromMigration() bool {
	var pcs [12]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, migrationPackage) {
			return true
		}
		if !more {
			return false
		}
	}
}

// ExecContext serves ent's sql/execquery feature.
func (d *driver) ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error) {
	var target any = d.Driver
	if a := d.active(ctx); a != nil {
		target = a.tx
	}
	if e, ok := target.(interface {
		ExecContext(context.Context, string, ...any) (stdsql.Result, error)
	}); ok {
		return e.ExecContext(ctx, query, args...)
	}
	return nil, ErrTxUnsupported
}

// QueryContext serves ent's sql/execquery feature.
func (d *driver) QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error) {
	var target any = d.Driver
	if a := d.active(ctx); a != nil {
		target = a.tx
	}
	if q, ok := target.(interface {
		QueryContext(context.Context, string, ...any) (*stdsql.Rows, error)
	}); ok {
		return q.QueryContext(ctx, query, args...)
	}
	return nil, ErrTxUnsupported
}

// wrappedTx is a transaction of the wrapped driver: its statements are looked at like the
// driver's (see intercept).
type wrappedTx struct {
	dialect.Tx
	root dialect.Driver // the wrapped driver, nil for the hook's own transactions
}

func (t wrappedTx) Exec(ctx context.Context, query string, args, v any) error {
	return intercept(ctx, t.Tx, query, args, v, true)
}

// Query implements dialect.ExecQuerier. The hook's question after a failed COMMIT, what became
// of the transaction, is asked on another connection of the wrapped driver: the transaction's
// own is finished or lost.
func (t wrappedTx) Query(ctx context.Context, query string, args, v any) error {
	if query == xact.StatusQuery && t.root != nil {
		return t.root.Query(ctx, query, args, v)
	}
	return intercept(ctx, t.Tx, query, args, v, false)
}

// ExecContext serves ent's sql/execquery feature inside transactions.
func (t wrappedTx) ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error) {
	if e, ok := t.Tx.(interface {
		ExecContext(context.Context, string, ...any) (stdsql.Result, error)
	}); ok {
		return e.ExecContext(ctx, query, args...)
	}
	return nil, ErrTxUnsupported
}

// QueryContext serves ent's sql/execquery feature inside transactions.
func (t wrappedTx) QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error) {
	if q, ok := t.Tx.(interface {
		QueryContext(context.Context, string, ...any) (*stdsql.Rows, error)
	}); ok {
		return q.QueryContext(ctx, query, args...)
	}
	return nil, ErrTxUnsupported
}

// nopTx is one of the hook's transactions lent to ent: its Commit and Rollback are left to the
// hook.
type nopTx struct{ wrappedTx }

func (nopTx) Commit() error   { return nil }
func (nopTx) Rollback() error { return nil }

// unwrap returns the entaudit driver under drv, looking through ent's Debug wrapper.
func unwrap(drv dialect.Driver) *driver {
	for drv != nil {
		switch d := drv.(type) {
		case *driver:
			return d
		case *dialect.DebugDriver:
			drv = d.Driver
		default:
			return nil
		}
	}
	return nil
}
