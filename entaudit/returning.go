package entaudit

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
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
	limit   int
	claimed atomic.Bool
	rs      *rowSet // the rows the statement returned, once it ran
	// pre holds the rows an INSERT ... ON CONFLICT ... DO UPDATE found in its way, read and
	// locked by the conflict target before it ran: the before images of the rows it updates.
	pre *rowSet
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

// intercept runs a statement on eq; the mutation's own INSERT or UPDATE (see returning) is
// extended to return the rows it wrote.
func intercept(ctx context.Context, eq dialect.ExecQuerier, query string, args, v any, exec bool) error {
	if r, _ := ctx.Value(returningKey{}).(*returning); r != nil {
		if q, shape, ok := r.rewrite(query, exec); ok {
			return r.run(ctx, eq, q, shape, args, v, exec)
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
	r.rs = s.rs
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
