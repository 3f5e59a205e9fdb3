package gormaudit

import (
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/auditkit/auditkit/core"
)

// oursExpr is true for a row version written by the current transaction (or one of its
// subtransactions): its xmin is a transaction still in progress, and the only in-progress
// writes a transaction can see are its own. xmin is 32 bits; the epoch is taken from the
// current transaction id (one epoch back when xmin is above the current id's low bits).
const oursExpr = `pg_xact_status(((((pg_current_xact_id()::text::bigint >> 32) - ` +
	`(CASE WHEN %[1]s::text::bigint > (pg_current_xact_id()::text::bigint & 4294967295) THEN 1 ELSE 0 END)) << 32) | ` +
	`%[1]s::text::bigint)::text::xid8) = 'in progress'`

// collect builds the records of a statement that succeeded.
func (p *Plugin) collect(db *gorm.DB, st *stmtState) ([]*core.Record, error) {
	if st.unreadable {
		return []*core.Record{p.unreadableRecord(db, st)}, nil
	}
	var after []row
	switch {
	case st.ran:
		after = st.out
	case st.reread:
		err := st.guard(db.Statement.Context, st.riskyRead, func() error {
			var err error
			after, err = p.reread(db, st)
			return err
		})
		if err != nil {
			err = fmt.Errorf("gormaudit: reading the rows of %s after the change: %w", st.table, err)
			if errors.Is(err, errAborted) {
				return nil, err
			}
			p.s.log.Warn("gormaudit: the rows could not be read after the change; they are recorded "+
				"without an after image (after_unknown)", "table", st.table, "error", err)
			return p.afterUnknown(db, st), nil
		}
	case st.returning != "":
		if db.RowsAffected > 0 {
			// Not GORM's statement as the plugin expected it (e.g. a callback rewrote it).
			p.warnOnce("unseen:"+st.table, "gormaudit: a statement changed rows the plugin did not see; they are not recorded",
				"table", st.table, "rows", db.RowsAffected)
		}
		return nil, nil // GORM sent nothing, e.g. an update without assignments
	}
	b := &builder{p: p, st: st, now: time.Now(), want: len(after)}
	switch {
	case st.op == opDelete && !st.soft:
		gone := after
		if !st.ran {
			gone = st.before
		}
		b.want = len(gone)
		for _, r := range gone {
			b.affected++
			if r.vals == nil {
				b.notItemised = append(b.notItemised, r.key)
				continue
			}
			b.add(core.KindDelete, r.key, r.vals, nil, nil)
		}
	case st.op == opCreate && !st.upsert:
		for _, r := range after {
			b.insert(r)
		}
	default:
		b.changes(after)
	}
	return b.finish(db), nil
}

// unreadableRecord is the one record of a statement on a table whose rows the plugin cannot
// read (see readable): its kind, filter and affected count, flagged "capture": "unreadable".
func (p *Plugin) unreadableRecord(db *gorm.DB, st *stmtState) *core.Record {
	meta := map[string]any{"statement": string(st.kind), "affected": db.RowsAffected, "capture": "unreadable"}
	if st.op != opCreate {
		if f, args := p.renderFilter(db, st); f != "" {
			meta["filter"] = f
			if len(args) > 0 {
				meta["filter_args"] = args
			}
		}
	}
	return &core.Record{
		ID:           core.NewID(),
		OccurredAt:   time.Now(),
		Kind:         core.KindCustom,
		Action:       st.table + ".bulk_" + string(st.kind),
		ResourceType: st.table,
		Severity:     core.SeverityWarning,
		Metadata:     meta,
	}
}

// afterUnknown records the rows of a statement whose read after the change failed: each with
// its before image where there is one, no after image and no diff, flagged after_unknown.
func (p *Plugin) afterUnknown(db *gorm.DB, st *stmtState) []*core.Record {
	now := time.Now()
	var recs []*core.Record
	add := func(key string, before map[string]any) {
		maskImage(st.m, before)
		recs = append(recs, &core.Record{ID: core.NewID(), OccurredAt: now, Kind: st.kind, ResourceType: st.table,
			ResourceID: key, Before: before, Severity: core.SeverityWarning,
			Metadata: map[string]any{"after_unknown": true}})
	}
	if st.op != opCreate || st.upsert {
		for _, r := range st.before {
			add(r.key, r.vals)
		}
		if st.op != opCreate {
			return recs
		}
	}
	for _, k := range keysOf(db.Statement, db.Statement.Schema.PrimaryFields) {
		key := st.m.keyOf(k)
		if _, seen := st.lockedAt(key); !seen {
			add(key, nil)
		}
	}
	return recs
}

// keyOf renders a key as keysOf returns it (one value, or a []any for a composite key) the way
// row.key renders it.
func (m *model) keyOf(k any) string {
	vals, ok := k.([]any)
	if !ok {
		return scalarText(normalise(k, kindPlain))
	}
	obj := make(map[string]any, len(vals))
	for i, v := range vals {
		if i < m.npk {
			obj[m.cols[i].name] = normalise(v, kindPlain)
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return ""
	}
	return string(b)
}

// reread reads the rows of a statement again, inside its transaction, when GORM consumed the
// statement's RETURNING itself.
func (p *Plugin) reread(db *gorm.DB, st *stmtState) ([]row, error) {
	if st.op != opCreate {
		if len(st.before) == 0 {
			return nil, nil
		}
		var out []row
		per := max(pinMaxParams/st.m.npk, 1)
		for i := 0; i < len(st.before); i += per {
			part := st.before[i:min(i+per, len(st.before))]
			keys := make([]any, len(part))
			for j, r := range part {
				if st.m.npk == 1 {
					keys[j] = r.pk[0]
				} else {
					keys[j] = r.pk
				}
			}
			rows, err := p.readKeys(db, st, keys, false)
			if err != nil {
				return nil, err
			}
			got, _, err := scanRows(rows, st.m, 0, st.itemiseAfter)
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
		return out, nil
	}
	stmt := db.Statement
	if !st.upsert {
		keys := keysOf(stmt, stmt.Schema.PrimaryFields)
		if len(keys) == 0 {
			return nil, nil
		}
		// A row or a few: the read also gives the transaction's id, which COMMIT then need
		// not read on its own.
		var id *string
		t := txnOf(st.conn)
		if len(keys) <= fewRows && t != nil && !t.knowsID() {
			id = new(string)
		}
		rows, err := p.readKeys(db, st, keys, id != nil)
		if err != nil {
			return nil, err
		}
		out, _, err := scanRowsXID(rows, st.m, 0, st.itemiseAfter, id)
		if err == nil && id != nil {
			t.noteID(*id)
		}
		return out, err
	}
	var conds []clause.Expression
	if keys := keysOf(stmt, stmt.Schema.PrimaryFields); len(keys) > 0 {
		conds = append(conds, keysIn(st.table, stmt.Schema.PrimaryFields, keys))
	}
	if len(st.targetKeys) > 0 {
		conds = append(conds, keysIn(st.table, st.target, st.targetKeys))
	}
	if len(conds) == 0 {
		return nil, nil
	}
	where := conds[0]
	if len(conds) > 1 {
		where = clause.Or(conds...)
	}
	extra, nextra := "", 0
	if st.upsert {
		xmin := quotedCol(db, st.table, "xmin")
		extra = ", " + quotedCol(db, st.table, "xmax") + " = 0, " + fmt.Sprintf(oursExpr, xmin)
		nextra = 2
	}
	rows, err := p.read(db, st, []clause.Expression{where}, false, "", extra)
	if err != nil {
		return nil, err
	}
	out, _, err := scanRows(rows, st.m, nextra, st.itemiseAfter)
	return out, err
}

// builder turns rows into the records of one statement.
type builder struct {
	p           *Plugin
	st          *stmtState
	now         time.Time
	recs        []*core.Record
	arena       []core.Record // the records add makes next, allocated in chunks
	want        int           // how many records the statement makes at most
	affected    int
	notItemised []string

	inserted, updated int // rows of an upsert that it inserted and updated, for its summary
}

func (b *builder) insert(r row) {
	b.affected++
	b.inserted++
	if r.vals == nil {
		b.notItemised = append(b.notItemised, r.key)
		return
	}
	b.add(core.KindInsert, r.key, nil, r.vals, nil)
}

// changes pairs the locked before images with the rows after the statement (updates, soft
// deletes, upserts).
func (b *builder) changes(after []row) {
	st := b.st
	kind := st.kind
	if kind == core.KindInsert {
		kind = core.KindUpdate
	}
	var meta map[string]any
	if st.soft {
		meta = map[string]any{"soft_delete": true}
	}
	var index map[string]int
	if !st.paired {
		index = make(map[string]int, len(after))
		for i, r := range after {
			index[r.key] = i
		}
	}
	paired := make([]bool, len(after))
	for j, bf := range st.before {
		i, ok := j, st.paired
		if !ok {
			i, ok = index[bf.key]
		}
		if !ok {
			if len(st.before) != 1 || len(after) != 1 || st.upsert {
				continue // locked but left alone: an upsert's DO NOTHING, or a DO UPDATE ... WHERE
			}
			i = 0 // one row whose primary key the update changed
		}
		paired[i] = true
		a := after[i]
		if st.doNothing || (st.reread && st.upsert && !a.ours) {
			continue
		}
		b.affected++
		b.updated++
		if bf.vals == nil || a.vals == nil {
			b.notItemised = append(b.notItemised, a.key)
			continue
		}
		m := meta
		if a.key != bf.key {
			m = map[string]any{"previous_id": bf.key}
		}
		if hidden := omittedChanged(st.m, bf, a); len(hidden) > 0 {
			// A change to audit:"-" columns is a change of the row: named, never shown.
			m = maps.Clone(m)
			if m == nil {
				m = map[string]any{}
			}
			m["omitted_changed"] = hidden
		}
		b.add(kind, a.key, bf.vals, a.vals, m)
	}
	for i, a := range after {
		if paired[i] {
			continue
		}
		if st.upsert {
			if st.reread && !a.ours {
				continue // another transaction's row, which this statement did not change
			}
			if a.fresh {
				b.insert(a)
				continue
			}
		}
		// Changed without a before image: a row that appeared after the read (a statement too
		// large to pin), or an upsert's conflict with a row inserted concurrently.
		b.affected++
		b.updated++
		if a.vals == nil {
			b.notItemised = append(b.notItemised, a.key)
			continue
		}
		m := map[string]any{"before_unknown": true}
		if st.soft {
			m["soft_delete"] = true
		}
		b.add(kind, a.key, nil, a.vals, m)
		b.recs[len(b.recs)-1].Severity = core.SeverityWarning
	}
}

func (b *builder) add(kind core.Kind, key string, before, after map[string]any, meta map[string]any) {
	st := b.st
	m := st.m
	d := diff(m, before, after)
	if kind == core.KindUpdate && before != nil && !b.p.s.RecordNoOpUpdates && meta["omitted_changed"] == nil &&
		(len(d) == 0 || !b.p.s.RecordTimestampOnlyUpdates && onlyAutoUpdate(m, d)) {
		return
	}
	if kind == core.KindUpdate && m.softCol != "" && before != nil && before[m.softCol] != nil && after[m.softCol] == nil {
		// Merged into a copy: meta may be shared by the statement's other records, and what it
		// says (a changed primary key, for one) still holds for a restored row.
		m := make(map[string]any, len(meta)+1)
		maps.Copy(m, meta)
		m["restored"] = true
		meta = m
	}
	maskImage(m, before)
	maskImage(m, after)
	if len(b.arena) == 0 {
		// At most 64 records a chunk, so that one record kept long keeps few others' memory.
		b.arena = make([]core.Record, min(max(b.want-len(b.recs), 1), 64))
	}
	rec := &b.arena[0]
	b.arena = b.arena[1:]
	b.recs = append(b.recs, rec)
	*rec = core.Record{
		ID:           core.NewID(),
		OccurredAt:   b.now,
		Kind:         kind,
		ResourceType: st.table,
		ResourceID:   key,
		Before:       before,
		After:        after,
		Diff:         d,
		Metadata:     meta,
	}
}

// onlyAutoUpdate reports whether every column of d is one GORM sets on each update.
func onlyAutoUpdate(m *model, d map[string]core.Change) bool {
	n := 0
	for _, c := range m.cols {
		if c.autoUpdate {
			if _, ok := d[c.name]; ok {
				n++
			}
		}
	}
	return n == len(d)
}

// finish appends the summary of the rows past the cap.
func (b *builder) finish(db *gorm.DB) []*core.Record {
	if len(b.notItemised) == 0 {
		return b.recs
	}
	st := b.st
	sum := core.BulkSummary{Table: st.table, Kind: st.kind, Affected: b.affected, NotItemised: b.notItemised}
	if st.op != opCreate {
		sum.Filter, sum.FilterArgs = b.p.renderFilter(db, st)
	}
	rec := sum.Record(b.now)
	rec.ID = core.NewID()
	if st.upsert {
		// An upsert both inserts and updates: the summary says how many of each.
		rec.Action = st.table + ".bulk_upsert"
		rec.Metadata["statement"] = "upsert"
		rec.Metadata["inserted"] = b.inserted
		rec.Metadata["updated"] = b.updated
	}
	return append(b.recs, rec)
}

// renderFilter returns a statement's conditions as SQL with placeholders, and the bound
// values, all masked when the condition mentions a sensitive column (see core.Redactor).
func (p *Plugin) renderFilter(db *gorm.DB, st *stmtState) (string, []any) {
	stmt := db.Statement
	q := &gorm.Statement{DB: db, Table: stmt.Table, TableExpr: stmt.TableExpr, Schema: stmt.Schema,
		Context: stmt.Context, Clauses: map[string]clause.Clause{}}
	if len(st.where) > 0 {
		q.AddClause(clause.Where{Exprs: st.where})
	}
	if st.scoped(stmt) {
		for _, c := range stmt.Schema.QueryClauses {
			q.AddClause(c)
		}
	}
	q.Build("WHERE")
	f := strings.TrimPrefix(q.SQL.String(), "WHERE ")
	args := make([]any, len(q.Vars))
	sensitive := false
	for _, w := range strings.FieldsFunc(f, notIdent) {
		if p.s.Redactor.Sensitive(w) {
			sensitive = true
			break
		}
	}
	for i, v := range q.Vars {
		if sensitive {
			args[i] = core.Mask(v)
		} else {
			args[i] = argValue(v)
		}
	}
	return p.s.Redactor.Text(f), args
}

// notIdent splits SQL text into the identifiers (column names) a filter mentions.
func notIdent(r rune) bool {
	return !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80)
}

// argValue makes a bound value fit for a JSON document.
func argValue(v any) any {
	if dv, ok := v.(driver.Valuer); ok {
		var err error
		if v, err = dv.Value(); err != nil {
			return fmt.Sprintf("[%T]", dv)
		}
	}
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case sql.NamedArg:
		return argValue(x.Value)
	}
	return v
}
