package gormaudit

import (
	"database/sql/driver"
	"reflect"
	"strconv"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// One statement for an update whose conditions fix its rows' primary keys.
//
// An update or soft delete whose conditions name the rows by primary key (Model(&row).Update,
// Save, Updates of a struct, Where("id IN ?", ids)) does not read and lock its rows with a query
// of its own: GORM's UPDATE is written as one statement that locks, reads and changes them,
//
//	UPDATE t SET ... FROM (SELECT <columns> FROM t WHERE <conditions>
//	        ORDER BY <key> FOR NO KEY UPDATE) AS gormaudit_before(gormaudit_1, ...)
//	    WHERE (<conditions>) AND t.<key> = gormaudit_before.gormaudit_1
//	    RETURNING gormaudit_before.*, <columns>
//
// one round trip and one result less than the locking read followed by the UPDATE. The
// subquery takes the lock the separate read took, in key order, and returns what it returned:
// under READ COMMITTED a row that a transaction committed after the statement's snapshot
// changed is locked in its newest version, checked against the conditions again, and returned
// in that version. The UPDATE changes a row only joined with its locked version, and since the
// row stays locked, the version it changes is the one the subquery returned: the before image.
// A row the subquery did not lock (not selected, or inserted since) is never changed, so no
// pin is needed. The conditions are written once and repeated as text, their parameters bound
// once; the subquery's columns are renamed so that the conditions' unqualified names still
// mean the table's columns.
//
// The statement changes exactly the rows the UPDATE alone changes, with one exception the
// restriction to fixed keys rules out: a row whose primary key another transaction changed
// after the snapshot is followed by the UPDATE alone to its new version, while the join by key
// would miss it. When the conditions fix the key, the new version fails them, for the UPDATE
// alone as for the joined statement. Other updates (conditions that do not fix the key, a FROM
// list, subqueries, a WITH, the caller's Returning, a table expression) keep the separate read.

// One statement on PostgreSQL 18 and later: RETURNING OLD.
//
// From PostgreSQL 18 on, RETURNING names a changed row's values before the statement (OLD)
// beside those after it (NEW). An update or soft delete then needs no read of its own, whatever
// its conditions, and GORM's UPDATE runs as it is with a RETURNING added:
//
//	UPDATE t SET ... WHERE ...
//	    RETURNING WITH (OLD AS gormaudit_old, NEW AS gormaudit_new) gormaudit_old.<columns>, gormaudit_new.<columns>
//
// Each row's before image is the version the statement changed, returned by the statement that
// changed it: under READ COMMITTED, a row another transaction changed after the snapshot is
// checked against the conditions again and changed in its newest version, and OLD is that
// version. The statement takes the locks GORM's takes without the plugin, in the same order, and
// changes the same rows, a row another transaction inserted meanwhile included: so it deadlocks,
// and changes phantoms, exactly when GORM's UPDATE alone does. (On earlier versions the plugin's
// read locks the rows in key order first, and the statement changes only the rows it locked.)
// The aliases keep the text valid on a table named old or new. The caller's Returning and a
// table expression keep the plan of earlier versions.

// oldAlias and newAlias name a row's values before and after the statement in its RETURNING.
const oldAlias, newAlias = "gormaudit_old", "gormaudit_new"

// oldNewText is the text the plugin adds to an UPDATE on PostgreSQL 18 and later (see above).
func (m *model) oldNewText(stmt *gorm.Statement) fuseText {
	var b strings.Builder
	b.WriteString(" RETURNING WITH (OLD AS ")
	stmt.QuoteTo(&b, oldAlias)
	b.WriteString(", NEW AS ")
	stmt.QuoteTo(&b, newAlias)
	b.WriteString(") ")
	b.WriteString(m.qualifiedList(stmt, oldAlias))
	b.WriteByte(',')
	b.WriteString(m.qualifiedList(stmt, newAlias))
	return fuseText{oldNew: true, returning: b.String()}
}

// fuseAlias names the locking subquery; its columns are fuseColumn(0), fuseColumn(1), ...
const fuseAlias = "gormaudit_before"

func fuseColumn(i int) string { return "gormaudit_" + strconv.Itoa(i+1) }

// fuseText is the text the plugin writes around the conditions of a statement it runs as one
// (see above), built once per model and table.
type fuseText struct {
	head      string // "FROM (SELECT <columns> FROM <table> WHERE "
	mid       string // " ORDER BY <key> FOR NO KEY UPDATE) AS <alias>(<columns>) WHERE ("
	join      string // ") AND <table>.<key> = <alias>.<column> ..."
	returning string // " RETURNING <alias>.*,<columns>"
	// oldNew: the statement is GORM's own with returning added, which returns each row's image
	// before and after it (PostgreSQL 18 and later: see above); the other texts are empty.
	oldNew bool
}

func (m *model) fuseText(stmt *gorm.Statement, table string, t *tableText) fuseText {
	var f fuseText
	var b strings.Builder
	b.WriteString("FROM (SELECT ")
	b.WriteString(t.list)
	b.WriteString(" FROM ")
	b.WriteString(t.written)
	b.WriteString(" WHERE ")
	f.head = b.String()

	b.Reset()
	b.WriteString(" ORDER BY ")
	for i := range m.npk {
		if i > 0 {
			b.WriteByte(',')
		}
		stmt.QuoteTo(&b, clause.Column{Table: table, Name: m.cols[i].name})
	}
	b.WriteString(" FOR NO KEY UPDATE) AS ")
	stmt.QuoteTo(&b, fuseAlias)
	b.WriteByte('(')
	for i := range m.cols {
		if i > 0 {
			b.WriteByte(',')
		}
		stmt.QuoteTo(&b, fuseColumn(i))
	}
	b.WriteString(") WHERE (")
	f.mid = b.String()

	b.Reset()
	b.WriteByte(')')
	for i := range m.npk {
		b.WriteString(" AND ")
		stmt.QuoteTo(&b, clause.Column{Table: table, Name: m.cols[i].name})
		b.WriteString(" = ")
		stmt.QuoteTo(&b, clause.Column{Table: fuseAlias, Name: fuseColumn(i)})
	}
	f.join = b.String()

	b.Reset()
	b.WriteString(" RETURNING ")
	stmt.QuoteTo(&b, fuseAlias)
	b.WriteString(".*,")
	b.WriteString(t.list)
	f.returning = b.String()
	return f
}

// whereBuilder is the builder of WHERE clauses the plugin installs on the database
// (gorm.Config.ClauseBuilders) when none is installed: for the one statement the plugin runs as
// one (see above) it writes the locking subquery as the statement's FROM list before the
// conditions; every other WHERE it builds as GORM does.
func whereBuilder(c clause.Clause, b clause.Builder) {
	if stmt, ok := b.(*gorm.Statement); ok {
		if sc, ok := stmt.ConnPool.(*stmtConn); ok && sc.st.fuse != nil && !sc.st.fuse.oldNew && sc.st.stmt == stmt {
			if w, ok := c.Expression.(clause.Where); ok && len(w.Exprs) > 0 && c.Builder == nil &&
				c.BeforeExpression == nil && c.AfterNameExpression == nil && c.AfterExpression == nil {
				f := sc.st.fuse
				stmt.WriteString(f.head)
				start := stmt.SQL.Len()
				w.Build(stmt)
				cond := stmt.SQL.String()[start:]
				stmt.WriteString(f.mid)
				stmt.WriteString(cond)
				stmt.WriteString(f.join)
				return
			}
		}
	}
	c.Build(b)
}

// whereBuilderPC identifies whereBuilder among the database's clause builders.
var whereBuilderPC = reflect.ValueOf(whereBuilder).Pointer()

// installWhereBuilder installs whereBuilder on db unless it has a WHERE builder already.
func installWhereBuilder(db *gorm.DB) {
	if db.ClauseBuilders == nil {
		db.ClauseBuilders = map[string]clause.ClauseBuilder{}
	}
	if _, ok := db.ClauseBuilders["WHERE"]; !ok {
		db.ClauseBuilders["WHERE"] = whereBuilder
	}
}

// fusable reports whether an update or soft delete with the conditions where runs as one
// statement (see above), and the most rows its conditions select.
func (st *stmtState) fusable(db *gorm.DB, where []clause.Expression) (rows int, ok bool) {
	stmt := db.Statement
	if st.riskyRead || hasReturning(stmt) || stmt.TableExpr != nil || len(where) == 0 {
		return 0, false
	}
	if b, ok := stmt.DB.ClauseBuilders["WHERE"]; !ok || reflect.ValueOf(b).Pointer() != whereBuilderPC {
		return 0, false
	}
	return st.m.keyFixed(st.table, where)
}

// keyFixed reports whether conditions, joined by AND, fix every primary key column to given
// values, and the most rows they select then: "<key> = value" or "<key> IN (values)" (as
// clause.Eq, clause.IN, or a condition written "key = ?" or "key IN ?"), or "<column> = value"
// for each column of a composite key, or an IN over all of them. A condition joined by OR (or
// a written condition that holds the word OR) makes the answer no.
func (m *model) keyFixed(table string, where []clause.Expression) (rows int, ok bool) {
	if m.npk > 64 {
		return 0, false
	}
	var fixed uint64 // key columns fixed by a condition on one column
	rows = -1
	fix := func(n int) {
		if rows < 0 || n < rows {
			rows = n
		}
	}
	for _, e := range where {
		switch x := e.(type) {
		case clause.OrConditions:
			return 0, false
		case clause.NamedExpr:
			if hasOr(x.SQL) {
				return 0, false
			}
		case clause.Expr:
			if hasOr(x.SQL) {
				return 0, false
			}
			if m.npk == 1 && len(x.Vars) == 1 {
				if op, ok := m.writtenKeyCond(table, x.SQL); ok {
					if n, ok := constants(x.Vars[0], op == "IN"); ok {
						fix(n)
					}
				}
			}
		case clause.Eq:
			if i := m.keyIndex(table, x.Column); i >= 0 {
				if n, ok := eqConstants(x.Value); ok {
					if m.npk == 1 {
						fix(n)
					} else if n == 1 {
						fixed |= 1 << i
					}
				}
			}
		case clause.IN:
			if m.npk == 1 && m.keyIndex(table, x.Column) == 0 && plainValues(x.Values) {
				fix(len(x.Values))
			} else if cols, isList := x.Column.([]clause.Column); isList && m.npk > 1 && m.allKeys(table, cols) {
				fix(len(x.Values))
			}
		}
	}
	if m.npk > 1 && fixed == 1<<m.npk-1 {
		fix(1)
	}
	return rows, rows >= 0
}

// keyIndex returns the index of the primary key column a condition's column names, or -1.
func (m *model) keyIndex(table string, col any) int {
	var name string
	switch c := col.(type) {
	case string:
		name = c
	case clause.Column:
		if c.Raw || c.Alias != "" || !(c.Table == "" || c.Table == clause.CurrentTable || c.Table == table) {
			return -1
		}
		name = c.Name
	default:
		return -1
	}
	for i := range m.npk {
		if m.cols[i].name == name {
			return i
		}
	}
	return -1
}

// allKeys reports whether cols are the primary key's columns, each once.
func (m *model) allKeys(table string, cols []clause.Column) bool {
	if len(cols) != m.npk {
		return false
	}
	var seen uint64
	for _, c := range cols {
		i := m.keyIndex(table, c)
		if i < 0 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
	}
	return true
}

// writtenKeyCond recognises a written condition on the single-column primary key, "id = ?" or
// "id IN ?" (also "id IN (?)"), the column bare or quoted, optionally qualified by the table.
func (m *model) writtenKeyCond(table, sql string) (op string, ok bool) {
	s := trimBlank(sql)
	name, rest, ok := cutName(s)
	if !ok {
		return "", false
	}
	if r, qualified := strings.CutPrefix(rest, "."); qualified {
		if name != table {
			return "", false
		}
		if name, rest, ok = cutName(r); !ok {
			return "", false
		}
	}
	if name != m.cols[0].name {
		return "", false
	}
	rest = trimBlank(rest)
	switch {
	case strings.HasPrefix(rest, "="):
		op, rest = "=", rest[1:]
	case len(rest) > 2 && strings.EqualFold(rest[:2], "IN") && (blank(rest[2]) || rest[2] == '(' || rest[2] == '?'):
		op, rest = "IN", rest[2:]
	default:
		return "", false
	}
	rest = trimBlank(rest)
	if op == "IN" && strings.HasPrefix(rest, "(") && strings.HasSuffix(rest, ")") {
		rest = trimBlank(rest[1 : len(rest)-1])
	}
	if rest != "?" {
		return "", false
	}
	return op, true
}

// blank reports whether c is white space to PostgreSQL's lexer.
func blank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func trimBlank(s string) string {
	for s != "" && blank(s[0]) {
		s = s[1:]
	}
	for s != "" && blank(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// cutName cuts an identifier, bare (PostgreSQL folds it to lower case) or double-quoted, from
// the start of s.
func cutName(s string) (name, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s[1:], '"')
		if end <= 0 || strings.Contains(s[1:end+1], `""`) {
			return "", "", false
		}
		return s[1 : end+1], s[end+2:], true
	}
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	return strings.ToLower(s[:i]), s[i:], true
}

// hasOr reports whether written SQL holds the word OR, in any case, anywhere.
func hasOr(sql string) bool {
	for i := 0; i+1 < len(sql); i++ {
		if (sql[i] == 'o' || sql[i] == 'O') && (sql[i+1] == 'r' || sql[i+1] == 'R') &&
			(i == 0 || !identByte(sql[i-1])) && (i+2 == len(sql) || !identByte(sql[i+2])) {
			return true
		}
	}
	return false
}

func identByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// eqConstants reports whether clause.Eq's value is constants, and how many: GORM writes the
// slice types it lists as IN (...), any other value as one parameter.
func eqConstants(v any) (int, bool) {
	switch x := v.(type) {
	case []string, []int, []int32, []int64, []uint, []uint32, []uint64:
		return reflect.ValueOf(x).Len(), true
	case []any:
		return len(x), plainValues(x)
	}
	return 1, plainValue(v)
}

// constants reports whether the one value of a written "key = ?" (in false) or "key IN ?"
// (in true) condition is constants, and how many.
func constants(v any, in bool) (int, bool) {
	if !isList(v) {
		return 1, !in && plainValue(v)
	}
	if !in {
		return 0, false
	}
	rv := reflect.ValueOf(v)
	for i := range rv.Len() {
		if !plainValue(rv.Index(i).Interface()) {
			return 0, false
		}
	}
	return rv.Len(), true
}

// isList reports whether GORM writes a bound value as a parenthesised list of values: a slice
// or array, unless of bytes or a driver.Valuer.
func isList(v any) bool {
	if _, ok := v.(driver.Valuer); ok {
		return false
	}
	rv := reflect.ValueOf(v)
	return (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Type().Elem().Kind() != reflect.Uint8
}

// plainValue reports whether a bound value is one constant: not SQL the statement writes in
// its place (an expression, a column, a table, a subquery) nor a list.
func plainValue(v any) bool {
	switch v.(type) {
	case clause.Expression, *gorm.DB, clause.Column, []clause.Column, clause.Table:
		return false
	}
	return !isList(v)
}

func plainValues(vs []any) bool {
	for _, v := range vs {
		if !plainValue(v) {
			return false
		}
	}
	return true
}
