package gormaudit

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/auditkit/auditkit/core"
)

// model is what the plugin knows about one GORM schema, computed once.
type model struct {
	err      error
	disabled bool
	noKey    bool     // the model has no primary key: its rows cannot be identified
	cols     []column // primary key columns first, then the other recorded columns
	npk      int      // number of primary key columns
	softCol  string   // the soft-delete column (gorm.DeletedAt), if any
	lists    sync.Map // per table: the quoted column list (string), key queries (*[2]string)
	texts    sync.Map // per table named plainly (no table expression): *tableText
}

// tableText is the SQL text the plugin writes for the statements of a model on one table that
// the statement names plainly (no table expression), built once: a statement then costs no
// quoting and no concatenation beyond joining GORM's own text to it.
type tableText struct {
	list      string // the quoted, qualified column list
	written   string // the table as GORM writes it into INSERT, UPDATE and DELETE
	returning string // " RETURNING <list>", added to an UPDATE, DELETE or INSERT
	addList   string // ", <list>", added to GORM's own RETURNING of an INSERT
	// keyHead[withID] and keyOrder are keyQuery's texts; lockByKey[strength] is readByKey's
	// query for each lock strength in strengths.
	keyHead   [2]string
	keyOrder  string
	lockByKey [len(strengths)]string
	pkCol     any // pkColumn's value
	fuse      fuseText
	oldNew    fuseText // the RETURNING of an update on PostgreSQL 18 and later (fuse.go)
}

// strengths are the lock strengths of the plugin's locking reads.
var strengths = [...]string{"NO KEY UPDATE", "UPDATE", "KEY SHARE"}

// text returns the model's texts for a statement on table without a table expression.
func (m *model) text(stmt *gorm.Statement, table string) *tableText {
	if v, ok := m.texts.Load(table); ok {
		return v.(*tableText)
	}
	t := &tableText{list: m.list(stmt, table)}
	var b strings.Builder
	stmt.QuoteTo(&b, table)
	t.written = b.String()
	t.returning = " RETURNING " + t.list
	t.addList = ", " + t.list
	t.pkCol = m.pkColumn(table)
	t.keyHead[0], t.keyOrder = m.keyQuery(stmt, table, false)
	t.keyHead[1], _ = m.keyQuery(stmt, table, true)
	for i, s := range strengths {
		t.lockByKey[i] = t.keyHead[0] + " = $1" + t.keyOrder + " FOR " + s
	}
	t.fuse = m.fuseText(stmt, table, t)
	t.oldNew = m.oldNewText(stmt)
	v, _ := m.texts.LoadOrStore(table, t)
	return v.(*tableText)
}

// column is one column read into the images.
type column struct {
	name string // database name, the key in images and diffs
	omit bool   // audit:"-": never in an image or a diff
	// fingerprint: an audit:"-" column outside the primary key, read as md5 of its text so
	// that a change to it is known (and named) without its value leaving the database.
	fingerprint bool
	redact      bool // audit:"redact"
	ignore      bool // Options.IgnoreFields: not diffed
	jsonSer     bool // a serializer:json field: its stored text is shown as JSON
	// autoUpdate: GORM sets the column on every update (autoUpdateTime, gorm.Model's
	// UpdatedAt); a diff of such columns alone is a no-op unless
	// Options.RecordTimestampOnlyUpdates.
	autoUpdate bool
}

func (p *Plugin) model(s *schema.Schema) *model {
	if v, ok := p.models.Load(s); ok {
		return v.(*model)
	}
	v, loaded := p.models.LoadOrStore(s, p.buildModel(s))
	if !loaded {
		p.seeTable(s, false)
	}
	return v.(*model)
}

func (p *Plugin) buildModel(s *schema.Schema) *model {
	m := &model{}
	if p.s.excludeTypes[s.ModelType] {
		m.disabled = true
		return m
	}
	if d, ok := reflect.New(s.ModelType).Interface().(Disabler); ok && d.AuditDisabled() {
		m.disabled = true
		return m
	}
	if len(s.PrimaryFields) == 0 {
		m.noKey = true
		return m
	}
	for _, c := range s.QueryClauses {
		if sd, ok := c.(gorm.SoftDeleteQueryClause); ok && sd.Field != nil {
			m.softCol = sd.Field.DBName
		}
	}
	add := func(f *schema.Field, pk bool) error {
		pol, err := fieldPolicy(s.ModelType, f)
		if err != nil {
			return fmt.Errorf("gormaudit: model %s, field %s: %w", s.Name, f.Name, err)
		}
		m.cols = append(m.cols, column{
			name:        f.DBName,
			omit:        pol.Omit,
			fingerprint: pol.Omit && !pk,
			autoUpdate:  f.AutoUpdateTime > 0,
			redact:      pol.Redact,
			ignore:      p.s.ignore[f.DBName] || p.s.ignore[f.Name] || p.s.ignore[f.BindName()],
			jsonSer:     f.Serializer != nil && strings.EqualFold(f.TagSettings["SERIALIZER"], "json"),
		})
		return nil
	}
	for _, f := range s.PrimaryFields {
		if err := add(f, true); err != nil {
			m.err = err
			return m
		}
	}
	m.npk = len(m.cols)
	for _, name := range s.DBNames {
		f := s.FieldsByDBName[name]
		if f == nil || f.PrimaryKey {
			continue
		}
		if err := add(f, false); err != nil {
			m.err = err
			return m
		}
	}
	return m
}

// fieldPolicy combines the audit tags on the path from the model to the field, so that a tag on
// an embedded struct applies to every column it contributes.
func fieldPolicy(t reflect.Type, f *schema.Field) (core.FieldPolicy, error) {
	var pol core.FieldPolicy
	for _, name := range f.BindNames {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			break
		}
		sf, ok := t.FieldByName(name)
		if !ok {
			break
		}
		fp, err := core.ParseTag(sf.Tag.Get(core.TagName))
		if err != nil {
			return pol, err
		}
		pol.Omit = pol.Omit || fp.Omit
		pol.Redact = pol.Redact || fp.Redact
		t = sf.Type
	}
	return pol, nil
}

// list returns the model's columns qualified by table and quoted for stmt's dialect.
func (m *model) list(stmt *gorm.Statement, table string) string {
	if v, ok := m.lists.Load(table); ok {
		return v.(string)
	}
	v, _ := m.lists.LoadOrStore(table, m.qualifiedList(stmt, table))
	return v.(string)
}

// qualifiedList is list's text, made anew: the model's columns qualified by table (a table or
// an alias), an audit:"-" column outside the key as the md5 of its text.
func (m *model) qualifiedList(stmt *gorm.Statement, table string) string {
	var b strings.Builder
	for i, c := range m.cols {
		if i > 0 {
			b.WriteByte(',')
		}
		if c.fingerprint {
			b.WriteString("md5(CAST(")
			stmt.QuoteTo(&b, clause.Column{Table: table, Name: c.name})
			b.WriteString(" AS text))")
			continue
		}
		stmt.QuoteTo(&b, clause.Column{Table: table, Name: c.name})
	}
	return b.String()
}

// keyQuery returns "SELECT <columns> FROM <table> WHERE <key>" and " ORDER BY <key>" for a
// single-column key, cached per table; withID adds the transaction's id (xidColumn) after the
// columns.
func (m *model) keyQuery(stmt *gorm.Statement, table string, withID bool) (head, order string) {
	ck := "k|" + table
	if withID {
		ck = "x|" + table
	}
	if stmt.TableExpr != nil {
		ck += "|" + stmt.TableExpr.SQL
	}
	if v, ok := m.lists.Load(ck); ok {
		q := v.(*[2]string)
		return q[0], q[1]
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(m.list(stmt, table))
	if withID {
		b.WriteString(xidColumn)
	}
	b.WriteString(" FROM ")
	if stmt.TableExpr != nil {
		b.WriteString(stmt.TableExpr.SQL)
	} else {
		stmt.QuoteTo(&b, table)
	}
	b.WriteString(" WHERE ")
	key := clause.Column{Table: table, Name: m.cols[0].name}
	stmt.QuoteTo(&b, key)
	var o strings.Builder
	o.WriteString(" ORDER BY ")
	stmt.QuoteTo(&o, key)
	q := &[2]string{b.String(), o.String()}
	v, _ := m.lists.LoadOrStore(ck, q)
	q = v.(*[2]string)
	return q[0], q[1]
}

// pkColumn returns the primary key as GORM's IN clause wants it: one column, or a list.
func (m *model) pkColumn(table string) any {
	if m.npk == 1 {
		return clause.Column{Table: table, Name: m.cols[0].name}
	}
	cols := make([]clause.Column, m.npk)
	for i := range cols {
		cols[i] = clause.Column{Table: table, Name: m.cols[i].name}
	}
	return cols
}

// pkIn is the condition "primary key in keys", keys as returned by keyValue.
func (m *model) pkIn(table string, keys []any) clause.Expression {
	return clause.IN{Column: m.pkColumn(table), Values: keys}
}

func (m *model) orderByPK(table string) clause.OrderBy {
	ob := clause.OrderBy{Columns: make([]clause.OrderByColumn, m.npk)}
	for i := range ob.Columns {
		ob.Columns[i] = clause.OrderByColumn{Column: clause.Column{Table: table, Name: m.cols[i].name}}
	}
	return ob
}

// modelOfTable returns the model for a statement GORM runs without one (db.Table("items") with
// a map or no value): the model listed in Options.Models, or else the one model the plugin has
// seen writing to that table. Nil when there is none, or several models share the table.
func (p *Plugin) modelOfTable(stmt *gorm.Statement) *schema.Schema {
	if stmt.Table == "" || (stmt.TableExpr != nil && len(stmt.TableExpr.Vars) > 0) {
		return nil
	}
	if v, ok := p.tables.Load(stmt.Table); ok {
		s, _ := v.(*schema.Schema)
		return s
	}
	return nil
}

// seeTable notes that s writes to its table; a second model on the same table makes the table
// ambiguous, unless Options.Models named one.
func (p *Plugin) seeTable(s *schema.Schema, listed bool) {
	if listed {
		p.tables.Store(s.Table, s)
		p.listed.Store(s.Table, true)
		return
	}
	if _, ok := p.listed.Load(s.Table); ok {
		return
	}
	if v, loaded := p.tables.LoadOrStore(s.Table, s); loaded {
		if prev, _ := v.(*schema.Schema); prev != nil && prev.ModelType != s.ModelType {
			p.tables.Store(s.Table, (*schema.Schema)(nil))
		}
	}
}
