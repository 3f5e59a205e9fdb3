package entaudit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
)

// capture records one mutation: it reads and locks what the mutation is about to change, runs
// it, reads the result and builds the records.
type capture struct {
	h     *hook
	t     *typeInfo
	m     ent.Mutation
	op    ent.Op
	drv   dialect.Driver
	state *txState // where the records wait for the commit; nil outside a transaction
	// unlocked is set for an update or delete outside a transaction (the driver is not wrapped):
	// the rows read before the write were not locked until it ran.
	unlocked bool
	inTx     bool // the mutation runs in an ent.Tx (state is that transaction's)

	at      time.Time
	edges   map[string]*edgeChange // edges the mutation changes
	before  *rowSet                // the mutated rows, locked
	filter  *sql.Predicate         // the bulk statement's filter, for its summary record
	targets []*targetCapture       // rows of other tables whose foreign key changes
	joins   map[string]map[string][]string
	// raws keeps the values behind the ids of join-table links, for the link records' keys and
	// images: the mutated rows' ids, and per join-table edge the ids at the other end.
	raws map[string]any

	// arena holds the records record makes next: one for the first, then up to 64 at a time,
	// so that a bulk mutation does not allocate each record alone and one record kept long
	// keeps few others' memory.
	arena []core.Record
	made  int
}

// rawKey is the key of an id's value in capture.raws: the edge ("" for the mutated rows).
func rawKey(edge, id string) string { return edge + "\x00" + id }

func (c *capture) keepRaw(edge string, v any) {
	if c.raws == nil {
		c.raws = map[string]any{}
	}
	c.raws[rawKey(edge, idString(v))] = rawID(v)
}

// edgeChange is what a mutation does to one edge.
type edgeChange struct {
	added, removed       []string
	addedRaw, removedRaw []any
	cleared              bool
}

// targetCapture follows the rows of another table that hold a foreign key to the mutated rows.
type targetCapture struct {
	e      *edgeInfo
	before *rowSet
	after  *rowSet
	linked map[string][]string // mutated row id -> ids of the rows that referred to it before
}

type wherePer interface {
	WhereP(...func(*sql.Selector))
}

var pg = sql.Dialect(dialect.Postgres)

func (c *capture) run(ctx context.Context, next ent.Mutator) (ent.Value, []*core.Record, error) {
	c.collectEdges()
	re := &reentry{m: c.m}
	ctx = context.WithValue(ctx, reentryKey{}, re)
	var (
		v    ent.Value
		recs []*core.Record
		err  error
	)
	switch {
	case c.op.Is(ent.OpCreate):
		v, recs, err = c.create(ctx, next)
	case c.op.Is(ent.OpUpdate | ent.OpUpdateOne):
		v, recs, err = c.update(ctx, next, re)
	case c.op.Is(ent.OpDelete | ent.OpDeleteOne):
		v, recs, err = c.delete(ctx, next, re)
	default:
		v, err = next.Mutate(ctx, c.m)
	}
	if c.unlocked {
		for _, r := range recs {
			if r.Kind != core.KindInsert {
				r.Severity = core.SeverityWarning
				r.Metadata = withMeta(r.Metadata, "before_unlocked", true)
			}
		}
	}
	return v, recs, err
}

func (c *capture) collectEdges() {
	get := func(name string) *edgeChange {
		if c.edges == nil {
			c.edges = map[string]*edgeChange{}
		}
		ec := c.edges[name]
		if ec == nil {
			ec = &edgeChange{}
			c.edges[name] = ec
		}
		return ec
	}
	for _, name := range c.m.AddedEdges() {
		ec := get(name)
		for _, id := range c.m.AddedIDs(name) {
			ec.added = append(ec.added, idString(id))
			ec.addedRaw = append(ec.addedRaw, id)
			c.keepRaw(name, id)
		}
	}
	for _, name := range c.m.RemovedEdges() {
		ec := get(name)
		for _, id := range c.m.RemovedIDs(name) {
			ec.removed = append(ec.removed, idString(id))
			ec.removedRaw = append(ec.removedRaw, id)
			c.keepRaw(name, id)
		}
	}
	for _, name := range c.m.ClearedEdges() {
		get(name).cleared = true
	}
}

func (c *capture) create(ctx context.Context, next ent.Mutator) (ent.Value, []*core.Record, error) {
	if err := c.lockTargets(ctx, false); err != nil {
		return nil, nil, err
	}
	c.at = time.Now()
	r := &returning{t: c.t, limit: c.h.maxRows}
	defer c.h.batchForget(c.m)
	v, err := next.Mutate(withReturning(ctx, r), c.m)
	if err != nil {
		return v, nil, err
	}
	if r.pre != nil { // the statement of a whole CreateBulk ran with this create's context
		c.h.batchPre(c.m, r.pre)
	}
	id, ok := c.h.schema.ID(c.m)
	if !ok || c.unstored(id) {
		return v, nil, nil
	}
	after := r.rs.only(idString(id))
	if after == nil { // the INSERT's own rows were not seen: read the row
		q := `SELECT *, xmax::text FROM ` + quote(c.t.Table) + ` WHERE ` + quote(c.t.IDColumn) + ` = $1`
		if after, err = c.h.query(ctx, c.drv, c.t, q, []any{id}, 1, true); err != nil {
			return v, nil, err
		}
	}
	if len(after.images) == 0 {
		if c.h.schema.Upsert(c.m) {
			// The conflict clause left the row alone (DO NOTHING): nothing changed. ent's
			// CreateBulk gives such a create no id, or the id of a row after it, whose own
			// create then finds no row.
			return v, nil, nil
		}
		// ent reported a row that cannot be read back (a row-level security policy or a
		// trigger may hide it): the create stands, as it would without auditing.
		c.h.log.Warn("entaudit: a created row is not in its table; it has no record", "table", c.t.Table, "id", idString(id))
		return v, nil, nil
	}
	if err := c.readTargets(ctx); err != nil {
		return v, nil, err
	}
	rid := after.ids[0]
	var rec *core.Record
	// A plain INSERT leaves xmax at 0; an INSERT ... ON CONFLICT DO UPDATE that updated a row
	// leaves the updating transaction there. Its before image is the row the Driver wrapper
	// locked by the conflict target before the INSERT ran.
	if c.h.schema.Upsert(c.m) && after.xmax[0] != "0" {
		pre := r.pre
		if pre == nil {
			pre = c.h.batchPre(c.m, nil)
		}
		if b := pre.image(rid); b != nil {
			rec = c.record(core.KindUpdate, c.t, rid, b, after.images[0])
			if c.noOp(rec.Diff) {
				return v, c.targetRecords(), nil
			}
			rec.Metadata = map[string]any{"upsert": true}
		} else {
			rec = c.record(core.KindUpdate, c.t, rid, nil, after.images[0])
			rec.Diff = nil
			rec.Severity = core.SeverityWarning
			rec.Metadata = map[string]any{"upsert": true, "before_unknown": true}
		}
	} else {
		rec = c.record(core.KindInsert, c.t, rid, nil, after.images[0])
	}
	rec.Metadata = c.edgeMeta(rec.Metadata, rid)
	if len(c.edges) > 0 { // the id's value, for the records of the links the create adds
		c.keepRaw("", after.rawIDs[0])
	}
	recs := append([]*core.Record{rec}, c.linkRecords([]string{rid})...)
	return v, append(recs, c.targetRecords()...), nil
}

// unstored reports whether a create of a CreateBulk inserted no row of its own: ent sends a bulk
// of creates that set no field as one INSERT ... DEFAULT VALUES, which inserts one row, and gives
// the other creates the zero id.
func (c *capture) unstored(id any) bool {
	if b, ok := c.h.schema.Batch(c.m); !ok || b.Size < 2 || b.Index == 0 {
		return false
	}
	switch idString(id) {
	case "", "0":
		return true
	}
	return false
}

func (c *capture) update(ctx context.Context, next ent.Mutator, re *reentry) (ent.Value, []*core.Record, error) {
	if c.returnsOld(ctx) {
		return c.updateReturningOld(ctx, next)
	}
	if err := c.lockRows(ctx, false); err != nil {
		return nil, nil, err
	}
	if err := c.lockTargets(ctx, false); err != nil {
		return nil, nil, err
	}
	if err := c.lockJoins(ctx, false); err != nil {
		return nil, nil, err
	}
	c.at = time.Now()
	wctx := ctx
	var r *returning
	if n := len(c.before.ids); n > 0 && n <= c.h.maxRows {
		r = &returning{t: c.t, update: true, limit: n, withID: c.state != nil && n <= fewRows && !c.state.knowsID()}
		r.plain = n == 1 && c.op.Is(ent.OpUpdateOne) && c.h.plainTable(ctx, c.drv, c.t)
		wctx = withReturning(ctx, r)
	}
	v, err := next.Mutate(wctx, c.m)
	if err != nil {
		return v, nil, err
	}
	if r != nil && r.rs != nil && c.state != nil {
		c.state.noteID(r.rs.xid)
	}
	after := r.result(c.before)
	if after == nil { // the UPDATE's own rows were not seen (or not all of them): read them
		if after, err = c.readByIDs(ctx, c.t, c.before.itemised(), c.before); err != nil {
			return v, nil, err
		}
	}
	recs, err := c.updateRecords(ctx, v, after)
	return v, recs, err
}

// returnsOld reports whether the update runs as ent's UPDATE returning each row before and after
// it, with nothing read or locked beforehand: on PostgreSQL 18 and later, for a mutation that
// changes no edge (whose links are read before the write), when its statements pass through the
// wrapped driver, which extends the UPDATE (in one of the hook's transactions, or in an ent.Tx of
// a wrapped client).
//
// The UPDATE then takes the locks ent's alone takes, in its order, and changes the rows it alone
// changes, a row another transaction inserted meanwhile included; each row's before image is the
// version the UPDATE changed. Updates that change edges, and those on a driver that is not
// wrapped, read and lock their rows first, as on earlier versions.
func (c *capture) returnsOld(ctx context.Context) bool {
	if len(c.edges) > 0 || c.state == nil {
		return false
	}
	if w := unwrap(c.drv); w != nil && w.active(ctx) != nil {
		return c.h.returnsOld(ctx, c.drv)
	}
	return c.inTx && c.h.returnsOld(ctx, c.drv) && c.state.throughWrapper(ctx, c.drv)
}

// updateReturningOld is update on PostgreSQL 18 and later (see returnsOld).
func (c *capture) updateReturningOld(ctx context.Context, next ent.Mutator) (ent.Value, []*core.Record, error) {
	one := c.op.Is(ent.OpUpdateOne)
	if !one {
		sel := pg.Select("*").From(pg.Table(c.t.Table))
		for _, p := range c.h.schema.Predicates(c.m) {
			p(sel)
		}
		c.filter = sel.P()
	}
	// The transaction's id travels with every row: a column per row costs a bulk update less
	// than the query of its own that COMMIT would otherwise need.
	r := &returning{t: c.t, update: true, oldNew: true, limit: c.h.maxRows, withID: !c.state.knowsID(), ignore: c.h.ignore}
	r.plain = one && c.h.plainTable(ctx, c.drv, c.t)
	v, err := next.Mutate(withReturning(ctx, r), c.m)
	if err != nil {
		return v, nil, err
	}
	// Taken once the UPDATE holds its rows' locks, as it is taken after the locked read on
	// earlier versions: a later change of the same row cannot be made before this one commits,
	// so occurred_at orders each row's records as the changes were made.
	c.at = time.Now()
	if r.rs == nil {
		// ent ran no UPDATE of the table (nothing to set), or one the wrapper did not take for
		// the mutation's own: what it changed, if anything, is not known row by row.
		if n := affected(v, 0); n > 0 {
			c.h.warnOnce("unseen:"+c.t.Table, "entaudit: an update's statement was not the one expected; its rows are "+
				"recorded in one summary without images", "table", c.t.Table)
			sum := core.BulkSummary{Table: c.t.Table, Kind: core.KindUpdate, Affected: n}
			rec := sum.Record(c.at)
			rec.Severity = core.SeverityWarning
			rec.Metadata = withMeta(rec.Metadata, "capture", "unseen")
			return v, []*core.Record{rec}, nil
		}
		return v, nil, nil
	}
	c.state.noteID(r.rs.xid)
	c.before = r.before
	recs, err := c.updateRecords(ctx, v, r.rs)
	return v, recs, err
}

// updateRecords returns the records of an update whose rows were c.before before it and after
// after it.
func (c *capture) updateRecords(ctx context.Context, v ent.Value, after *rowSet) ([]*core.Record, error) {
	if err := c.readTargets(ctx); err != nil {
		return nil, err
	}
	var recs []*core.Record
	for _, id := range c.before.itemised() {
		b := c.before.image(id)
		a, d, diffed := after.imageDiff(id)
		if a == nil {
			recs = append(recs, c.record(core.KindDelete, c.t, id, b, nil))
			continue
		}
		if !diffed {
			d = c.diff(b, a)
		}
		rec := c.recordDiff(core.KindUpdate, c.t, id, b, a, d)
		// The row gets a record only when it changed: links changed through its edges are
		// rows of other tables, recorded as such.
		if c.noOp(rec.Diff) {
			continue
		}
		rec.Metadata = c.edgeMeta(rec.Metadata, id)
		recs = append(recs, rec)
	}
	if s := c.summary(core.KindUpdate, c.t, c.before, affected(v, len(c.before.ids)), ""); s != nil {
		recs = append(recs, s)
	}
	recs = append(recs, c.linkRecords(c.before.ids)...)
	return append(recs, c.targetRecords()...), nil
}

func (c *capture) delete(ctx context.Context, next ent.Mutator, re *reentry) (ent.Value, []*core.Record, error) {
	if err := c.lockRows(ctx, true); err != nil {
		return nil, nil, err
	}
	if err := c.lockTargets(ctx, true); err != nil {
		return nil, nil, err
	}
	if err := c.lockJoins(ctx, true); err != nil {
		return nil, nil, err
	}
	c.at = time.Now()
	v, err := next.Mutate(ctx, c.m)
	if err != nil {
		return v, nil, err
	}
	n, counted := v.(int)
	var after *rowSet
	// Every locked row is gone when the count matches; otherwise find out which rows are left
	// (a hook narrowed the delete, or turned it into a soft delete).
	if re.reentered || !counted || n != len(c.before.ids) {
		if after, err = c.readByIDs(ctx, c.t, c.before.itemised(), c.before); err != nil {
			return v, nil, err
		}
	}
	if err := c.readTargets(ctx); err != nil {
		return v, nil, err
	}
	var recs []*core.Record
	for _, id := range c.before.itemised() {
		b, a := c.before.image(id), after.image(id)
		var rec *core.Record
		switch {
		case a == nil:
			rec = c.record(core.KindDelete, c.t, id, b, nil)
		case re.reentered:
			rec = c.record(core.KindDelete, c.t, id, b, a)
			rec.Metadata = withMeta(rec.Metadata, "soft_delete", true)
		default:
			continue // not deleted
		}
		rec.Metadata = c.edgeMeta(rec.Metadata, id)
		recs = append(recs, rec)
	}
	if s := c.summary(core.KindDelete, c.t, c.before, affected(v, len(c.before.ids)), ""); s != nil {
		recs = append(recs, s)
	}
	var gone []string // the rows deleted, whose links the database deleted with them
	for i, id := range c.before.ids {
		if i >= len(c.before.images) || after.image(id) == nil {
			gone = append(gone, id)
		}
	}
	recs = append(recs, c.linkRecords(gone)...)
	return v, append(recs, c.targetRecords()...), nil
}

// plainQuery tells whether a table has a trigger or a rule of its own: either could make the row
// an UPDATE returned differ from the row a read right after it returns.
const plainQuery = `SELECT (EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal)
OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite WHERE ev_class = to_regclass($1) AND rulename <> '_RETURN'))::text`

// plainTable reports whether the table of t has no trigger and no rule, asked once per table
// (an answer that could not be had counts as no and is asked again next time).
func (h *hook) plainTable(ctx context.Context, drv dialect.Driver, t *typeInfo) bool {
	switch t.plain.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	s, err := queryText(ctx, drv, plainQuery, []any{quote(t.Table)})
	if err != nil || !s.Valid {
		return false
	}
	if s.String == "false" {
		t.plain.Store(1)
		return true
	}
	t.plain.Store(2)
	return false
}

func affected(v ent.Value, fallback int) int {
	if n, ok := v.(int); ok {
		return n
	}
	return fallback
}

// lockStrength is the row lock that matches what the statement does to a row. An UPDATE that
// leaves the key alone takes FOR NO KEY UPDATE, which lets other transactions insert rows that
// refer to the locked one (their foreign key check takes FOR KEY SHARE); FOR UPDATE would block
// them until the commit. A DELETE takes FOR UPDATE.
func lockStrength(deleting bool) sql.LockStrength {
	if deleting {
		return sql.LockUpdate
	}
	return sql.LockNoKeyUpdate
}

// lockRows reads and locks the rows an update or delete is about to change, and pins a bulk
// statement to exactly those rows: a row that starts to match the filter after the lock was taken
// (a phantom) is left alone, as if the statement had run at the moment of the lock.
func (c *capture) lockRows(ctx context.Context, deleting bool) error {
	one := c.op.Is(ent.OpUpdateOne | ent.OpDeleteOne)
	sel := pg.Select("*").From(pg.Table(c.t.Table))
	if one {
		id, ok := c.h.schema.ID(c.m)
		if !ok {
			return fmt.Errorf("entaudit: the %s %s has no id", c.t.Name, c.op)
		}
		sel.Where(sql.EQ(sel.C(c.t.IDColumn), id))
	}
	for _, p := range c.h.schema.Predicates(c.m) {
		p(sel)
	}
	if !one {
		c.filter = sel.P()
		// One row past the cap tells whether the rest has to be read. PostgreSQL applies the
		// LIMIT after the lock, so rows that stop matching while it waits do not count.
		sel.Limit(c.h.maxRows + 1)
	}
	sel.OrderBy(sel.C(c.t.IDColumn)).For(lockStrength(deleting))
	q, args := sel.Query()
	rs, err := c.h.query(ctx, c.drv, c.t, q, args, c.h.maxRows, false)
	if err != nil {
		return err
	}
	c.before = rs
	if !one && len(rs.ids) > c.h.maxRows {
		if err := c.lockRest(ctx, deleting); err != nil {
			return err
		}
	}
	if deleting || len(c.edges) > 0 { // the ids' values, for the records of the links changed
		for _, id := range rs.rawIDs {
			c.keepRaw("", id)
		}
	}
	if !one {
		w, ok := c.m.(wherePer)
		if !ok {
			return fmt.Errorf("%w: %T has no WhereP", ErrSchema, c.m)
		}
		col := c.t.IDColumn
		w.WhereP(func(s *sql.Selector) {
			s.Where(inIDs(s.C(col), rs.ids, rs.rawIDs, rs.idType))
		})
	}
	return nil
}

// lockRest locks the rows of a bulk statement past the first MaxRowsPerStatement + 1 and adds
// their ids to c.before. Only the ids are read: these rows are listed in the summary record,
// without images.
func (c *capture) lockRest(ctx context.Context, deleting bool) error {
	rs := c.before
	sel := pg.Select().From(pg.Table(c.t.Table))
	sel.Select(sel.C(c.t.IDColumn))
	for _, p := range c.h.schema.Predicates(c.m) {
		p(sel)
	}
	sel.Where(sql.GT(sel.C(c.t.IDColumn), rs.rawIDs[len(rs.rawIDs)-1])).
		OrderBy(sel.C(c.t.IDColumn)).For(lockStrength(deleting))
	q, args := sel.Query()
	var rows sql.Rows
	if err := c.drv.Query(ctx, q, args, &rows); err != nil {
		return fmt.Errorf("entaudit: reading %s: %w", c.t.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id any
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("entaudit: reading %s: %w", c.t.Table, err)
		}
		rs.ids = append(rs.ids, idString(id))
		rs.rawIDs = append(rs.rawIDs, rawID(id))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("entaudit: reading %s: %w", c.t.Table, err)
	}
	return nil
}

// readByIDs reads the current images of ids of table t (locked already, so no lock is taken).
// like tells the type of the id column.
func (c *capture) readByIDs(ctx context.Context, t *typeInfo, ids []string, like *rowSet) (*rowSet, error) {
	if len(ids) == 0 {
		return &rowSet{byID: map[string]int{}}, nil
	}
	raw := like.rawIDs[:len(ids)]
	sel := pg.Select("*").From(pg.Table(t.Table))
	sel.Where(inIDs(sel.C(t.IDColumn), ids, raw, like.idType)).OrderBy(sel.C(t.IDColumn))
	q, args := sel.Query()
	return c.h.query(ctx, c.drv, t, q, args, len(ids), false)
}

// lockTargets reads and locks the rows of other tables whose foreign key to the mutated rows
// the mutation changes: the rows it links or unlinks, those it unlinks by clearing the edge, and,
// for a delete, every row that refers to a deleted one through a key that either side declares
// (ON DELETE SET NULL or CASCADE changes them without any hook seeing it).
func (c *capture) lockTargets(ctx context.Context, deleting bool) error {
	for _, edge := range c.t.Edges {
		e := c.t.edges[edge.Name]
		if e.Storage != StoredInTargetTable || e.target == nil {
			continue
		}
		ch := c.edges[e.Name]
		byFK := deleting || ch != nil && ch.cleared
		if !byFK && ch == nil {
			continue
		}
		if err := c.lockTarget(ctx, e, ch, byFK, deleting); err != nil {
			return err
		}
	}
	for _, e := range c.t.referring {
		if e.target.Skip {
			continue // no record to make, nothing to lock for one
		}
		var ch *edgeChange
		if e.target == c.t {
			// A same-type one-to-one edge that only this side declares is bidirectional: ent
			// sets and clears the key of the row at the other end as well.
			if ch = c.edges[e.Name]; ch == nil && !deleting {
				continue
			}
		} else if !deleting {
			continue
		}
		if err := c.lockTarget(ctx, e, ch, true, deleting); err != nil {
			return err
		}
	}
	return nil
}

// lockTarget locks the rows of e's target table named by ch and, with byFK, those whose foreign
// key refers to one of the mutated rows.
func (c *capture) lockTarget(ctx context.Context, e *edgeInfo, ch *edgeChange, byFK, deleting bool) error {
	tt := e.target
	sel := pg.Select("*").From(pg.Table(tt.Table))
	var ps []*sql.Predicate
	if ch != nil && len(ch.addedRaw)+len(ch.removedRaw) > 0 {
		ps = append(ps, sql.In(sel.C(tt.IDColumn), append(slices.Clone(ch.addedRaw), ch.removedRaw...)...))
	}
	if byFK && c.before != nil && len(c.before.ids) > 0 {
		ps = append(ps, inIDs(sel.C(e.Column), c.before.ids, c.before.rawIDs, c.before.idType))
	}
	if len(ps) == 0 {
		return nil
	}
	sel.Where(sql.Or(ps...))
	if tt == c.t && c.before != nil && len(c.before.ids) > 0 {
		// A row of the same table that the mutation changes itself has its own record.
		sel.Where(sql.Not(inIDs(sel.C(tt.IDColumn), c.before.ids, c.before.rawIDs, c.before.idType)))
	}
	// A delete nulls the rows' foreign key (SET NULL) or deletes them (CASCADE); otherwise only
	// the foreign key changes.
	sel.OrderBy(sel.C(tt.IDColumn)).For(lockStrength(deleting))
	q, args := sel.Query()
	rs, err := c.h.query(ctx, c.drv, tt, q, args, c.h.maxRows, false)
	if err != nil {
		return err
	}
	tc := &targetCapture{e: e, before: rs, linked: map[string][]string{}}
	for _, img := range rs.images {
		if fk := img[e.Column]; fk != nil {
			owner := idString(fk)
			tc.linked[owner] = append(tc.linked[owner], idString(img[tt.IDColumn]))
		}
	}
	c.targets = append(c.targets, tc)
	return nil
}

// readTargets reads the rows locked by lockTargets after the write.
func (c *capture) readTargets(ctx context.Context) error {
	for _, tc := range c.targets {
		rs, err := c.readByIDs(ctx, tc.e.target, tc.before.itemised(), tc.before)
		if err != nil {
			return err
		}
		tc.after = rs
	}
	return nil
}

// lockJoins reads (and locks) the join-table links of the mutated rows that the mutation
// removes: those of a cleared many-to-many edge or of a deleted row (all of them), and those of
// the ids it adds or removes by name, so that the record lists only links that changed (ent
// ignores adding a link that exists, and removing one that does not).
func (c *capture) lockJoins(ctx context.Context, deleting bool) error {
	for _, edge := range c.t.Edges {
		e := c.t.edges[edge.Name]
		if e.Storage != StoredInJoinTable || len(c.before.ids) == 0 {
			continue
		}
		ch := c.edges[e.Name]
		all := deleting || ch != nil && ch.cleared
		if !all && (ch == nil || len(ch.addedRaw)+len(ch.removedRaw) == 0) {
			continue
		}
		sel := pg.Select(e.Column, e.TargetColumn).From(pg.Table(e.Table))
		sel.Where(inIDs(sel.C(e.Column), c.before.ids, c.before.rawIDs, c.before.idType))
		if !all {
			sel.Where(sql.In(sel.C(e.TargetColumn), append(slices.Clone(ch.addedRaw), ch.removedRaw...)...))
		}
		// The links are deleted, whether the mutation is an update or a delete.
		sel.OrderBy(sel.C(e.Column), sel.C(e.TargetColumn)).ForUpdate()
		q, args := sel.Query()
		var rows sql.Rows
		if err := c.drv.Query(ctx, q, args, &rows); err != nil {
			return fmt.Errorf("entaudit: reading %s: %w", e.Table, err)
		}
		links := map[string][]string{}
		for rows.Next() {
			var owner, target any
			if err := rows.Scan(&owner, &target); err != nil {
				rows.Close()
				return fmt.Errorf("entaudit: reading %s: %w", e.Table, err)
			}
			links[idString(owner)] = append(links[idString(owner)], idString(target))
			c.keepRaw(e.Name, target)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("entaudit: reading %s: %w", e.Table, err)
		}
		if c.joins == nil {
			c.joins = map[string]map[string][]string{}
		}
		c.joins[e.Name] = links
	}
	return nil
}

// linkRecords returns the records of the join-table links that the mutation added or removed for
// the rows ids, one per link, as the database sees them: an insert or a delete of a row of the
// join table, keyed by both its columns. A deleted row loses all its links (ent's join tables
// delete them with it).
func (c *capture) linkRecords(ids []string) []*core.Record {
	var recs []*core.Record
	deleting := c.op.Is(ent.OpDelete | ent.OpDeleteOne)
	for _, edge := range c.t.Edges {
		e := c.t.edges[edge.Name]
		if e.Storage != StoredInJoinTable || c.h.exclude[e.Table] {
			continue
		}
		ch := c.edges[e.Name]
		if ch == nil && !deleting {
			continue
		}
		for _, id := range ids {
			var added, removed []string
			if deleting {
				removed = c.joins[e.Name][id]
			} else {
				added, removed = c.edgeDelta(e.Name, ch, id)
			}
			for _, target := range removed {
				img := c.linkImage(e, id, target)
				recs = append(recs, c.linkRecord(core.KindDelete, e, img, nil))
			}
			for _, target := range added {
				img := c.linkImage(e, id, target)
				recs = append(recs, c.linkRecord(core.KindInsert, e, nil, img))
			}
		}
	}
	return recs
}

// linkImage is the row of e's join table that links the mutated row id to target.
func (c *capture) linkImage(e *edgeInfo, id, target string) map[string]any {
	value := func(edge, id string) any {
		if v, ok := c.raws[rawKey(edge, id)]; ok {
			return normalize(v, colPlain)
		}
		return id
	}
	return map[string]any{e.Column: value("", id), e.TargetColumn: value(e.Name, target)}
}

func (c *capture) linkRecord(kind core.Kind, e *edgeInfo, before, after map[string]any) *core.Record {
	img := before
	if img == nil {
		img = after
	}
	key, err := json.Marshal(img) // both columns, keys sorted: the same text from either side
	if err != nil {
		key = []byte(fmt.Sprint(img))
	}
	r := &core.Record{
		OccurredAt:   c.at,
		Kind:         kind,
		ResourceType: e.Table,
		ResourceID:   string(key),
		Before:       before,
		After:        after,
		Diff:         c.diff(before, after),
		Metadata:     map[string]any{"via": c.t.Table + "." + e.Name},
	}
	return r
}

// targetRecords turns the rows of other tables changed through an edge into records.
func (c *capture) targetRecords() []*core.Record {
	var recs []*core.Record
	for _, tc := range c.targets {
		tt := tc.e.target
		if tt.Skip {
			continue
		}
		via := tc.e.via
		if !tc.e.referring {
			via = c.t.Table + "." + tc.e.Name
		}
		for _, id := range tc.before.itemised() {
			b, a := tc.before.image(id), tc.after.image(id)
			var rec *core.Record
			if a == nil {
				rec = c.record(core.KindDelete, tt, id, b, nil)
			} else {
				rec = c.record(core.KindUpdate, tt, id, b, a)
				if len(rec.Diff) == 0 {
					continue
				}
			}
			rec.Metadata = withMeta(rec.Metadata, "via", via)
			recs = append(recs, rec)
		}
		if s := c.summary(core.KindUpdate, tt, tc.before, len(tc.before.ids), via); s != nil {
			recs = append(recs, s)
		}
	}
	return recs
}

// record builds the record of one row: images with omitted columns already removed, the diff of
// an update, redacted columns masked.
func (c *capture) record(kind core.Kind, t *typeInfo, id string, before, after map[string]any) *core.Record {
	return c.recordDiff(kind, t, id, before, after, c.diff(before, after))
}

// recordDiff is record with the diff of the images already made: c.diff(before, after), or the
// same made as the rows were scanned (rowSet.diffs).
func (c *capture) recordDiff(kind core.Kind, t *typeInfo, id string, before, after map[string]any, d map[string]core.Change) *core.Record {
	if len(c.arena) == 0 {
		c.arena = make([]core.Record, min(max(c.made, 1), 64))
	}
	r := &c.arena[0]
	c.arena = c.arena[1:]
	c.made++
	*r = core.Record{
		OccurredAt:   c.at,
		Kind:         kind,
		ResourceType: t.Table,
		ResourceID:   id,
		Before:       before,
		After:        after,
	}
	r.Diff = d
	for col := range t.redact {
		if v, ok := before[col]; ok && v != nil {
			before[col] = core.Redacted
		}
		if v, ok := after[col]; ok && v != nil {
			after[col] = core.Redacted
		}
		if ch, ok := r.Diff[col]; ok {
			r.Diff[col] = core.MaskChange(ch)
		}
	}
	return r
}

// diff returns the columns whose values differ, ignoring Options.IgnoreFields. A missing image
// (an insert's before, a delete's after) counts as all columns NULL.
func (c *capture) diff(before, after map[string]any) map[string]core.Change {
	return core.Diff(before, after, func(k string) bool { return c.h.ignore[k] })
}

// edgeMeta adds to meta the edges the mutation changed for the row id: ids linked, ids unlinked
// (named, or found linked before a clear or a delete), and whether the edge was cleared. Links
// named by the mutation that did not change (added but there already, removed but not there)
// are left out.
func (c *capture) edgeMeta(meta map[string]any, id string) map[string]any {
	var edges map[string]any
	set := func(name string, e map[string]any) {
		if edges == nil {
			edges = map[string]any{}
		}
		edges[name] = e
	}
	for name, ch := range c.edges {
		added, removed := c.edgeDelta(name, ch, id)
		e := map[string]any{}
		if len(added) > 0 {
			e["added"] = added
		}
		if ch.cleared {
			e["cleared"] = true
		}
		if len(removed) > 0 {
			e["removed"] = removed
		}
		if len(e) > 0 {
			set(name, e)
		}
	}
	if c.op.Is(ent.OpDelete | ent.OpDeleteOne) {
		for name, e := range c.t.edges {
			if e.Storage == StoredInOwnTable {
				continue
			}
			if removed := c.linkedBefore(name, id); len(removed) > 0 {
				set(name, map[string]any{"removed": removed})
			}
		}
	}
	if edges == nil {
		return meta
	}
	return withMeta(meta, "edges", edges)
}

// edgeDelta returns the ids that the mutation linked to row id through the edge name and those
// it unlinked, as found before the write.
func (c *capture) edgeDelta(name string, ch *edgeChange, id string) (added, removed []string) {
	e := c.t.edges[name]
	if e == nil || c.op.Is(ent.OpCreate) {
		return ch.added, ch.removed // a new row had no links
	}
	switch e.Storage {
	case StoredInJoinTable:
		before := c.joins[name][id]
		if ch.cleared {
			removed = before
		} else {
			removed = keep(ch.removed, func(r string) bool { return slices.Contains(before, r) })
		}
		added = keep(ch.added, func(a string) bool { return !slices.Contains(before, a) || slices.Contains(removed, a) })
		return added, removed
	case StoredInTargetTable:
		tc := c.target(name)
		if tc == nil {
			return ch.added, ch.removed
		}
		if ch.cleared {
			return ch.added, tc.linked[id]
		}
		removed = keep(ch.removed, func(r string) bool {
			if tc.before.image(r) == nil {
				// Past the cap the row's key is not known: listed if the row exists.
				return slices.Contains(tc.before.ids, r)
			}
			return slices.Contains(tc.linked[id], r)
		})
		return ch.added, removed
	}
	return ch.added, ch.removed
}

// target returns the capture of the rows behind the edge name of the mutated type.
func (c *capture) target(name string) *targetCapture {
	for _, tc := range c.targets {
		if tc.e.Name == name && !tc.e.referring {
			return tc
		}
	}
	return nil
}

// keep returns the ids for which ok is true.
func keep(ids []string, ok func(string) bool) []string {
	var out []string
	for _, id := range ids {
		if ok(id) {
			out = append(out, id)
		}
	}
	return out
}

// linkedBefore returns the rows that the edge name linked to row id before the mutation.
func (c *capture) linkedBefore(name, id string) []string {
	var found []string
	if links, ok := c.joins[name]; ok {
		found = links[id]
	}
	if tc := c.target(name); tc != nil {
		found = append(slices.Clone(found), tc.linked[id]...)
	}
	return found
}

// summary returns the record of the rows of a bulk statement that were not itemised, or nil when
// every row was. via names the edge for rows of another table changed through one.
func (c *capture) summary(kind core.Kind, t *typeInfo, rs *rowSet, affected int, via string) *core.Record {
	if rs == nil || len(rs.ids) <= len(rs.images) {
		return nil
	}
	sum := core.BulkSummary{Table: t.Table, Kind: kind, Affected: affected, NotItemised: rs.ids[len(rs.images):], Via: via}
	if via == "" && c.filter != nil {
		q, args := c.filter.Query()
		if c.mentionsHidden(t, q) {
			for i := range args {
				args[i] = core.Redacted
			}
		}
		sum.Filter, sum.FilterArgs = q, args
	}
	return sum.Record(c.at)
}

// mentionsHidden reports whether a filter refers to a column whose values must not leak through
// the filter's arguments: a redacted or omitted column, or one the Redactor deems sensitive.
func (c *capture) mentionsHidden(t *typeInfo, q string) bool {
	for rest := q; ; {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			return false
		}
		col := rest[:j]
		rest = rest[j+1:]
		if t.redact[col] || t.omit[col] || c.h.redactor.Sensitive(col) {
			return true
		}
	}
}

func withMeta(meta map[string]any, k string, v any) map[string]any {
	if meta == nil {
		meta = map[string]any{}
	}
	meta[k] = v
	return meta
}

// quote quotes a PostgreSQL identifier.
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
