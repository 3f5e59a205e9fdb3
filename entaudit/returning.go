package entaudit

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
)

// returning asks the Driver wrapper to read the rows the mutation's own INSERT or UPDATE writes
// in the statement itself, with a RETURNING clause, so that no further round trip is needed for
// the after image. It applies to the first statement of the mutation that matches; anything the
// statement does not look like leaves it alone, and the hook then reads the rows itself.
type returning struct {
	t       *typeInfo
	update  bool
	withID  bool // the UPDATE also returns the transaction's id (see xidColumn)
	limit   int
	claimed atomic.Bool
	rs      *rowSet // the rows the statement returned, once it ran
	// oldNew: the UPDATE also returns each row as it was before it (PostgreSQL 18 and later),
	// into before; the hook then reads and locks nothing beforehand (see capture.update).
	oldNew bool
	before *rowSet
	ignore map[string]bool // with oldNew: the columns the rows' diffs leave out (Options.IgnoreFields)
	// pre holds the rows an INSERT ... ON CONFLICT ... DO UPDATE found in its way, read and
	// locked by the conflict target before it ran: the before images of the rows it updates.
	pre *rowSet
	// row is the one row an UPDATE returned, as the driver gave it, when ent may read it back
	// from it (see serve); plain reports that the table has no trigger or rule.
	plain bool
	row   *heldRow
	stale atomic.Bool // a statement ran after the UPDATE
}

type returningKey struct{}

func withReturning(ctx context.Context, r *returning) context.Context {
	return context.WithValue(ctx, returningKey{}, r)
}

// rewrite returns the statement extended with a RETURNING clause and the shape of its result,
// or false when the statement is not the mutation's own INSERT or UPDATE (ent's builders write
// them as INSERT INTO "table" ... RETURNING "id" and UPDATE "table" SET ...).
func (r *returning) rewrite(query string, exec bool) (string, int, bool) {
	var q string
	var shape int
	switch table := r.t.Table; {
	case r.update:
		if !exec || !strings.HasPrefix(query, `UPDATE `+quote(table)+` SET `) || strings.Contains(query, " RETURNING ") {
			return "", 0, false
		}
		q, shape = query+` RETURNING *`, shapeSelect
		if r.oldNew {
			q, shape = query+oldNewReturning, shapeOldNew
		}
		switch {
		case r.withID && r.oldNew:
			q, shape = q+xidColumn, shapeOldNewXID
		case r.withID:
			q, shape = q+xidColumn, shapeSelectXID
		}
	case !strings.HasPrefix(query, `INSERT INTO `+quote(table)+` `):
		return "", 0, false
	case exec: // an id given by the application, and no ON CONFLICT: ent expects no rows back
		if strings.Contains(query, " RETURNING ") {
			return "", 0, false
		}
		q, shape = query+` RETURNING *, xmax::text`, shapeXmax
	default:
		if !strings.HasSuffix(query, ` RETURNING `+quote(r.t.IDColumn)) {
			return "", 0, false
		}
		q, shape = query+`, *, xmax::text`, shapeLeadXmax
	}
	if !r.claimed.CompareAndSwap(false, true) {
		return "", 0, false
	}
	return q, shape, true
}

// xidColumn is the column an UPDATE of a few rows in one of the hook's transactions also returns:
// the transaction's id (xact.IDQuery's expression), which COMMIT then need not read with a query
// of its own. After the statement's write the transaction always has one.
const xidColumn = ", pg_current_xact_id_if_assigned()::text"

// oldNewReturning is the RETURNING of an update on PostgreSQL 18 and later: each row as it was
// before the statement, then as it is after it. The aliases keep it valid on a table named old or
// new.
const oldNewReturning = ` RETURNING WITH (OLD AS entaudit_old, NEW AS entaudit_new) entaudit_old.*, entaudit_new.*`

// fewRows is the most rows an UPDATE may change for its RETURNING to carry the transaction's id:
// one more text value per row.
const fewRows = 16

// intercept runs a statement on eq; the mutation's own INSERT or UPDATE (see returning) is
// extended to return the rows it wrote, and ent's read of the row it updated is answered from
// them (see serve).
func intercept(ctx context.Context, eq dialect.ExecQuerier, query string, args, v any, exec bool) error {
	if p, _ := ctx.Value(probeKey{}).(*probe); p != nil && query == probeQuery {
		p.seen = true // answered here: the statement passed through the wrapper
		return nil
	}
	if r, _ := ctx.Value(returningKey{}).(*returning); r != nil {
		if q, shape, ok := r.rewrite(query, exec); ok {
			return r.run(ctx, eq, q, shape, args, v, exec)
		}
		if r.row != nil && !exec && !r.stale.Load() {
			fallback := func(dest ...any) error {
				var rows sql.Rows
				if err := eq.Query(ctx, query, args, &rows); err != nil {
					return err
				}
				defer rows.Close()
				if !rows.Next() {
					if err := rows.Err(); err != nil {
						return err
					}
					return stdsql.ErrNoRows
				}
				return errors.Join(rows.Scan(dest...), rows.Close())
			}
			if vr, ok := v.(*sql.Rows); ok && r.serve(query, args, vr, fallback) {
				return nil
			}
		}
		if r.claimed.Load() {
			r.stale.Store(true)
		}
	}
	if exec {
		return eq.Exec(ctx, query, args, v)
	}
	return eq.Query(ctx, query, args, v)
}

func (r *returning) run(ctx context.Context, eq dialect.ExecQuerier, q string, shape int, args, v any, exec bool) error {
	if !r.update && strings.Contains(q, " ON CONFLICT (") && strings.Contains(q, " DO UPDATE SET ") {
		pre, err := r.lockConflicts(ctx, eq, q, args)
		if err != nil {
			return err
		}
		r.pre = pre
	}
	var rows sql.Rows
	if err := eq.Query(ctx, q, args, &rows); err != nil {
		return err
	}
	s, err := newScanner(&rows, r.t, r.limit, shape)
	if err != nil {
		rows.Close()
		return fmt.Errorf("entaudit: reading the rows written to %s: %w", r.t.Table, err)
	}
	s.ignore = r.ignore
	if !exec {
		vr, ok := v.(*sql.Rows)
		if !ok {
			rows.Close()
			return fmt.Errorf("entaudit: unexpected query destination %T", v)
		}
		*vr = sql.Rows{ColumnScanner: &returningRows{ColumnScanner: rows.ColumnScanner, s: s, r: r}}
		return nil
	}
	n := 0
	for rows.Next() {
		if err := s.scan(&rows); err != nil {
			rows.Close()
			return err
		}
		n++
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	r.rs, r.before = s.rs, s.old
	if r.update && r.plain && n == 1 && len(s.rs.images) == 1 {
		r.row = &heldRow{vals: slices.Clone(s.vals[s.lead:s.end]), cols: s.l.cols[s.lead:s.end], types: s.l.types[s.lead:s.end], id: s.rs.ids[0]}
	}
	switch res := v.(type) {
	case nil:
	case *stdsql.Result:
		*res = affectedRows(n)
	default:
		return fmt.Errorf("entaudit: unexpected exec destination %T", v)
	}
	return nil
}

// returningRows shows ent the first column of an INSERT ... RETURNING "id", *, xmax (the id it
// asked for) and keeps the rest.
type returningRows struct {
	sql.ColumnScanner
	s *scanner
	r *returning
}

func (rr *returningRows) Columns() ([]string, error) {
	cols, err := rr.ColumnScanner.Columns()
	if err != nil || len(cols) == 0 {
		return cols, err
	}
	return cols[:1], nil
}

func (rr *returningRows) ColumnTypes() ([]*stdsql.ColumnType, error) {
	types, err := rr.ColumnScanner.ColumnTypes()
	if err != nil || len(types) == 0 {
		return types, err
	}
	return types[:1], nil
}

func (rr *returningRows) Scan(dest ...any) error {
	if len(dest) != 1 {
		return fmt.Errorf("entaudit: %d scan destinations for the id column", len(dest))
	}
	return rr.s.scan(rr.ColumnScanner, dest[0])
}

func (rr *returningRows) Close() error {
	rr.r.rs = rr.s.rs
	return rr.ColumnScanner.Close()
}

// heldRow is the row an UPDATE ... RETURNING * returned, as the driver gave it.
type heldRow struct {
	vals  []any
	cols  []string
	types []*stdsql.ColumnType
	id    string
}

// serve answers ent's read of the row its UpdateOne just updated (SELECT "c", ... FROM "t" WHERE
// "id" = $1, sent right after the UPDATE, columns and key possibly qualified by the table) from the row the UPDATE returned, which saves
// a round trip. It does so only when that row is exactly what the read would return: no other
// statement ran since the UPDATE in the transaction (the row is locked, so no other transaction
// can change it), and the table has no trigger or rule (see plainTable) that could change the
// row after the UPDATE returned it. Anything else goes to the database.
// fallback reads the row from the database after all, for destinations assign cannot fill.
func (r *returning) serve(query string, args any, v *sql.Rows, fallback func(dest ...any) error) bool {
	hr := r.row
	argv, ok := args.([]any)
	if !ok || len(argv) != 1 || idString(argv[0]) != hr.id {
		return false
	}
	t := quote(r.t.Table)
	rest, ok := strings.CutPrefix(query, "SELECT ")
	if !ok {
		return false
	}
	list, ok := strings.CutSuffix(rest, " FROM "+t+" WHERE "+quote(r.t.IDColumn)+" = $1")
	if !ok {
		list, ok = strings.CutSuffix(rest, " FROM "+t+" WHERE "+t+"."+quote(r.t.IDColumn)+" = $1")
	}
	if !ok || list == "" {
		return false
	}
	var idx []int
	for _, c := range strings.Split(list, ", ") {
		name := strings.TrimPrefix(c, t+".")
		if len(name) < 2 || name[0] != '"' || name[len(name)-1] != '"' || strings.Contains(name[1:len(name)-1], `"`) {
			return false
		}
		j := slices.Index(hr.cols, name[1:len(name)-1])
		if j < 0 {
			return false
		}
		idx = append(idx, j)
	}
	r.row = nil // served once
	*v = sql.Rows{ColumnScanner: &heldRows{hr: hr, idx: idx, fallback: fallback}}
	return true
}

// heldRows shows a heldRow as the result of a query of some of its columns.
type heldRows struct {
	hr       *heldRow
	idx      []int
	read     bool
	closed   bool
	fallback func(dest ...any) error
}

func (h *heldRows) Columns() ([]string, error) {
	cols := make([]string, len(h.idx))
	for i, j := range h.idx {
		cols[i] = h.hr.cols[j]
	}
	return cols, nil
}

func (h *heldRows) ColumnTypes() ([]*stdsql.ColumnType, error) {
	types := make([]*stdsql.ColumnType, len(h.idx))
	for i, j := range h.idx {
		types[i] = h.hr.types[j]
	}
	return types, nil
}

func (h *heldRows) Next() bool {
	if h.read || h.closed {
		return false
	}
	h.read = true
	return true
}

func (h *heldRows) NextResultSet() bool { return false }
func (h *heldRows) Err() error          { return nil }
func (h *heldRows) Close() error        { h.closed = true; return nil }

// Scan assigns the row's values the way database/sql does for the values a driver returns:
// through the destination's Scan method, or directly when the value fits the destination.
func (h *heldRows) Scan(dest ...any) error {
	if !h.read || h.closed {
		return errors.New("entaudit: Scan called without calling Next")
	}
	if len(dest) != len(h.idx) {
		return fmt.Errorf("entaudit: expected %d destination arguments in Scan, not %d", len(h.idx), len(dest))
	}
	for i, d := range dest {
		src := h.hr.vals[h.idx[i]]
		if b, ok := src.([]byte); ok {
			src = slices.Clone(b)
		}
		if err := assign(d, src); err != nil {
			// A destination of a kind database/sql converts to and assign does not: the query
			// goes to the database, whose rows convert as they would without the hook.
			return h.fallback(dest...)
		}
	}
	return nil
}

// assign stores src, a value as a driver returns it, in dest.
func assign(dest, src any) error {
	if sc, ok := dest.(stdsql.Scanner); ok {
		return sc.Scan(src)
	}
	switch d := dest.(type) {
	case *any:
		*d = src
		return nil
	case *[]byte:
		switch x := src.(type) {
		case nil:
			*d = nil
			return nil
		case []byte:
			*d = x
			return nil
		case string:
			*d = []byte(x)
			return nil
		}
	case *string:
		switch x := src.(type) {
		case string:
			*d = x
			return nil
		case []byte:
			*d = string(x)
			return nil
		}
	}
	dv := reflect.ValueOf(dest)
	if dv.Kind() != reflect.Pointer || dv.IsNil() {
		return fmt.Errorf("destination %T is not a pointer", dest)
	}
	ev := dv.Elem()
	if src == nil {
		switch ev.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
			ev.SetZero()
			return nil
		}
		return fmt.Errorf("converting NULL to %s is unsupported", ev.Type())
	}
	sv := reflect.ValueOf(src)
	switch {
	case sv.Type().AssignableTo(ev.Type()):
		ev.Set(sv)
	case ev.Kind() == reflect.Pointer && sv.Type().AssignableTo(ev.Type().Elem()):
		p := reflect.New(ev.Type().Elem())
		p.Elem().Set(sv)
		ev.Set(p)
	case sv.Kind() == ev.Kind() && sv.Type().ConvertibleTo(ev.Type()):
		ev.Set(sv.Convert(ev.Type()))
	default:
		return fmt.Errorf("unsupported Scan, storing %T into %s", src, ev.Type())
	}
	return nil
}

// affectedRows is the result of an UPDATE turned into a query.
type affectedRows int64

func (n affectedRows) LastInsertId() (int64, error) {
	return 0, errors.New("entaudit: LastInsertId is not supported")
}
func (n affectedRows) RowsAffected() (int64, error) { return int64(n), nil }

// result returns the rows the UPDATE returned when they are exactly the locked rows of before,
// and nil otherwise.
func (r *returning) result(before *rowSet) *rowSet {
	if r == nil || r.rs == nil || len(r.rs.ids) != len(before.ids) || len(r.rs.images) != len(r.rs.ids) {
		return nil
	}
	for _, id := range before.ids {
		if _, ok := r.rs.byID[id]; !ok {
			return nil
		}
	}
	return r.rs
}

// only returns a rowSet of the one row id, or nil when rs does not hold its image.
func (rs *rowSet) only(id string) *rowSet {
	if rs == nil {
		return nil
	}
	if len(rs.ids) == 1 && len(rs.images) == 1 && rs.ids[0] == id {
		return rs // the one row of a single create: nothing to pick
	}
	i, ok := rs.byID[id]
	if !ok {
		return nil
	}
	out := &rowSet{idType: rs.idType, ids: []string{id}, rawIDs: []any{rs.rawIDs[i]}, images: []map[string]any{rs.images[i]}, byID: map[string]int{id: 0}}
	if len(rs.xmax) > i {
		out.xmax = []string{rs.xmax[i]}
	}
	return out
}

// lockConflicts reads and locks the rows an upsert (ent's INSERT INTO "t" (columns) VALUES
// ($1, ...), ... ON CONFLICT (target) DO UPDATE ...) may update: those whose conflict target
// columns hold the values of one of its rows. It returns nil without reading when the statement
// is not of that shape (a conflict on a named constraint, values that are not plain parameters):
// the rows it updates are then recorded without a before image.
func (r *returning) lockConflicts(ctx context.Context, eq dialect.ExecQuerier, q string, args any) (*rowSet, error) {
	argv, ok := args.([]any)
	head := `INSERT INTO ` + quote(r.t.Table) + ` (`
	if !ok || !strings.HasPrefix(q, head) {
		return nil, nil
	}
	rest := q[len(head):]
	i := strings.Index(rest, `) VALUES `)
	if i < 0 {
		return nil, nil
	}
	cols := splitIdents(rest[:i])
	rest = rest[i+len(`) VALUES `):]
	j := strings.Index(rest, ` ON CONFLICT (`)
	if len(cols) == 0 || j < 0 {
		return nil, nil
	}
	// The VALUES take the first parameters; those of the DO UPDATE SET clause follow.
	n := strings.Count(rest[:j], "(")
	if len(argv) < n*len(cols) || rest[:j] != placeholders(n, len(cols)) {
		return nil, nil
	}
	rest = rest[j+len(` ON CONFLICT (`):]
	k := strings.Index(rest, `)`)
	if k < 0 {
		return nil, nil
	}
	target := splitIdents(rest[:k])
	idx := make([]int, len(target))
	for ti, tc := range target {
		idx[ti] = -1
		for ci, c := range cols {
			if c == tc {
				idx[ti] = ci
			}
		}
		if idx[ti] < 0 {
			return nil, nil // a target column the INSERT does not set: NULL, never a conflict
		}
	}
	sel := pg.Select("*").From(pg.Table(r.t.Table))
	var tuples []*sql.Predicate
	for row := 0; row < n; row++ {
		var eqs []*sql.Predicate
		for ti, tc := range target {
			v := argv[row*len(cols)+idx[ti]]
			if v == nil {
				eqs = nil
				break
			}
			eqs = append(eqs, sql.EQ(sel.C(tc), v))
		}
		if len(eqs) > 0 {
			tuples = append(tuples, sql.And(eqs...))
		}
	}
	if len(tuples) == 0 {
		return &rowSet{byID: map[string]int{}}, nil
	}
	sel.Where(sql.Or(tuples...)).OrderBy(sel.C(r.t.IDColumn)).For(sql.LockNoKeyUpdate)
	sq, sargs := sel.Query()
	var rows sql.Rows
	if err := eq.Query(ctx, sq, sargs, &rows); err != nil {
		return nil, fmt.Errorf("entaudit: reading %s by the conflict target: %w", r.t.Table, err)
	}
	defer rows.Close()
	rs, err := scanRows(&rows, r.t, r.limit, false)
	if err != nil {
		return nil, fmt.Errorf("entaudit: reading %s by the conflict target: %w", r.t.Table, err)
	}
	return rs, nil
}

// splitIdents splits ent's list of quoted identifiers ("a", "b").
func splitIdents(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ", ") {
		if len(p) < 2 || p[0] != '"' || p[len(p)-1] != '"' || strings.Contains(p[1:len(p)-1], `"`) {
			return nil
		}
		out = append(out, p[1:len(p)-1])
	}
	return out
}

// placeholders renders the VALUES of n rows of width parameters the way ent writes them.
func placeholders(n, width int) string {
	var b strings.Builder
	p := 1
	for row := 0; row < n; row++ {
		if row > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := 0; c < width; c++ {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", p)
			p++
		}
		b.WriteByte(')')
	}
	return b.String()
}

// probeQuery is the statement that tells whether an ent.Tx's statements pass through the wrapped
// driver: the wrapper answers it itself, without the database; an unwrapped driver runs it.
const probeQuery = "SELECT 1"

// probe is set by the wrapper when the probe query passes through it.
type probe struct{ seen bool }

type probeKey struct{}
