package gormaudit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
	"gorm.io/gorm/utils"

	"github.com/auditkit/auditkit/core"
)

// How one statement is captured.
//
// Before the statement (inside GORM's or the application's transaction), rows that will change
// are read and locked with SELECT ... ORDER BY <primary key> FOR <lock> on the statement's own
// connection, taking the lock the statement itself would take (NO KEY UPDATE for updates and
// DO UPDATE upserts, UPDATE for deletes, KEY SHARE for DO NOTHING), in key order so that two bulk
// statements do not deadlock on each other: updates and soft deletes by their complete filter
// (the application's conditions, the primary keys GORM adds itself, the soft-delete scope),
// upserts by their conflict keys.
// The lock makes the images exact under concurrency: no other writer can change these rows
// until the transaction ends. The statement is then pinned to the locked keys (an extra
// "AND <primary key> IN (...)", or "= ANY(<array>)" for many keys), so that a row inserted by
// another session after the read (a phantom) is not changed without a before image. An update
// or soft delete whose conditions fix the primary keys runs the read as a subquery of the
// statement itself instead (fuse.go).
//
// After images come from the statement itself where GORM lets the plugin do so invisibly: when
// GORM executes an UPDATE, DELETE or INSERT without reading results, the plugin runs it with
// "RETURNING <columns>" appended and hands GORM the row count it would have had. A hard DELETE
// needs no read before it at all: what it returns is the before image. When GORM reads
// RETURNING itself (an INSERT with database defaults such as a serial id, or a caller's own
// Returning clause), the rows are read again by primary key, still inside the transaction.
//
// When an audited statement runs outside any transaction (SkipDefaultTransaction and no
// db.Transaction), the plugin begins one around it through its commit-aware pool and commits
// it right after the statement, before associations and the model's after hooks run (each in
// no transaction, as the application chose): the lock, the write and the images are then one
// atomic unit, and the
// COMMIT is one whose outcome is resolved when it fails without a definite answer (see
// commit_outcome.go). This holds for a hard delete and an insert whose images come from
// RETURNING too, although they need no lock: an autocommit statement whose context is cancelled
// while the server commits it returns an error with no transaction id to ask about, and its
// change would be left without a record. The price is the BEGIN, COMMIT and transaction-id read
// the application had opted out of (BENCHMARKS.md).

type op uint8

const (
	opCreate op = iota
	opUpdate
	opDelete
)

// pinMaxParams bounds the parameters of a pin written as an IN list (composite keys, and keys
// of types that cannot go into one array parameter): beyond it the statement runs unpinned, and
// rows it changes that were not locked before are recorded without a before image, flagged
// "before_unknown". It also bounds the keys of one read by primary key.
const pinMaxParams = 20000

// fewRows is the most rows a statement may change for its RETURNING to carry the transaction's
// id (see xidColumn): one more text value per row.
const fewRows = 16

// stmtState is the capture of one statement, from the before to the after callback. It lives in
// stmtConn, which stands in for the statement's connection pool between the two callbacks.
type stmtState struct {
	p     *Plugin
	m     *model
	op    op
	table string
	kind  core.Kind
	soft  bool // a soft delete
	max   int  // rows itemised

	upsert, doNothing bool
	target            []*schema.Field // conflict target of an upsert
	targetKeys        []any           // its values in the inserted rows

	orig gorm.ConnPool    // the statement's pool before the plugin touched it
	conn gorm.ConnPool    // where the statement and the plugin's queries run: orig or own
	own  gorm.TxCommitter // a transaction the plugin began for this statement

	where  []clause.Expression // the statement's filter, without the pin
	before []row
	pkType string         // database type of the (first) primary key column
	kinds  []colKind      // the kinds of the model's columns, as the locking read found them
	read   bool           // the locking read succeeded: before holds the rows it locked
	locked map[string]int // key -> index in before, when there are more than fewLocked
	reread bool           // after images are read again after the statement
	// replay: GORM reads the INSERT's RETURNING itself; the plugin adds its columns to it and
	// hands GORM only its own (see replay.go), so that nothing is read again.
	replay bool

	prefix    string // the statement to intercept: "UPDATE", "DELETE" or "INSERT"
	written   string // its table as GORM writes it; empty when it cannot be told in advance
	returning string // " RETURNING <columns>"
	nextra    int
	ran       bool
	out       []row // the rows the intercepted statement returned
	budget    int   // rows still to itemise among rows that were not locked

	pinned     bool   // the statement was pinned to the locked keys: it runs unprepared
	pinPrefix  string // the pinned statement's kind ("UPDATE" or "DELETE") and table
	pinTable   string
	riskyRead  bool // the before read is more than the statement's table and conditions
	unreadable bool // the model's columns cannot be read from the table (see readable)
	// few: the statement changes at most a handful of rows (one struct inserted, the locked
	// rows of an update), so that its RETURNING may carry the transaction's id on every row.
	few bool

	sc stmtConn // the statement's connection pool while it is captured

	// fuse, when not nil, runs the statement as one that locks, reads and changes its rows
	// (see fuse.go): the texts whereBuilder writes around stmt's conditions, or on PostgreSQL
	// 18 and later the RETURNING of both images that the statement gets as it is. paired:
	// st.before[i] and st.out[i] are the same row.
	fuse   *fuseText
	stmt   *gorm.Statement
	paired bool

	// resolved is the model found by the table's name for a statement GORM runs without one
	// (db.Table("items") with a map): GORM adds no soft-delete scope and reads no RETURNING then.
	resolved *schema.Schema
}

// scoped reports whether GORM applies the model's soft-delete scope to the statement.
func (st *stmtState) scoped(stmt *gorm.Statement) bool { return !stmt.Unscoped && st.resolved == nil }

// stmtConn is the statement's connection while it is captured. It runs the one statement it
// expects with RETURNING and passes everything else through.
type stmtConn struct {
	gorm.ConnPool
	st *stmtState
}

type rowCount int64

func (n rowCount) LastInsertId() (int64, error) {
	return 0, errors.New("gormaudit: LastInsertId is not supported by PostgreSQL")
}
func (n rowCount) RowsAffected() (int64, error) { return int64(n), nil }

func (c *stmtConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st := c.st
	if st.returning == "" || st.replay || st.ran || !isStatement(query, st.prefix, st.written) {
		if st.pinned && isStatement(query, st.pinPrefix, st.pinTable) {
			return unprepared(c.ConnPool).ExecContext(ctx, query, args...)
		}
		return c.ConnPool.ExecContext(ctx, query, args...)
	}
	st.ran = true
	var id *string
	xid := ""
	t := txnOf(c.ConnPool)
	if st.few && t != nil && !t.knowsID() {
		xid = xidColumn
		id = new(string)
	}
	if st.fuse != nil {
		return c.execFused(ctx, query, args, xid, id, t)
	}
	q := query + st.returning + xid
	rows, err := unprepared(c.ConnPool).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	// The columns are those the locking read returned, of the same table, still locked.
	st.out, _, _, err = scanResult(rows, st.m, scanShape{nextra: st.nextra, xid: id, kinds: st.knownKinds(), rows: len(st.before)}, st.itemiseAfter)
	if err != nil {
		return nil, fmt.Errorf("gormaudit: reading the rows %s changed: %w", st.table, err)
	}
	if id != nil {
		t.noteID(*id)
	}
	return rowCount(len(st.out)), nil
}

// execFused runs a statement the plugin writes as one (see fuse.go): its RETURNING holds each
// changed row's image before the statement, then after it.
func (c *stmtConn) execFused(ctx context.Context, query string, args []any, xid string, id *string, t *txn) (sql.Result, error) {
	st := c.st
	var before []row
	shape := scanShape{xid: id, before: &before}
	q := query + st.fuse.returning + xid
	// The statement as it comes: built by whereBuilder, or, when someone else's clause builder
	// or code built its conditions, GORM's own, unpinned, its rows then recorded without a
	// before image (before_unknown).
	fused := st.fuse.oldNew || strings.Contains(query, st.fuse.mid)
	if !fused {
		st.p.warnOnce("unfused:"+st.table, "gormaudit: the UPDATE was not built as the plugin planned; its rows "+
			"are recorded without a before image", "table", st.table)
		shape.before = nil
		q = query + st.m.text(st.stmt, st.table).returning + xid
	}
	rows, err := unprepared(c.ConnPool).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out, kinds, pkType, err := scanResult(rows, st.m, shape, st.itemiseBefore)
	if err != nil {
		return nil, fmt.Errorf("gormaudit: reading the rows %s changed: %w", st.table, err)
	}
	st.out = out
	if fused {
		st.before, st.kinds, st.pkType, st.read, st.paired = before, kinds, pkType, true, true
	} else {
		st.budget = st.max
	}
	if id != nil {
		t.noteID(*id)
	}
	return rowCount(len(out)), nil
}

// xidColumn is the column the plugin adds to a statement of a few rows in a commit-aware
// transaction: the transaction's id (xact.IDQuery's expression), which COMMIT then need not read
// with a query of its own. After the statement's write the transaction always has one.
const xidColumn = ", pg_current_xact_id_if_assigned()::text"

// QueryContext runs a statement the plugin pinned (when GORM reads its RETURNING itself) on the
// unprepared connection, and passes everything else through.
func (c *stmtConn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.st; st.replay && !st.ran && isStatement(query, st.prefix, st.written) && strings.Contains(query, " RETURNING ") {
		return c.replayInsert(ctx, query, args)
	}
	if st := c.st; st.pinned && isStatement(query, st.pinPrefix, st.pinTable) {
		return unprepared(c.ConnPool).QueryContext(ctx, query, args...)
	}
	return c.ConnPool.QueryContext(ctx, query, args...)
}

// replayInsert runs GORM's INSERT ... RETURNING with the model's columns (and the transaction's
// id) added, keeps the rows' images, and returns GORM's columns of the result to GORM.
func (c *stmtConn) replayInsert(ctx context.Context, query string, args []any) (*sql.Rows, error) {
	st := c.st
	st.ran = true
	var id *string
	xid := ""
	t := txnOf(c.ConnPool)
	if st.few && t != nil && !t.knowsID() {
		xid = xidColumn
		id = new(string)
	}
	q := query + st.returning + xid
	rows, err := unprepared(c.ConnPool).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		rows.Close()
		return nil, err
	}
	lead := len(types) - len(st.m.cols)
	if id != nil {
		lead--
	}
	if lead < 1 {
		rows.Close()
		return nil, fmt.Errorf("gormaudit: %d columns returned by the insert into %s", len(types), st.table)
	}
	r := newReplayed(types[:lead])
	st.out, _, _, err = scanResult(rows, st.m, scanShape{lead: lead, xid: id, keep: r.keep, types: types}, st.itemiseAfter)
	if err != nil {
		return nil, err
	}
	if id != nil {
		t.noteID(*id)
	}
	return replay(r)
}

// isStatement reports whether query is GORM's statement of the given kind on table: it starts
// with "INSERT INTO <table>", "UPDATE <table>" or "DELETE FROM <table>". The table matters
// because callbacks of other plugins, registered between the plugin's and GORM's, may write to
// other tables through the same connection first. An empty table matches any.
func isStatement(query, prefix, table string) bool {
	if rest, ok := cutWordFold(query, "WITH"); ok {
		query = skipCTEs(rest)
	}
	s, ok := cutWordFold(query, prefix)
	if ok {
		switch prefix {
		case "INSERT":
			s, ok = cutWordFold(s, "INTO")
		case "DELETE":
			s, ok = cutWordFold(s, "FROM")
		}
	}
	if !ok || table == "" {
		return ok
	}
	s = strings.TrimLeft(s, " \t\r\n")
	if len(s) < len(table) || !strings.EqualFold(s[:len(table)], table) {
		return false
	}
	if len(s) == len(table) {
		return true
	}
	c := s[len(table)]
	return !(c == '_' || c == '.' || c == '$' || c == '"' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80)
}

// skipCTEs skips the common table expressions of a WITH clause ("[RECURSIVE] name [(columns)]
// AS [[NOT] MATERIALIZED] (query), ..."), returning what follows them.
func skipCTEs(s string) string {
	if rest, ok := cutWordFold(s, "RECURSIVE"); ok {
		s = rest
	}
	for {
		i := strings.IndexByte(s, '(')
		if i < 0 {
			return s
		}
		// "name (columns) AS (" or "name AS (": the query is the parenthesis after AS.
		head := strings.ToUpper(s[:i])
		if !strings.Contains(head, " AS ") && !strings.HasSuffix(strings.TrimSpace(head), " AS") &&
			!strings.HasSuffix(strings.TrimSpace(head), "MATERIALIZED") {
			s = s[i+closing(s[i:]):] // the column list
			continue
		}
		s = strings.TrimLeft(s[i+closing(s[i:]):], " \t\r\n")
		if !strings.HasPrefix(s, ",") {
			return s
		}
		s = s[1:]
	}
}

// closing returns the length of the parenthesised text at the start of s, quotes respected.
func closing(s string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(s)
}

// cutWordFold removes the keyword word (any case, after blanks and opening parentheses) from
// the start of s; the keyword must end there.
func cutWordFold(s, word string) (string, bool) {
	s = strings.TrimLeft(s, " \t\r\n(")
	if len(s) < len(word) || !strings.EqualFold(s[:len(word)], word) {
		return s, false
	}
	s = s[len(word):]
	if s != "" && !strings.ContainsRune(" \t\r\n(", rune(s[0])) {
		return s, false
	}
	return s, true
}

// knownKinds returns the kinds of the model's columns as the locking read found them, for the
// statement's RETURNING: the same columns of the same table, whose lock (taken by the read,
// held until the transaction ends) keeps their types from changing. Nil when the statement's
// table could not be told in advance (see writtenTable): the intercepted statement is then
// known only by its kind.
func (st *stmtState) knownKinds() []colKind {
	if st.written == "" {
		return nil
	}
	return st.kinds
}

// fewLocked is the most locked rows looked up by their key without an index.
const fewLocked = 8

// lockedAt returns the index in st.before of the locked row with the given key.
func (st *stmtState) lockedAt(key string) (int, bool) {
	if !st.read {
		return 0, false
	}
	if st.locked != nil {
		j, ok := st.locked[key]
		return j, ok
	}
	for j := range st.before {
		if st.before[j].key == key {
			return j, true
		}
	}
	return 0, false
}

// itemiseBefore decides which rows of the locking read get an image: the first st.max.
func (st *stmtState) itemiseBefore(i int, _ string) bool { return i < st.max }

// itemiseAfter decides which rows read after the statement get an image: those whose before
// image was itemised, and, up to the cap, rows with no before image.
func (st *stmtState) itemiseAfter(i int, key string) bool {
	if j, ok := st.lockedAt(key); ok {
		return st.before[j].vals != nil
	}
	if st.budget > 0 {
		st.budget--
		return true
	}
	return false
}

func (p *Plugin) before(o op) func(*gorm.DB) {
	return func(db *gorm.DB) {
		stmt := db.Statement
		if db.Error != nil || db.DryRun {
			return
		}
		var resolved *schema.Schema
		if stmt.Schema == nil {
			if resolved = p.modelOfTable(stmt); resolved == nil {
				if stmt.Table != "" {
					p.warnOnce("nomodel:"+stmt.Table, "gormaudit: writes to a table without a model are not recorded; "+
						"use Model(&T{}), or list the model in Options.Models", "table", stmt.Table)
				}
				return
			}
			// GORM itself goes on without a schema: the plugin uses it only while it plans.
			stmt.Schema = resolved
			defer func() { stmt.Schema = nil }()
		}
		if p.excluded(stmt) {
			return
		}
		m := p.model(stmt.Schema)
		if m.err != nil {
			db.AddError(m.err)
			return
		}
		if m.disabled {
			return
		}
		if m.noKey {
			p.warnOnce("nokey:"+stmt.Table, "gormaudit: a model without a primary key is not recorded", "table", stmt.Table)
			return
		}
		st := &stmtState{p: p, m: m, op: o, table: stmt.Table, max: p.s.maxRows, orig: stmt.ConnPool, conn: stmt.ConnPool,
			resolved: resolved}
		if !p.readable(db, st) {
			st.unreadable = true
			st.kind = [...]core.Kind{opCreate: core.KindInsert, opUpdate: core.KindUpdate, opDelete: core.KindDelete}[o]
			if o != opCreate {
				st.where, _ = filter(db, o)
			}
			if err := st.begin(db); err != nil {
				db.AddError(err)
				return
			}
			st.sc = stmtConn{ConnPool: st.conn, st: st}
			db.Statement.ConnPool = &st.sc
			return
		}
		var (
			capture bool
			err     error
		)
		switch o {
		case opCreate:
			capture, err = p.planCreate(db, st)
		case opUpdate:
			capture, err = p.planUpdate(db, st)
		case opDelete:
			capture, err = p.planDelete(db, st)
		}
		if err != nil {
			st.rollback()
			db.Statement.ConnPool = st.orig
			if errors.Is(err, errAborted) {
				// The read failed where the statement would have failed too (same table and
				// conditions): the statement fails with the database's own error.
				p.s.log.Warn("gormaudit: reading the rows before the change failed", "table", st.table, "error", err)
				err = dbError(err)
			}
			db.AddError(err)
			return
		}
		if !capture {
			return
		}
		st.sc = stmtConn{ConnPool: st.conn, st: st}
		db.Statement.ConnPool = &st.sc
	}
}

func (p *Plugin) after(db *gorm.DB) {
	sc, ok := db.Statement.ConnPool.(*stmtConn)
	if !ok || sc.st.p != p {
		return
	}
	st := sc.st
	db.Statement.ConnPool = st.conn
	defer func() { db.Statement.ConnPool = st.orig }()
	if st.resolved != nil && db.Statement.Schema == nil {
		db.Statement.Schema = st.resolved
		defer func() { db.Statement.Schema = nil }()
	}
	if db.Error != nil {
		st.rollback()
		return
	}
	recs, err := p.collect(db, st)
	if err == nil {
		own := st.own
		st.own = nil
		if err = p.hand(db.Statement.Context, st.conn, own, recs, nil); err != nil && own != nil {
			_ = own.Rollback()
			// Without the plugin the statement would have committed on its own and failed as
			// a whole: GORM reports no rows affected for a statement that returned an error.
			db.RowsAffected = 0
		}
	}
	if err != nil {
		st.rollback()
		db.AddError(err)
	}
}

// excluded reports whether Options.ExcludeTables lists the statement's table, by its name alone
// or qualified by the schema the statement names.
func (p *Plugin) excluded(stmt *gorm.Statement) bool {
	ex := p.s.excludeTables
	if len(ex) == 0 {
		return false
	}
	if ex[stmt.Table] {
		return true
	}
	schemaName, table := tableRef(stmt)
	return ex[table] || schemaName != "" && ex[schemaName+"."+table]
}

// begin starts a transaction for the statement unless it already runs in one.
func (st *stmtState) begin(db *gorm.DB) error {
	if st.own != nil {
		return nil
	}
	if _, inTx := st.orig.(gorm.TxCommitter); inTx {
		return nil
	}
	tx, c, err := beginOn(db.Statement.Context, st.orig)
	if err != nil {
		if db.Statement.Context.Err() != nil {
			// The statement alone would have failed with the same error, as it is: keep it so.
			return err
		}
		return fmt.Errorf("gormaudit: beginning a transaction for the change of %s: %w", st.table, err)
	}
	if c != nil {
		st.own, st.conn = c, tx
	}
	return nil
}

// beginOn begins a transaction on cp; c is nil when cp cannot begin one that can be committed.
func beginOn(ctx context.Context, cp gorm.ConnPool) (tx gorm.ConnPool, c gorm.TxCommitter, err error) {
	switch b := cp.(type) {
	case gorm.ConnPoolBeginner:
		tx, err = b.BeginTx(ctx, nil)
	case gorm.TxBeginner:
		tx, err = b.BeginTx(ctx, nil)
	default:
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	c, _ = tx.(gorm.TxCommitter)
	return tx, c, nil
}

func (st *stmtState) rollback() {
	if st.own != nil {
		_ = st.own.Rollback()
		st.own = nil
	}
}

// filter returns the conditions of an update or delete: the caller's, plus the primary keys
// GORM adds inside gorm:update / gorm:delete. ok is false when GORM will refuse the statement
// (no condition and no AllowGlobalUpdate): nothing is read then, which would lock the table.
func filter(db *gorm.DB, o op) (exprs []clause.Expression, ok bool) {
	stmt := db.Statement
	if c, found := stmt.Clauses["WHERE"]; found {
		if w, isWhere := c.Expression.(clause.Where); isWhere {
			exprs = append(exprs, w.Exprs...)
		}
	}
	s := stmt.Schema
	ctx := stmt.Context
	switch o {
	case opUpdate:
		// callbacks.ConvertToAssignments, which runs only without a ready SET clause.
		if _, hasSet := stmt.Clauses["SET"]; hasSet {
			break
		}
		rv := stmt.ReflectValue
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			if rv.Len() == 0 {
				break
			}
			var zero bool
			for i := 0; i < rv.Len(); i++ {
				for _, f := range s.PrimaryFields {
					if _, zero = f.ValueOf(ctx, rv.Index(i)); !zero {
						break
					}
				}
			}
			if !zero {
				_, vals := schema.GetIdentityFieldValuesMap(ctx, rv, s.PrimaryFields)
				col, values := schema.ToQueryValues("", s.PrimaryFieldDBNames, vals)
				exprs = append(exprs, clause.IN{Column: col, Values: values})
			}
		case reflect.Struct:
			for _, f := range s.PrimaryFields {
				if v, zero := f.ValueOf(ctx, rv); !zero {
					exprs = append(exprs, clause.Eq{Column: f.DBName, Value: v})
				}
			}
		}
	case opDelete:
		// callbacks.Delete and SoftDeleteDeleteClause, which read keys from structs only.
		if k := reflect.Indirect(stmt.ReflectValue).Kind(); k != reflect.Struct && k != reflect.Slice && k != reflect.Array {
			break
		}
		_, vals := schema.GetIdentityFieldValuesMap(ctx, stmt.ReflectValue, s.PrimaryFields)
		if col, values := schema.ToQueryValues(stmt.Table, s.PrimaryFieldDBNames, vals); len(values) > 0 {
			exprs = append(exprs, clause.IN{Column: col, Values: values})
		}
		if stmt.ReflectValue.CanAddr() && stmt.Dest != stmt.Model && stmt.Model != nil {
			_, vals = schema.GetIdentityFieldValuesMap(ctx, reflect.ValueOf(stmt.Model), s.PrimaryFields)
			if col, values := schema.ToQueryValues(stmt.Table, s.PrimaryFieldDBNames, vals); len(values) > 0 {
				exprs = append(exprs, clause.IN{Column: col, Values: values})
			}
		}
	}
	return exprs, len(exprs) > 0 || db.AllowGlobalUpdate
}

func hasReturning(stmt *gorm.Statement) bool {
	_, ok := stmt.Clauses["RETURNING"]
	return ok
}

func (p *Plugin) planUpdate(db *gorm.DB, st *stmtState) (bool, error) {
	where, ok := filter(db, opUpdate)
	if !ok {
		return false, nil
	}
	st.where, st.kind = where, core.KindUpdate
	if err := st.begin(db); err != nil {
		return false, err
	}
	if st.planOldNew(db, where) || st.planFused(db, where) {
		return true, nil
	}
	if err := p.lockBefore(db, st, where, st.scoped(db.Statement), "NO KEY UPDATE"); err != nil {
		return false, err
	}
	st.few = st.read && len(st.before) <= fewRows
	st.pin(db)
	st.intercept(db, "UPDATE")
	return true, nil
}

func (p *Plugin) planDelete(db *gorm.DB, st *stmtState) (bool, error) {
	where, ok := filter(db, opDelete)
	if !ok {
		return false, nil
	}
	stmt := db.Statement
	st.where, st.kind = where, core.KindDelete
	st.soft = st.scoped(stmt) && len(stmt.Schema.DeleteClauses) > 0
	if !st.soft && !hasReturning(stmt) {
		// What DELETE ... RETURNING returns is the before image, read atomically with the delete.
		if err := st.begin(db); err != nil {
			return false, err
		}
		st.budget = st.max
		st.intercept(db, "DELETE")
		return true, nil
	}
	if err := st.begin(db); err != nil {
		return false, err
	}
	if st.soft && (st.planOldNew(db, where) || st.planFused(db, where)) {
		return true, nil
	}
	strength := "UPDATE" // what DELETE takes
	if st.soft {
		strength = "NO KEY UPDATE" // what an UPDATE of non-key columns takes
	}
	if err := p.lockBefore(db, st, where, st.scoped(stmt), strength); err != nil {
		return false, err
	}
	st.few = st.read && len(st.before) <= fewRows
	st.pin(db)
	if st.soft {
		st.intercept(db, "UPDATE")
	}
	return true, nil
}

func (p *Plugin) planCreate(db *gorm.DB, st *stmtState) (bool, error) {
	stmt := db.Statement
	st.kind = core.KindInsert
	st.budget = st.max
	st.few = reflect.Indirect(stmt.ReflectValue).Kind() == reflect.Struct
	if c, ok := stmt.Clauses["ON CONFLICT"]; ok {
		if oc, ok := c.Expression.(clause.OnConflict); ok && (oc.DoNothing || oc.UpdateAll || len(oc.DoUpdates) > 0) {
			st.upsert = true
			st.doNothing = oc.DoNothing && !oc.UpdateAll && len(oc.DoUpdates) == 0
			target, err := p.conflictTarget(db, st, oc)
			if err != nil {
				return false, err
			}
			st.target = target
		}
	}
	if st.upsert {
		st.targetKeys = keysOf(stmt, st.target)
		if err := st.begin(db); err != nil {
			return false, err
		}
		if len(st.targetKeys) > 0 {
			// DO UPDATE changes the rows: lock them as the update will. DO NOTHING leaves them
			// alone: it is enough that they cannot be deleted before the insert.
			strength := "NO KEY UPDATE"
			if st.doNothing {
				strength = "KEY SHARE"
			}
			if err := p.lockBefore(db, st, []clause.Expression{keysIn(stmt.Table, st.target, st.targetKeys)}, false, strength); err != nil {
				return false, err
			}
		}
	}
	if gormReadsReturning(db) && (st.resolved == nil || hasReturning(stmt)) {
		// GORM scans RETURNING into the caller's values itself. Its own RETURNING (of columns
		// with database defaults) gets the model's columns added, and GORM sees only its own;
		// otherwise, or when the statement is not seen, the rows are read again afterwards.
		st.reread = true
		if err := st.begin(db); err != nil {
			return false, err
		}
		if !st.upsert && !hasReturning(stmt) {
			st.replay, st.prefix = true, "INSERT"
			if t := st.text(stmt); t != nil {
				st.written, st.returning = t.written, t.addList
			} else {
				st.written, st.returning = writtenTable(stmt), ", "+st.m.list(stmt, st.table)
			}
		}
		return true, nil
	}
	if err := st.begin(db); err != nil {
		return false, err
	}
	st.intercept(db, "INSERT")
	if st.upsert && st.returning != "" {
		st.returning += ", " + quotedCol(db, st.table, "xmax") + " = 0"
		st.nextra = 1
	}
	return true, nil
}

// planOldNew plans an update or soft delete as GORM's statement returning each row's image
// before and after it, on PostgreSQL 18 and later (see fuse.go).
func (st *stmtState) planOldNew(db *gorm.DB, where []clause.Expression) bool {
	if !st.p.returnsOld.Load() || hasReturning(db.Statement) {
		return false
	}
	t := st.text(db.Statement)
	if t == nil {
		return false
	}
	st.fuse, st.stmt = &t.oldNew, db.Statement
	// The transaction's id travels with every row the statement returns unless its conditions
	// name more rows than a few: a column per row costs a bulk update less than the query of its
	// own COMMIT would otherwise need.
	n, fixed := st.m.keyFixed(st.table, where)
	st.few = !fixed || n <= fewRows
	st.prefix, st.written, st.returning = "UPDATE", t.written, t.oldNew.returning
	return true
}

// planFused plans an update or soft delete as one statement (see fuse.go) when it can run so.
func (st *stmtState) planFused(db *gorm.DB, where []clause.Expression) bool {
	st.riskyRead = risky(db, where)
	n, ok := st.fusable(db, where)
	if !ok {
		return false
	}
	t := st.text(db.Statement)
	st.fuse, st.stmt = &t.fuse, db.Statement
	st.few = n <= fewRows
	st.prefix, st.written, st.returning = "UPDATE", t.written, t.fuse.returning
	return true
}

// conflictTarget returns the fields of an upsert's conflict target: its columns, or those of
// the constraint it names (read from the catalog once per table and constraint). A target that
// is not a list of model fields (an expression, a constraint that cannot be found) falls back
// to the primary key, which is the arbiter only when it conflicts: rows the upsert updates
// through another arbiter are then recorded without a before image, flagged before_unknown,
// and a warning is logged once.
func (p *Plugin) conflictTarget(db *gorm.DB, st *stmtState, oc clause.OnConflict) ([]*schema.Field, error) {
	s := db.Statement.Schema
	var names []string
	what := ""
	switch {
	case oc.OnConstraint != "":
		cols, err := p.constraintColumns(db, st, oc.OnConstraint)
		if err != nil {
			return nil, err
		}
		names, what = cols, "constraint "+oc.OnConstraint
		if len(cols) == 0 {
			what += " (not found)"
		}
	case len(oc.Columns) > 0:
		for _, c := range oc.Columns {
			if c.Raw {
				names = nil
				break
			}
			names = append(names, c.Name)
			what += c.Name + " "
		}
		if len(names) < len(oc.Columns) {
			what = "an expression"
		}
	default:
		return s.PrimaryFields, nil
	}
	target := make([]*schema.Field, 0, len(names))
	for _, n := range names {
		f := s.LookUpField(n)
		if f == nil || f.DBName == "" {
			target = nil
			break
		}
		target = append(target, f)
	}
	if len(target) > 0 {
		return target, nil
	}
	if !st.doNothing {
		p.warnOnce("target:"+st.table+"|"+what, "gormaudit: the conflict target of an upsert is not a list of the "+
			"model's columns; rows it updates are recorded without a before image",
			"table", st.table, "target", strings.TrimSpace(what))
	}
	return s.PrimaryFields, nil
}

// constraintQuery lists the columns of a constraint of a table, the table resolved as
// PostgreSQL resolves it for the statement (by the search_path when unqualified).
const constraintQuery = `SELECT a.attname FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.conrelid = to_regclass(CASE WHEN $1 = '' THEN quote_ident($2) ELSE quote_ident($1) || '.' || quote_ident($2) END)
AND c.conname = $3
ORDER BY k.ord`

// constraintColumns returns the columns of the named constraint of the statement's table, or
// none when there is no such constraint. Found constraints are cached per table and name.
func (p *Plugin) constraintColumns(db *gorm.DB, st *stmtState, name string) ([]string, error) {
	schemaName, table := tableRef(db.Statement)
	key := schemaName + "\x00" + table + "\x00" + name
	if v, ok := p.constraints.Load(key); ok {
		return v.([]string), nil
	}
	var cols []string
	err := st.guard(db.Statement.Context, true, func() error {
		rows, err := st.q().QueryContext(db.Statement.Context, constraintQuery, schemaName, table, name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				return err
			}
			cols = append(cols, c)
		}
		return rows.Err()
	})
	if err != nil {
		err = fmt.Errorf("gormaudit: reading the columns of constraint %s of %s: %w", name, table, err)
		if errors.Is(err, errAborted) {
			return nil, err
		}
		p.s.log.Warn("gormaudit: the conflict target's columns could not be read", "table", table, "error", err)
		return nil, nil
	}
	if len(cols) > 0 {
		p.constraints.Store(key, cols)
	}
	return cols, nil
}

// tableRef returns the schema (empty when the statement does not name one) and the name of the
// statement's table, from its table expression when it has one ("myschema.items", quoted or
// not, possibly followed by an alias).
func tableRef(stmt *gorm.Statement) (schemaName, table string) {
	name := stmt.Table
	if stmt.TableExpr != nil && len(stmt.TableExpr.Vars) == 0 {
		if f := strings.Fields(stmt.TableExpr.SQL); len(f) > 0 {
			name = f[0]
		}
	}
	name = strings.NewReplacer(`"`, "", "`", "").Replace(name)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

// gormReadsReturning reports whether gorm:create will send a RETURNING clause and scan it.
func gormReadsReturning(db *gorm.DB) bool {
	stmt := db.Statement
	if hasReturning(stmt) {
		return true
	}
	if !utils.Contains(db.Callback().Create().Clauses, "RETURNING") {
		return false
	}
	for _, f := range stmt.Schema.FieldsWithDefaultDBValue {
		if f.Readable {
			return true
		}
	}
	return false
}

func quotedCol(db *gorm.DB, table, name string) string {
	var b strings.Builder
	db.Statement.QuoteTo(&b, clause.Column{Table: table, Name: name})
	return b.String()
}

// intercept asks stmtConn to run the statement with RETURNING, unless the caller's statement
// reads RETURNING itself.
func (st *stmtState) intercept(db *gorm.DB, prefix string) {
	if hasReturning(db.Statement) {
		st.reread = st.op != opDelete || st.soft
		return
	}
	st.prefix = prefix
	if t := st.text(db.Statement); t != nil {
		st.written, st.returning = t.written, t.returning
		return
	}
	st.written = writtenTable(db.Statement)
	st.returning = " RETURNING " + st.m.list(db.Statement, st.table)
}

// text returns the model's texts for the statement's table (see tableText), or nil when the
// statement names its table through a table expression.
func (st *stmtState) text(stmt *gorm.Statement) *tableText {
	if stmt.TableExpr != nil {
		return nil
	}
	return st.m.text(stmt, st.table)
}

// writtenTable returns the statement's table as GORM writes it into INSERT, UPDATE and DELETE:
// its table expression, or its quoted name; empty for an expression with parameters, whose
// placeholders are numbered only when the statement is built.
func writtenTable(stmt *gorm.Statement) string {
	if stmt.TableExpr != nil {
		if len(stmt.TableExpr.Vars) > 0 {
			return ""
		}
		return stmt.TableExpr.SQL
	}
	var b strings.Builder
	stmt.QuoteTo(&b, stmt.Table)
	return b.String()
}

// lockBefore reads and locks the rows the statement will change: the before images. When the
// read fails and the statement can still run as it would without the plugin (see guard), it
// runs unpinned and its rows are recorded without a before image (before_unknown); the error
// is returned only when the read left the application's transaction aborted.
func (p *Plugin) lockBefore(db *gorm.DB, st *stmtState, where []clause.Expression, scoped bool, strength string) error {
	if st.op != opCreate {
		st.riskyRead = risky(db, where)
	}
	var before []row
	var pkType string
	var kinds []colKind
	err := st.guard(db.Statement.Context, st.riskyRead, func() error {
		rows, err := p.readByKey(db, st, where, scoped, strength)
		if rows == nil && err == nil {
			rows, err = p.read(db, st, where, scoped, strength, "")
		}
		if err != nil {
			return err
		}
		before, kinds, pkType, err = scanResult(rows, st.m, scanShape{}, st.itemiseBefore)
		return err
	})
	if err != nil {
		err = fmt.Errorf("gormaudit: reading the rows of %s before the change: %w", st.table, err)
		if errors.Is(err, errAborted) {
			return err
		}
		p.s.log.Warn("gormaudit: the rows could not be read before the change; the statement runs as "+
			"without the plugin and its rows are recorded without a before image (before_unknown)",
			"table", st.table, "error", err)
		st.before, st.read, st.locked, st.budget = nil, false, nil, st.max
		return nil
	}
	// A join (UPDATE ... FROM) yields a row once per match: keep each row once.
	st.read, st.locked = true, nil
	if len(before) > fewLocked {
		st.locked = make(map[string]int, len(before))
	}
	kept := before[:0]
	for _, r := range before {
		if st.locked == nil {
			st.before = kept
			if _, dup := st.lockedAt(r.key); dup {
				continue
			}
		} else {
			if _, dup := st.locked[r.key]; dup {
				continue
			}
			st.locked[r.key] = len(kept)
		}
		kept = append(kept, r)
	}
	st.before, st.pkType, st.kinds = kept, pkType, kinds
	st.budget = max(st.max-len(kept), 0)
	return nil
}

// read runs SELECT <model columns> <extra> FROM <table> WHERE <where> [soft-delete scope]
// ORDER BY <primary key> [FOR <strength>] on the statement's connection.
func (p *Plugin) read(db *gorm.DB, st *stmtState, where []clause.Expression, scoped bool, strength, extra string) (*sql.Rows, error) {
	stmt := db.Statement
	q := &gorm.Statement{
		DB:        db,
		ConnPool:  st.q(),
		Context:   stmt.Context,
		Table:     stmt.Table,
		TableExpr: stmt.TableExpr,
		Schema:    stmt.Schema,
		Clauses:   map[string]clause.Clause{},
	}
	lock := clause.Locking{Strength: strength}
	var prefix []string
	if f, ok := fromOf(stmt); ok && st.op != opCreate && strength != "" {
		// UPDATE ... FROM: the statement's rows are those of the target joined with the FROM
		// list; only the target's rows are locked, as the UPDATE locks them.
		q.AddClause(clause.From{Tables: append([]clause.Table{{Name: clause.CurrentTable}}, f.Tables...), Joins: f.Joins})
		lock.Table = clause.Table{Name: lockName(stmt)}
	} else {
		q.AddClause(clause.From{})
	}
	if st.op != opCreate && strength != "" {
		prefix = prefixClauses(db)
		for _, name := range prefix {
			q.Clauses[name] = stmt.Clauses[name]
		}
	}
	if len(where) > 0 {
		q.AddClause(clause.Where{Exprs: where})
	}
	if scoped {
		for _, c := range stmt.Schema.QueryClauses {
			q.AddClause(c)
		}
	}
	q.AddClause(st.m.orderByPK(st.table))
	if strength != "" {
		q.AddClause(lock)
	}
	q.SQL.Grow(256)
	if len(prefix) > 0 {
		q.Build(prefix...)
		if isWrite("WITH " + q.SQL.String()) {
			// Run in the read, a data-changing WITH would change the data once more.
			return nil, errors.New("gormaudit: the statement's WITH changes data; its rows are not read beforehand")
		}
		q.SQL.WriteByte(' ')
	}
	q.SQL.WriteString("SELECT ")
	q.SQL.WriteString(st.m.list(stmt, st.table))
	q.SQL.WriteString(extra)
	q.SQL.WriteByte(' ')
	q.Build("FROM", "WHERE", "ORDER BY", "FOR")
	if q.Error != nil {
		return nil, q.Error
	}
	return st.q().QueryContext(stmt.Context, q.SQL.String(), q.Vars...)
}

// readByKey runs the locking read of a statement whose only condition is its single-column primary
// key equal to a value (GORM's Model(&row).Update, Delete(&row)) from the per-table query text,
// without building a statement: the same SELECT read builds. It returns no rows and no error
// for any other statement.
func (p *Plugin) readByKey(db *gorm.DB, st *stmtState, where []clause.Expression, scoped bool, strength string) (*sql.Rows, error) {
	stmt := db.Statement
	if len(where) != 1 || st.m.npk != 1 || st.riskyRead || stmt.TableExpr != nil || strength == "" ||
		(scoped && len(stmt.Schema.QueryClauses) > 0) || len(prefixClauses(db)) > 0 {
		return nil, nil
	}
	if _, from := fromOf(stmt); from {
		return nil, nil
	}
	eq, ok := where[0].(clause.Eq)
	if !ok {
		return nil, nil
	}
	switch c := eq.Column.(type) {
	case string:
		ok = c == st.m.cols[0].name
	case clause.Column:
		ok = !c.Raw && c.Alias == "" && c.Name == st.m.cols[0].name && (c.Table == "" || c.Table == clause.CurrentTable || c.Table == st.table)
	default:
		ok = false
	}
	if !ok || eq.Value == nil {
		return nil, nil
	}
	switch eq.Value.(type) {
	case clause.Expression, *gorm.DB, []any:
		return nil, nil
	}
	if rv := reflect.ValueOf(eq.Value); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() != reflect.Uint8 {
		return nil, nil
	}
	t := st.m.text(stmt, st.table) // stmt.TableExpr is nil
	for i, s := range strengths {
		if s == strength {
			return st.q().QueryContext(stmt.Context, t.lockByKey[i], eq.Value)
		}
	}
	return st.q().QueryContext(stmt.Context, t.keyHead[0]+" = $1"+t.keyOrder+" FOR "+strength, eq.Value)
}

// readKeys reads rows by primary key (keys as returned by keysOf or row.pk), unlocked. For a
// single-column key the query text comes from a per-table cache instead of a GORM statement.
// With withID the transaction's id follows the columns (see xidColumn).
func (p *Plugin) readKeys(db *gorm.DB, st *stmtState, keys []any, withID bool) (*sql.Rows, error) {
	stmt := db.Statement
	if st.m.npk != 1 || (stmt.TableExpr != nil && len(stmt.TableExpr.Vars) > 0) {
		extra := ""
		if withID {
			extra = xidColumn
		}
		return p.read(db, st, []clause.Expression{st.m.pkIn(st.table, keys)}, false, "", extra)
	}
	head, order := st.m.keyQuery(stmt, st.table, withID)
	var b strings.Builder
	b.Grow(len(head) + len(order) + 6*len(keys) + 8)
	b.WriteString(head)
	if len(keys) == 1 {
		b.WriteString(" = $1")
	} else {
		b.WriteString(" IN (")
		for i := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i + 1))
		}
		b.WriteByte(')')
	}
	b.WriteString(order)
	return st.q().QueryContext(stmt.Context, b.String(), keys...)
}

// pin restricts the statement to the locked rows: "<primary key> IN (...)", or for many rows
// of a single-column key "<key> = ANY(<one array parameter>)", which PostgreSQL plans and binds
// much faster than thousands of parameters.
func (st *stmtState) pin(db *gorm.DB) {
	if !st.read {
		return // the read failed: the statement runs as without the plugin
	}
	st.pinned = true
	st.pinPrefix = "UPDATE"
	t := st.text(db.Statement)
	if t != nil {
		st.pinTable = t.written
	} else {
		st.pinTable = writtenTable(db.Statement)
	}
	if st.op == opDelete && !st.soft {
		st.pinPrefix = "DELETE"
	}
	if st.m.npk == 1 && len(st.before) > 16 {
		if e, ok := anyOf(st.table, st.m.cols[0].name, st.pkType, st.before); ok {
			db.Statement.AddClause(clause.Where{Exprs: []clause.Expression{e}})
			return
		}
	}
	if len(st.before)*st.m.npk > pinMaxParams {
		return
	}
	var keys []any
	if len(st.before) == 1 && st.m.npk == 1 {
		keys = st.before[0].pk // one key of one column: a list of one value already
	} else {
		keys = make([]any, len(st.before))
		for i, r := range st.before {
			if st.m.npk == 1 {
				keys[i] = r.pk[0]
			} else {
				keys[i] = r.pk
			}
		}
	}
	var in clause.Expression
	if t != nil {
		in = clause.IN{Column: t.pkCol, Values: keys}
	} else {
		in = st.m.pkIn(st.table, keys)
	}
	db.Statement.AddClause(clause.Where{Exprs: []clause.Expression{in}})
}

// anyOf returns "<column> = ANY(?::<type>[])" with the keys as one array literal, for keys the
// driver returned as integers or as text (PostgreSQL's own text form, so that it casts back
// exactly); with a type name it cannot use, it compares the column's text form instead.
func anyOf(table, column, pgType string, rows []row) (clause.Expression, bool) {
	var b strings.Builder
	b.WriteByte('{')
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		switch v := r.pk[0].(type) {
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case string:
			b.WriteByte('"')
			for j := 0; j < len(v); j++ {
				if v[j] == '"' || v[j] == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(v[j])
			}
			b.WriteByte('"')
		default:
			return nil, false
		}
	}
	b.WriteByte('}')
	col := clause.Column{Table: table, Name: column}
	if typeName(pgType) {
		return clause.Expr{SQL: "? = ANY(?::" + strings.ToLower(pgType) + "[])", Vars: []any{col, b.String()}}, true
	}
	return clause.Expr{SQL: "?::text = ANY(?::text[])", Vars: []any{col, b.String()}}, true
}

// typeName reports whether s can be spliced into SQL as a type name: a plain identifier, not
// the bare OID the driver reports for types it does not know.
func typeName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// keysOf returns the values of fields in the rows the statement inserts (a struct, a slice of
// structs or pointers, a map or a slice of maps), skipping rows where all are zero; one value
// per row for one field, a []any per row for several.
func keysOf(stmt *gorm.Statement, fields []*schema.Field) []any {
	var out []any
	add := func(vals []any, zero bool) {
		if zero {
			return
		}
		if len(vals) == 1 {
			out = append(out, vals[0])
		} else {
			out = append(out, vals)
		}
	}
	fromStruct := func(rv reflect.Value) {
		vals := make([]any, len(fields))
		allZero := true
		for i, f := range fields {
			v, zero := f.ValueOf(stmt.Context, rv)
			vals[i] = v
			allZero = allZero && zero
		}
		add(vals, allZero)
	}
	fromMap := func(m map[string]any) {
		vals := make([]any, len(fields))
		allZero := true
		for i, f := range fields {
			v, ok := m[f.DBName]
			if !ok {
				v, ok = m[f.Name]
			}
			vals[i] = v
			allZero = allZero && (!ok || v == nil || reflect.ValueOf(v).IsZero())
		}
		add(vals, allZero)
	}
	switch d := stmt.Dest.(type) {
	case map[string]any:
		fromMap(d)
		return out
	case *map[string]any:
		fromMap(*d)
		return out
	case []map[string]any:
		for _, m := range d {
			fromMap(m)
		}
		return out
	case *[]map[string]any:
		for _, m := range *d {
			fromMap(m)
		}
		return out
	}
	rv := reflect.Indirect(stmt.ReflectValue)
	switch rv.Kind() {
	case reflect.Struct:
		fromStruct(rv)
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			if e := reflect.Indirect(rv.Index(i)); e.Kind() == reflect.Struct {
				fromStruct(e)
			}
		}
	}
	return out
}

func keysIn(table string, fields []*schema.Field, keys []any) clause.Expression {
	if len(fields) == 1 {
		return clause.IN{Column: clause.Column{Table: table, Name: fields[0].DBName}, Values: keys}
	}
	cols := make([]clause.Column, len(fields))
	for i, f := range fields {
		cols[i] = clause.Column{Table: table, Name: f.DBName}
	}
	return clause.IN{Column: cols, Values: keys}
}
