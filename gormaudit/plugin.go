package gormaudit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
)

// Plugin records GORM's changes. Create it with New or Register; it is safe for concurrent use
// by every goroutine sharing the *gorm.DB it was registered on.
type Plugin struct {
	opts   Options
	s      *settings
	models sync.Map // *schema.Schema -> *model
	warned sync.Map // warning key -> struct{}

	constraints sync.Map // schema, table and constraint name -> its columns ([]string)
	probed      sync.Map // model and table -> whether the model's columns can be read (bool)
	tables      sync.Map // table -> the *schema.Schema of its model (nil: ambiguous), see modelOfTable
	listed      sync.Map // tables of Options.Models -> true

	foreignTx atomic.Bool
	// returnsOld: the server is PostgreSQL 18 or later, whose RETURNING gives a changed row's
	// values before the statement (see fuse.go); read once, in Initialize.
	returnsOld atomic.Bool
}

// New returns the plugin for db.Use. Options are validated when GORM initialises the plugin.
func New(opts Options) *Plugin { return &Plugin{opts: opts} }

// Register installs the plugin on db: db.Use(New(opts)). Call it right after gorm.Open, before
// sessions or transactions are derived from db: it wraps db's connection pool so that it sees
// commits and rollbacks, and handles derived before it keep the unwrapped pool.
func Register(db *gorm.DB, opts Options) (*Plugin, error) {
	p := New(opts)
	if err := db.Use(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements gorm.Plugin.
func (p *Plugin) Name() string { return "gormaudit" }

// Initialize implements gorm.Plugin: it validates the options, makes the connection pool
// commit-aware and registers the callbacks.
func (p *Plugin) Initialize(db *gorm.DB) error {
	s, err := p.opts.settings()
	if err != nil {
		return err
	}
	p.s = s
	if s.disabled() {
		s.log.Info("gormaudit: recording of ORM changes is disabled by the configuration (DisableORMDiffs); no callbacks registered")
		return nil
	}
	for i, m := range p.opts.Models {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(m); err != nil {
			return fmt.Errorf("%w: Models[%d] (%T): %w", ErrInvalidOptions, i, m, err)
		}
		p.seeTable(stmt.Schema, true)
	}
	if err := p.wrapPool(db); err != nil {
		return err
	}
	installWhereBuilder(db)
	p.readServerVersion(db)
	cb := db.Callback()
	// The before callbacks sit right before the statement, inside GORM's transaction; the after
	// callbacks right after it, before associations and model hooks run further statements,
	// so that each record describes exactly its own statement and records follow statement
	// order. (After("gorm:create") would be appended after GORM's commit.) Where an
	// application removed the callback that follows the statement, the next one serves.
	create, update, del := cb.Create(), cb.Update(), cb.Delete()
	err = errors.Join(
		create.Before("gorm:create").Register("gormaudit:before_create", p.before(opCreate)),
		create.Before(next(create, "gorm:save_after_associations", "gorm:after_create")).
			Register("gormaudit:after_create", p.after),
		update.Before("gorm:update").Register("gormaudit:before_update", p.before(opUpdate)),
		update.Before(next(update, "gorm:save_after_associations", "gorm:after_update")).
			Register("gormaudit:after_update", p.after),
		del.Before("gorm:delete").Register("gormaudit:before_delete", p.before(opDelete)),
		del.Before(next(del, "gorm:after_delete")).Register("gormaudit:after_delete", p.after),
		cb.Raw().After("gorm:raw").Register("gormaudit:raw", p.afterRaw),
	)
	if s.CaptureRawSQL && s.InTransaction {
		err = errors.Join(err, cb.Raw().Before("gorm:raw").Register("gormaudit:before_raw", p.beforeRaw))
	}
	if s.CaptureRawSQL {
		err = errors.Join(err,
			cb.Row().After("gorm:row").Register("gormaudit:row", p.afterRaw),
			cb.Query().After("gorm:query").Register("gormaudit:query", p.afterRaw))
	}
	if s.CaptureRawSQL && !s.InTransaction {
		err = errors.Join(err,
			cb.Raw().Before("gorm:raw").Register("gormaudit:admit_raw", p.admitRaw),
			cb.Row().Before("gorm:row").Register("gormaudit:admit_row", p.admitRaw),
			cb.Query().Before("gorm:query").Register("gormaudit:admit_query", p.admitRaw))
	}
	return err
}

// next returns the first of names registered on the processor, falling back to GORM's commit
// callback, which ends every default chain.
func next(proc interface{ Get(string) func(*gorm.DB) }, names ...string) string {
	for _, n := range names {
		if proc.Get(n) != nil {
			return n
		}
	}
	return "gorm:commit_or_rollback_transaction"
}

// deliver hands the records of committed changes on: to the request's collector when their
// context carries one, to the Writer otherwise, keeping their order. res holds the room reserved
// for them by admit, indexed by run of records sharing a context; it may be nil.
func (p *Plugin) deliver(recs []pendingRecord, res []*core.Reservation) {
	for i, g := 0, 0; i < len(recs); g++ {
		j := runEnd(recs, i)
		batch := make([]*core.Record, 0, j-i)
		for _, r := range recs[i:j] {
			batch = append(batch, r.rec)
		}
		var r *core.Reservation
		if g < len(res) {
			r = res[g]
		}
		p.dispatch(recs[i].ctx, r, batch)
		i = j
	}
}

func (p *Plugin) dispatch(ctx context.Context, res *core.Reservation, recs []*core.Record) {
	if err := core.DispatchReserved(ctx, p.s.Writer, res, recs...); err != nil {
		p.s.log.Error("gormaudit: audit records of a committed change were not delivered",
			"records", len(recs), "error", err)
	}
}

// inTxBatch bounds the records of one INSERT: 29 parameters each, below PostgreSQL's 65,535.
const inTxBatch = 2000

// writeInTx inserts records through ex (the application's transaction), with identity from
// each record's context.
func (p *Plugin) writeInTx(ctx context.Context, ex core.Execer, recs []pendingRecord) error {
	out := make([]*core.Record, len(recs))
	for i, r := range recs {
		core.StampFromContext(r.ctx, r.rec)
		out[i] = r.rec
	}
	for len(out) > 0 {
		n := min(len(out), inTxBatch)
		if err := p.s.txw.Write(ctx, ex, out[:n]...); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// hand takes the records of one statement that ran on conn: they wait in a commit-aware
// transaction, are written into it in InTransaction mode, or are delivered at once when the
// statement committed on its own. A transaction the plugin began for the statement (own) is
// committed here. res is the room admitRaw reserved for a statement outside any transaction.
func (p *Plugin) hand(ctx context.Context, conn gorm.ConnPool, own gorm.TxCommitter, recs []*core.Record, res *core.Reservation) error {
	if t := txnOf(conn); t != nil {
		res.Release() // the transaction's COMMIT reserves room for all its records
		t.add(ctx, recs)
		if own != nil {
			return own.Commit()
		}
		return nil
	}
	pend := make([]pendingRecord, len(recs))
	for i, r := range recs {
		pend[i] = pendingRecord{ctx: ctx, rec: r}
	}
	_, inTx := conn.(gorm.TxCommitter)
	if p.s.InTransaction && len(recs) > 0 {
		res.Release()
		if err := p.writeInTx(ctx, unprepared(conn), pend); err != nil {
			return err
		}
		if own != nil {
			return own.Commit()
		}
		return nil
	}
	var reserved []*core.Reservation
	if res != nil {
		reserved = []*core.Reservation{res}
	}
	if own != nil || inTx {
		// A transaction the plugin cannot watch (one it began on a pool it did not wrap, or one
		// begun outside its pool): room is reserved before it commits, or before the application
		// can commit it. A refusal fails the statement, and the caller rolls back its own.
		rs, err := p.admit(pend)
		if err != nil {
			release(reserved)
			if own == nil {
				return fmt.Errorf("gormaudit: the audit records of the statement could not be accepted; roll the transaction back: %w", err)
			}
			return refusedCommit(err, nil)
		}
		if rs != nil {
			release(reserved)
			reserved = rs
		}
	}
	if own != nil {
		if err := own.Commit(); err != nil {
			release(reserved)
			return err
		}
	} else if inTx && len(recs) > 0 && p.foreignTx.CompareAndSwap(false, true) {
		p.s.log.Warn("gormaudit: a transaction was begun outside the plugin's connection pool " +
			"(a session derived before Register, or db.Connection); its records are delivered " +
			"before it commits, even if it rolls back")
	}
	p.deliver(pend, reserved)
	return nil
}

// warnOnce logs msg once per key.
func (p *Plugin) warnOnce(key, msg string, args ...any) {
	if _, loaded := p.warned.LoadOrStore(key, struct{}{}); !loaded {
		p.s.log.Warn(msg, args...)
	}
}

// returningOldVersion is the first server_version_num whose RETURNING has OLD and NEW.
const returningOldVersion = 180000

// readServerVersion asks the server its version, once, so that updates on PostgreSQL 18 and
// later return their rows' before images themselves (see fuse.go). When it cannot be asked,
// updates read their rows first, which every version supports.
func (p *Plugin) readServerVersion(db *gorm.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := db.ConnPool
	if ps, ok := cp.(*gorm.PreparedStmtDB); ok {
		cp = ps.ConnPool // not into the application's cache of prepared statements
	}
	var v int
	if err := cp.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		p.s.log.Info("gormaudit: the server's version could not be read; updates read their rows before changing them",
			"error", err)
		return
	}
	p.returnsOld.Store(v >= returningOldVersion)
}
