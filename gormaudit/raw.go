package gormaudit

import (
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core"
)

// afterRaw runs after raw statements (db.Exec; with CaptureRawSQL also db.Raw through Row,
// Rows, Scan and Find). It keeps pending records in step with savepoints, and records
// data-changing raw SQL when asked to.
func (p *Plugin) afterRaw(db *gorm.DB) {
	if db.Error != nil || db.DryRun {
		return
	}
	stmt := db.Statement
	q := stmt.SQL.String()
	if t := txnOf(stmt.ConnPool); t != nil && t.control(q) {
		return
	}
	if !p.s.CaptureRawSQL || !isWrite(q) {
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
	if err := p.hand(stmt.Context, stmt.ConnPool, nil, []*core.Record{rec}); err != nil {
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
