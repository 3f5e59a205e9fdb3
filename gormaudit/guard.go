package gormaudit

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The plugin's own queries must never make the application's statement fail or change its
// result. Three measures keep them apart:
//
//   - They run on the connection or transaction under GORM's prepared-statement layer
//     (PrepareStmt), so that they never enter the application's statement cache nor evict its
//     statements; so does the statement the plugin rewrites (pinned, with RETURNING), whose
//     text GORM would never have prepared.
//   - Before the first capture on a table, a probe ("SELECT <the model's columns> FROM <table>
//     LIMIT 0", under a savepoint inside a transaction) checks that the plugin can read what it
//     reads: a model column missing from the table, or columns the role may not read, would
//     otherwise fail the locking read or the RETURNING the plugin adds. A table that fails the
//     probe is not read at all: its statements run as GORM sends them and each is recorded by
//     one summary record flagged "capture": "unreadable", with a warning logged once.
//   - A read that is not derived one to one from the statement - the statement has a FROM list
//     or joins (UPDATE ... FROM), clauses built before it (a WITH registered on the update
//     processor), or subqueries in its conditions - runs under a savepoint inside a
//     transaction, so that when it fails, the transaction is as before and the statement runs
//     unchanged; its rows are then recorded without a before image (before_unknown), with a
//     warning. Other reads use exactly the statement's table and conditions on a table that
//     passed the probe: where they fail, the statement fails the same way (the database's own
//     error is returned), and they pay no savepoint (two round trips).
//
// Outside any transaction the plugin's own transaction around the statement is simply rolled
// back when a read fails, and the statement runs on its own as GORM meant it to.

const readSavepoint = "gormaudit_read"

// unprepared returns the connection or transaction under GORM's prepared-statement layer.
func unprepared(cp gorm.ConnPool) gorm.ConnPool {
	for {
		switch v := cp.(type) {
		case *stmtConn:
			cp = v.ConnPool
		case *gorm.PreparedStmtTX:
			cp = v.Tx
		case *gorm.PreparedStmtDB:
			cp = v.ConnPool
		default:
			return cp
		}
	}
}

func isTx(cp gorm.ConnPool) bool {
	_, ok := cp.(gorm.TxCommitter)
	return ok
}

// q is where the plugin's own queries run: the statement's connection, unprepared.
func (st *stmtState) q() gorm.ConnPool { return unprepared(st.conn) }

// errAborted marks a failed read that left the application's transaction aborted: the
// statement cannot run any more, and fails with the read's error.
var errAborted = errors.New("gormaudit: the transaction is aborted")

// guard runs read, one of the plugin's own queries. With sp (and inside a transaction the
// plugin did not begin) it runs under a savepoint and a failure leaves the transaction as it
// was. A failure in the plugin's own transaction rolls that back: the statement then runs
// without it. A failure that aborted the application's transaction is joined with errAborted.
func (st *stmtState) guard(ctx context.Context, sp bool, read func() error) error {
	foreign := st.own == nil && isTx(st.orig)
	sp = sp && foreign
	q := st.q()
	if sp {
		if _, err := q.ExecContext(ctx, "SAVEPOINT "+readSavepoint); err != nil {
			return errors.Join(errAborted, err)
		}
	}
	err := read()
	if sp {
		bg := context.WithoutCancel(ctx)
		if err != nil {
			if _, e := q.ExecContext(bg, "ROLLBACK TO SAVEPOINT "+readSavepoint); e != nil {
				return errors.Join(errAborted, err, e)
			}
		}
		if _, e := q.ExecContext(bg, "RELEASE SAVEPOINT "+readSavepoint); e != nil {
			return errors.Join(errAborted, err, e)
		}
		return err
	}
	if err == nil {
		return nil
	}
	if st.own != nil {
		st.rollback()
		st.conn = st.orig
		return err
	}
	if foreign {
		return errors.Join(errAborted, err)
	}
	return err
}

// dbError returns the database's own error inside err (a driver error with an SQLSTATE, as
// GORM's error translation expects it), or err.
func dbError(err error) error {
	var se interface {
		error
		SQLState() string
	}
	if errors.As(err, &se) {
		return se
	}
	return err
}

// readable reports whether the plugin can read the model's columns from the statement's
// table (see the probe above); the answer is kept per model and table.
func (p *Plugin) readable(db *gorm.DB, st *stmtState) bool {
	stmt := db.Statement
	key := st.m.probeKey(stmt)
	if v, ok := p.probed.Load(key); ok {
		return v.(bool)
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(st.m.list(stmt, st.table))
	b.WriteString(" FROM ")
	if stmt.TableExpr != nil {
		b.WriteString(stmt.TableExpr.SQL)
	} else {
		stmt.QuoteTo(&b, st.table)
	}
	b.WriteString(" LIMIT 0")
	var args []any
	if stmt.TableExpr != nil {
		args = stmt.TableExpr.Vars
	}
	ctx := stmt.Context
	err := st.guard(ctx, true, func() error {
		rows, err := st.q().QueryContext(ctx, b.String(), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
		}
		return rows.Err()
	})
	switch {
	case err == nil:
		p.probed.Store(key, true)
		return true
	case ctx.Err() != nil || errors.Is(err, errAborted):
		// Not the table's fault: the statement fails on its own, or its transaction had
		// failed already.
		return true
	}
	p.probed.Store(key, false)
	p.s.log.Warn("gormaudit: the model's columns cannot be read from its table; its changes are recorded "+
		"without images, one summary record per statement (capture: unreadable)",
		"table", st.table, "error", err)
	return false
}

// probeKey identifies what the probe checked: the model's columns in one table expression.
type probeKey struct {
	m           *model
	table, expr string
}

func (m *model) probeKey(stmt *gorm.Statement) probeKey {
	k := probeKey{m: m, table: stmt.Table}
	if e := stmt.TableExpr; e != nil {
		k.expr = e.SQL
		if len(e.Vars) > 0 {
			k.expr += fmt.Sprint(e.Vars...)
		}
	}
	return k
}

// fromOf returns the FROM list and joins an UPDATE adds to its target table, if any.
func fromOf(stmt *gorm.Statement) (clause.From, bool) {
	c, ok := stmt.Clauses["FROM"]
	if !ok {
		return clause.From{}, false
	}
	f, ok := c.Expression.(clause.From)
	return f, ok && (len(f.Tables) > 0 || len(f.Joins) > 0)
}

// lockName is the name FOR ... OF takes for the statement's table: its alias, or its name
// without a schema.
func lockName(stmt *gorm.Statement) string {
	name := stmt.Table
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// prefixClauses returns the clauses the statement builds before its UPDATE (a WITH the
// application registered on the update processor, say) that the statement carries.
func prefixClauses(db *gorm.DB) []string {
	var out []string
	for _, name := range db.Callback().Update().Clauses {
		if name == "UPDATE" {
			break
		}
		if _, ok := db.Statement.Clauses[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

// hasSubquery reports whether conditions hold a subquery (a *gorm.DB value), at any depth.
func hasSubquery(exprs []clause.Expression) bool {
	for _, e := range exprs {
		if subqueryIn(e) {
			return true
		}
	}
	return false
}

// subqueryIn reports whether one condition holds a subquery, at any depth.
func subqueryIn(e clause.Expression) bool {
	switch x := e.(type) {
	case clause.Expr:
		return subqueryValues(x.Vars)
	case clause.NamedExpr:
		return subqueryValues(x.Vars)
	case clause.IN:
		return subqueryValues(x.Values)
	case clause.Eq:
		return subqueryValue(x.Value)
	case clause.Neq:
		return subqueryValue(x.Value)
	case clause.AndConditions:
		return hasSubquery(x.Exprs)
	case clause.OrConditions:
		return hasSubquery(x.Exprs)
	case clause.NotConditions:
		return hasSubquery(x.Exprs)
	case clause.Where:
		return hasSubquery(x.Exprs)
	}
	// Comparison clauses of other types hold a Value field.
	rv := reflect.Indirect(reflect.ValueOf(e))
	if rv.Kind() == reflect.Struct {
		if f := rv.FieldByName("Value"); f.IsValid() && f.CanInterface() && subqueryValue(f.Interface()) {
			return true
		}
	}
	return false
}

// subqueryValues reports whether bound values hold a subquery, at any depth.
func subqueryValues(vs []any) bool {
	for _, v := range vs {
		if subqueryValue(v) {
			return true
		}
	}
	return false
}

// subqueryValue reports whether a bound value is or holds a subquery.
func subqueryValue(v any) bool {
	switch x := v.(type) {
	case *gorm.DB:
		return true
	case clause.Expression:
		return subqueryIn(x)
	case []any:
		return subqueryValues(x)
	}
	return false
}

// risky reports whether the read of an update or soft delete is more than the statement's
// own table and conditions.
func risky(db *gorm.DB, where []clause.Expression) bool {
	_, from := fromOf(db.Statement)
	return from || len(prefixClauses(db)) > 0 || hasSubquery(where)
}
