package entaudit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// Metadata keys of the records a revert makes.
const (
	// MetaRevertedFrom holds the id of the record whose image a revert wrote back.
	MetaRevertedFrom = "reverted_from"
	// MetaRevertedTo holds the time RevertTo restored the row to (RFC 3339).
	MetaRevertedTo = "reverted_to"
)

// RevertOp says what a revert wrote.
type RevertOp string

// The writes a revert makes.
const (
	RevertUpdated RevertOp = "update" // the row was updated to the image
	RevertCreated RevertOp = "insert" // the row, gone, was created again from the image
	RevertDeleted RevertOp = "delete" // the row did not exist then and was deleted
	RevertNone    RevertOp = "none"   // the row did not exist then and does not exist now
)

// RevertResult says what a revert did.
type RevertResult struct {
	Op RevertOp
	// From is the record whose image was written back: the reverted record for Revert, the
	// record that left the row's state at the time for RevertTo (nil when the row's history
	// starts later).
	From *store.Record
	// Decoded lists the columns that were left as they are: masked in the image (Sensitive and
	// Redact fields, redacted secrets, erased values) and missing from it.
	Decoded
}

// Mutator runs a mutation: the generated client (*ent.Client, or tx.Client() inside an ent.Tx)
// implements it with its Mutate method.
type Mutator interface {
	Mutate(ctx context.Context, m ent.Mutation) (ent.Value, error)
}

// Revert undoes the change rec records (a record of kind insert, update or delete of an ent type,
// as History or store.Store.Get return it) by running a mutation through client, so that the
// hook records the revert like any change, with metadata reverted_from naming rec. An insert is
// undone by deleting the row, a delete by creating it again (only for types whose id the
// application sets, such as a UUID with a default; a database-generated id cannot be given back),
// an update by updating the row to the before image.
//
// Columns whose image value is a mask (Sensitive, Redact, a redacted secret, an erased value)
// are never written from it: they keep their current values, and the result lists them, with the
// columns the image lacks. Immutable fields are not updated and fields with an UpdateDefault take
// the time of the revert. An image that no longer fits the entity or its table (a column gone, a
// value its column's type no longer accepts) is refused with an *IncompatibleError before
// anything is written. Run it on an ent.Tx's client to make the check and the write one
// transaction.
func Revert(ctx context.Context, client Mutator, s Schema, rec *store.Record) (*RevertResult, error) {
	before, _, meta, err := rc.Undo(rec)
	if err != nil {
		return nil, err
	}
	if client == nil || s == nil {
		return nil, errors.New("entaudit: Revert needs a client and the Schema")
	}
	typ, err := typeOfTable(s, rec.ResourceType)
	if err != nil {
		return nil, err
	}
	res, err := revertRow(core.WithMetadata(ctx, meta), client, s, typ, rec.ResourceID, before)
	if err != nil {
		return nil, err
	}
	res.From = rec
	return res, nil
}

// RevertTo writes the row of entity's type (a pointer to a generated entity, such as
// &ent.User{}) with id back to its state at t, as AsOf reads it, through client: the hook records
// the change with metadata reverted_from (the record that left the state at t) and reverted_to
// (t). A row that did not exist at t, or was deleted then, is deleted; a row deleted since is
// created again where its id can be given. Masked columns are handled as by Revert.
func (h History) RevertTo(ctx context.Context, client Mutator, entity any, id any, t time.Time) (*RevertResult, error) {
	if h.Store == nil || h.Schema == nil || client == nil {
		return nil, errors.New("entaudit: RevertTo needs a Store, a Schema and a client")
	}
	typ, err := entityType(h.Schema, entity)
	if err != nil {
		return nil, err
	}
	rid, err := ResourceID(id)
	if err != nil {
		return nil, err
	}
	target, from, meta, err := rc.Target(ctx, h.Store, h.Scope, typ.Table, rid, t)
	if err != nil {
		return nil, err
	}
	res, err := revertRow(core.WithMetadata(ctx, meta), client, h.Schema, typ, rid, target)
	if err != nil {
		return nil, err
	}
	res.From = from
	return res, nil
}

// newMutation returns a new create mutation of typ from the generated client: client.<Type>.Create().Mutation().
func newMutation(client Mutator, typ *Type) (ent.Mutation, reflect.Type, error) {
	cv := reflect.ValueOf(client)
	for cv.Kind() == reflect.Pointer {
		cv = cv.Elem()
	}
	if cv.Kind() != reflect.Struct {
		return nil, nil, fmt.Errorf("entaudit: %T is not a generated ent client", client)
	}
	tc := cv.FieldByName(typ.Name)
	if !tc.IsValid() {
		return nil, nil, fmt.Errorf("entaudit: client %T has no %s client", client, typ.Name)
	}
	create := tc.MethodByName("Create")
	if !create.IsValid() || create.Type().NumIn() != 0 || create.Type().NumOut() != 1 {
		return nil, nil, fmt.Errorf("entaudit: %s has no Create()", tc.Type())
	}
	b := create.Call(nil)[0]
	mut, save := b.MethodByName("Mutation"), b.MethodByName("Save")
	if !mut.IsValid() || !save.IsValid() || save.Type().NumOut() != 2 {
		return nil, nil, fmt.Errorf("entaudit: %s is not a generated create builder", b.Type())
	}
	m, ok := mut.Call(nil)[0].Interface().(ent.Mutation)
	if !ok {
		return nil, nil, fmt.Errorf("entaudit: %s.Mutation() is not an ent.Mutation", b.Type())
	}
	et := save.Type().Out(0)
	if et.Kind() != reflect.Pointer || et.Elem().Kind() != reflect.Struct {
		return nil, nil, fmt.Errorf("entaudit: %s.Save does not return an entity", b.Type())
	}
	return m, et.Elem(), nil
}

// revertRow makes the row of typ with resource id rid look like target (nil: not there).
func revertRow(ctx context.Context, client Mutator, s Schema, typ *Type, rid string, target map[string]any) (*RevertResult, error) {
	m, et, err := newMutation(client, typ)
	if err != nil {
		return nil, err
	}
	setOp, ok1 := m.(interface{ SetOp(ent.Op) })
	where, ok2 := m.(interface{ WhereP(...func(*sql.Selector)) })
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("entaudit: mutation %T lacks SetOp or WhereP (generated by an older ent)", m)
	}
	idField, ok := entityField(et, typ.IDColumn)
	if !ok {
		return nil, fmt.Errorf("entaudit: entity %s has no field for its id column %s", et.Name(), typ.IDColumn)
	}
	idVal, err := decodeID(rid, idField.Type)
	if err != nil {
		return nil, fmt.Errorf("entaudit: %s id %q: %w", typ.Name, rid, err)
	}
	drv := s.Driver(m)
	exists, err := rowExists(ctx, drv, typ, idVal)
	if err != nil {
		return nil, err
	}
	byID := func(sel *sql.Selector) { sel.Where(sql.EQ(sel.C(typ.IDColumn), idVal)) }
	res := &RevertResult{}
	if target == nil {
		if !exists {
			res.Op = RevertNone
			return res, nil
		}
		setOp.SetOp(ent.OpDelete)
		where.WhereP(byID)
		if _, err := client.Mutate(ctx, m); err != nil {
			return nil, fmt.Errorf("entaudit: revert %s %s: delete: %w", typ.Table, rid, err)
		}
		res.Op = RevertDeleted
		return res, nil
	}
	if err := checkColumns(ctx, drv, typ, target); err != nil {
		return nil, err
	}
	vals, d, err := fieldValues(typ, et, target)
	if err != nil {
		return nil, err
	}
	res.Decoded = d
	if exists {
		setOp.SetOp(ent.OpUpdate)
		where.WhereP(byID)
		res.Op = RevertUpdated
	} else {
		setID := reflect.ValueOf(m).MethodByName("SetID")
		if !setID.IsValid() || setID.Type().NumIn() != 1 || !reflect.TypeOf(idVal).AssignableTo(setID.Type().In(0)) {
			return nil, fmt.Errorf("entaudit: revert %s %s: the row is gone and %s's ids are chosen by the database, so it cannot be created again with its id", typ.Table, rid, typ.Name)
		}
		setID.Call([]reflect.Value{reflect.ValueOf(idVal)})
		res.Op = RevertCreated
	}
	for _, fv := range vals {
		if fv.column == typ.IDColumn {
			continue
		}
		if fv.null {
			if err := m.ClearField(fv.column); err != nil && exists {
				return nil, fmt.Errorf("entaudit: revert %s %s: %s: %w", typ.Table, rid, fv.column, err)
			}
			continue
		}
		v := fv.val
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if err := m.SetField(fv.column, v.Interface()); err != nil {
			return nil, &IncompatibleError{Table: typ.Table, Column: fv.column, Problem: err.Error()}
		}
	}
	if _, err := client.Mutate(ctx, m); err != nil {
		return nil, fmt.Errorf("entaudit: revert %s %s: %s: %w", typ.Table, rid, res.Op, err)
	}
	return res, nil
}

// decodeID turns a resource id into a value of the entity's id field type.
func decodeID(rid string, t reflect.Type) (any, error) {
	p := reflect.New(t)
	raw, _ := json.Marshal(rid)
	if t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64 {
		raw = []byte(rid)
	}
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		return nil, err
	}
	return p.Elem().Interface(), nil
}

func rowExists(ctx context.Context, drv dialect.Driver, typ *Type, id any) (bool, error) {
	q := "SELECT 1 FROM " + quoteIdent(typ.Table) + " WHERE " + quoteIdent(typ.IDColumn) + " = $1"
	var rows sql.Rows
	if err := drv.Query(ctx, q, []any{id}, &rows); err != nil {
		return false, fmt.Errorf("entaudit: revert: reading %s: %w", typ.Table, err)
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// checkColumns refuses an image with a column the table no longer has, or a value the column's
// type no longer accepts (PostgreSQL casts each value, as it would store it).
func checkColumns(ctx context.Context, drv dialect.Driver, typ *Type, img map[string]any) error {
	var rows sql.Rows
	err := drv.Query(ctx, `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname
		FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, []any{quoteIdent(typ.Table)}, &rows)
	if err != nil {
		return fmt.Errorf("entaudit: reading the columns of %s: %w", typ.Table, err)
	}
	cols := map[string][2]string{}
	for rows.Next() {
		var name, ftype, tname string
		if err := rows.Scan(&name, &ftype, &tname); err != nil {
			rows.Close()
			return err
		}
		cols[name] = [2]string{ftype, tname}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(cols) == 0 {
		return fmt.Errorf("entaudit: table %s does not exist in the connection's search_path", typ.Table)
	}
	raw, err := json.Marshal(img)
	if err != nil {
		return err
	}
	for k, v := range img {
		c, ok := cols[k]
		if !ok {
			return &IncompatibleError{Table: typ.Table, Column: k, Problem: "the table has no such column any more"}
		}
		if v == nil || store.IsMasked(v) {
			continue
		}
		key := "'" + strings.ReplaceAll(k, "'", "''") + "'"
		expr := "CAST($1::jsonb->>" + key + " AS " + c[0] + ")"
		switch {
		case c[1] == "json" || c[1] == "jsonb":
			expr = "CAST($1::jsonb->" + key + " AS " + c[0] + ")"
		case c[1] == "bytea":
			expr = "pg_catalog.decode($1::jsonb->>" + key + ", 'base64')"
		}
		var one sql.Rows
		if err := drv.Query(ctx, "SELECT "+expr+" IS NULL", []any{string(raw)}, &one); err != nil {
			return &IncompatibleError{Table: typ.Table, Column: k, Problem: fmt.Sprintf("its value does not convert to the column's type %s: %v", c[0], err)}
		}
		for one.Next() {
		}
		err := one.Err()
		one.Close()
		if err != nil {
			return &IncompatibleError{Table: typ.Table, Column: k, Problem: fmt.Sprintf("its value does not convert to the column's type %s: %v", c[0], err)}
		}
	}
	return nil
}
