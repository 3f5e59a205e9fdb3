package gormaudit

import (
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
)

// rawTx is the transaction the plugin begins around a data-changing db.Exec outside any
// transaction when it captures raw SQL in InTransaction mode, so that the statement and its
// record commit together, as they do inside the application's transactions. Under FailClosed
// without InTransaction it is instead the statement's own pool (own nil) carrying the room
// admitRaw reserved for the record.
type rawTx struct {
	gorm.ConnPool                  // the transaction
	own           gorm.TxCommitter // the same, to commit or roll back
	orig          gorm.ConnPool    // the statement's pool before
	p             *Plugin
	res           *core.Reservation // room admitRaw reserved for the record (own is nil then)
}

// beforeRaw begins the transaction of rawTx. Only db.Exec is wrapped: the rows of Raw(...).Rows
// are read after the callbacks, and a commit there would close them.
func (p *Plugin) beforeRaw(db *gorm.DB) {
	stmt := db.Statement
	if db.Error != nil || db.DryRun || !isWrite(stmt.SQL.String()) {
		return
	}
	if _, inTx := stmt.ConnPool.(gorm.TxCommitter); inTx {
		return
	}
	tx, c, err := beginOn(stmt.Context, stmt.ConnPool)
	if err != nil {
		db.AddError(fmt.Errorf("gormaudit: beginning a transaction for a raw statement: %w", err))
		return
	}
	if c != nil {
		stmt.ConnPool = &rawTx{ConnPool: tx, own: c, orig: stmt.ConnPool, p: p}
	}
}

// afterRaw runs after raw statements (db.Exec; with CaptureRawSQL also db.Raw through Row,
// Rows, Scan and Find). It keeps pending records in step with savepoints, and records
// data-changing raw SQL when asked to.
func (p *Plugin) afterRaw(db *gorm.DB) {
	stmt := db.Statement
	var (
		own gorm.TxCommitter
		res *core.Reservation
	)
	conn := stmt.ConnPool
	if rt, ok := conn.(*rawTx); ok && rt.p == p {
		stmt.ConnPool, own, conn, res = rt.orig, rt.own, rt.ConnPool, rt.res
	}
	if db.Error != nil || db.DryRun {
		res.Release()
		if own != nil {
			_ = own.Rollback()
		}
		return
	}
	q := stmt.SQL.String()
	if t := txnOf(conn); t != nil && own == nil && t.control(q) {
		return
	}
	if !p.s.CaptureRawSQL || !isWrite(q) {
		res.Release()
		if own != nil {
			if err := own.Commit(); err != nil {
				db.AddError(err)
			}
		}
		return
	}
	args := make([]any, len(stmt.Vars))
	for i, v := range stmt.Vars {
		args[i] = core.Mask(v)
	}
	meta := map[string]any{"sql": p.s.Redactor.Text(q), "args": args}
	if db.RowsAffected >= 0 {
		meta["rows_affected"] = db.RowsAffected
	}
	rec := &core.Record{
		ID:         core.NewID(),
		OccurredAt: time.Now(),
		Kind:       core.KindCustom,
		Action:     "sql.exec",
		Metadata:   meta,
	}
	if err := p.hand(stmt.Context, conn, own, []*core.Record{rec}, res); err != nil {
		if own != nil {
			_ = own.Rollback() // no-op when the failed commit already ended it
		}
		db.AddError(err)
	}
}

// isWrite reports whether a raw statement changes data.
func isWrite(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n(")
	word := q
	if i := strings.IndexAny(q, " \t\r\n("); i >= 0 {
		word = q[:i]
	}
	switch strings.ToUpper(word) {
	case "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE":
		return true
	case "WITH":
		u := strings.ToUpper(q)
		for _, w := range []string{"INSERT ", "UPDATE ", "DELETE ", "MERGE "} {
			if strings.Contains(u, w) {
				return true
			}
		}
	}
	return false
}
