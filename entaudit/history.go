package entaudit

import (
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/revertcore"
)

// rc holds what reverting shares with gormaudit; its errors start with "entaudit".
const rc = revertcore.Prefix("entaudit")

// ErrIncompatibleImage is wrapped by the *IncompatibleError returned when a stored image no
// longer fits the entity or its table: a column of the image is gone, or its value no longer
// converts to the field's or the column's type.
var ErrIncompatibleImage = errors.New("the image does not fit the current schema")

// IncompatibleError names the column of an image that no longer fits and why.
type IncompatibleError struct {
	Table   string
	Column  string
	Problem string
}

// Error names the table, the column and the problem.
func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("entaudit: %v: %s.%s: %s", ErrIncompatibleImage, e.Table, e.Column, e.Problem)
}

// Unwrap lets errors.Is(err, ErrIncompatibleImage) match.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatibleImage }

// Decoded says how an image was decoded into an entity.
type Decoded struct {
	// Masked lists the columns whose stored value is a mask (see store.IsMasked): their fields
	// were left as they were.
	Masked []string
	// Missing lists the entity's fields the image does not hold (Omit fields, fields added
	// since): they were left as they were.
	Missing []string
}

// History reads the recorded past of ent entities from a Store, in one scope. Schema is the
// generated AuditSchema. It is a small value: make one per request or tenant.
//
//	h := entaudit.History{Store: st, Scope: store.TenantScope("t-42"), Schema: ent.AuditSchema}
//	var u ent.User
//	v, err := h.AsOf(ctx, &u, 7, lastWeek)
type History struct {
	Store  *store.Store
	Scope  store.Scope
	Schema Schema
}

// Version is an entity as it was at a time.
type Version struct {
	// Snapshot is the stored image and the record that left it (store.Store.AsOf).
	Snapshot *store.Snapshot
	// Deleted reports that the row was deleted at that time; dest then holds its last image.
	Deleted bool
	Decoded
}

// AsOf decodes into dest (a pointer to a generated entity, such as *ent.User) the row with id as
// it was at t. Each column of the image is decoded into the entity's field the way ent's own JSON
// form of the entity reads it (times, []byte, UUIDs, enums, JSON fields, nillable fields as
// pointers); the edges' foreign keys and the entity's edges are not set. A row deleted at t is
// decoded from its last image with Version.Deleted set; a row whose history starts after t gives
// an error wrapping store.ErrBeforeHistory, and a row without history store.ErrNotFound.
func (h History) AsOf(ctx context.Context, dest any, id any, t time.Time) (*Version, error) {
	if h.Store == nil || h.Schema == nil {
		return nil, errors.New("entaudit: History needs a Store and a Schema")
	}
	typ, err := entityType(h.Schema, dest)
	if err != nil {
		return nil, err
	}
	rid, err := ResourceID(id)
	if err != nil {
		return nil, err
	}
	sn, err := h.Store.AsOf(ctx, h.Scope, typ.Table, rid, t)
	if err != nil {
		return nil, err
	}
	d, err := DecodeImage(h.Schema, dest, sn.Image)
	if err != nil {
		return nil, err
	}
	return &Version{Snapshot: sn, Deleted: sn.Deleted, Decoded: d}, nil
}

// ResourceID returns the resource id the hook records for the entity with id: the id's text.
func ResourceID(id any) (string, error) {
	switch x := id.(type) {
	case nil:
		return "", errors.New("entaudit: the id is nil")
	case string:
		return x, nil
	case fmt.Stringer:
		return x.String(), nil
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		return string(b), err
	}
	rv := reflect.ValueOf(id)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.String:
		return rv.String(), nil
	}
	return "", fmt.Errorf("entaudit: an id of type %T is not supported; give its text", id)
}

// entityType finds the audited type of an entity value (*ent.User: type User).
func entityType(s Schema, entity any) (*Type, error) {
	rt := reflect.TypeOf(entity)
	if rt == nil || rt.Kind() != reflect.Pointer || rt.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("entaudit: %T is not a pointer to an entity", entity)
	}
	for _, t := range s.Types() {
		if t.Name == rt.Elem().Name() {
			if t.Skip {
				return nil, fmt.Errorf("entaudit: type %s is not audited (Skip): it has no history", t.Name)
			}
			return t, nil
		}
	}
	return nil, fmt.Errorf("entaudit: %s is not a type of the schema", rt.Elem().Name())
}

func typeOfTable(s Schema, table string) (*Type, error) {
	for _, t := range s.Types() {
		if t.Table == table && !t.Skip {
			return t, nil
		}
	}
	return nil, fmt.Errorf("entaudit: no audited type of the schema is stored in table %s", table)
}

// entityField finds the field of an entity struct that holds column: by its JSON name, or, for
// fields ent hides from JSON (Sensitive), by its Go name.
func entityField(rt reflect.Type, column string) (reflect.StructField, bool) {
	norm := strings.ReplaceAll(column, "_", "")
	var byName reflect.StructField
	found := false
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() || f.Name == "Edges" {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == column {
			return f, true
		}
		if (tag == "-" || tag == "") && strings.EqualFold(f.Name, norm) {
			byName, found = f, true
		}
	}
	return byName, found
}

// DecodeImage decodes a stored row image (store.Snapshot.Image, store.Record.Before or After) into
// dest, a pointer to a generated entity of s. Fields of masked columns, and of columns the image
// lacks, are left as they are (the result lists them); the foreign keys of edges are skipped. A
// column the entity no longer has, or a value its field's type no longer accepts, gives an
// *IncompatibleError.
func DecodeImage(s Schema, dest any, image json.RawMessage) (Decoded, error) {
	typ, err := entityType(s, dest)
	if err != nil {
		return Decoded{}, err
	}
	img, err := rc.ImageMap(image)
	if err != nil {
		return Decoded{}, err
	}
	if img == nil {
		return Decoded{}, errors.New("entaudit: the image is empty: the row has no image there")
	}
	vals, d, err := fieldValues(typ, reflect.TypeOf(dest).Elem(), img)
	if err != nil {
		return d, err
	}
	dv := reflect.ValueOf(dest).Elem()
	for _, fv := range vals {
		dv.FieldByIndex(fv.field.Index).Set(fv.val)
	}
	return d, nil
}

// fieldValue is one column of an image decoded into the type of its entity field.
type fieldValue struct {
	column string
	field  reflect.StructField
	val    reflect.Value
	null   bool
}

// fieldValues decodes the columns of img into the types of the entity's fields.
func fieldValues(typ *Type, rt reflect.Type, img map[string]any) ([]fieldValue, Decoded, error) {
	var d Decoded
	fks := map[string]bool{}
	for _, e := range typ.Edges {
		if e.Storage == StoredInOwnTable {
			fks[e.Column] = true
		}
	}
	names := make([]string, 0, len(img))
	for k := range img {
		names = append(names, k)
	}
	slices.Sort(names)
	var out []fieldValue
	seen := map[string]bool{}
	for _, k := range names {
		f, ok := entityField(rt, k)
		switch {
		case !ok && fks[k]:
			continue
		case !ok:
			return nil, d, &IncompatibleError{Table: typ.Table, Column: k, Problem: fmt.Sprintf("entity %s has no field for it any more", rt.Name())}
		}
		seen[f.Name] = true
		if store.IsMasked(img[k]) {
			d.Masked = append(d.Masked, k)
			continue
		}
		raw, err := json.Marshal(img[k])
		if err != nil {
			return nil, d, err
		}
		p := reflect.New(f.Type)
		if err := json.Unmarshal(raw, p.Interface()); err != nil {
			return nil, d, &IncompatibleError{Table: typ.Table, Column: k,
				Problem: fmt.Sprintf("its value does not decode into field %s (%s): %v", f.Name, f.Type, err)}
		}
		out = append(out, fieldValue{column: k, field: f, val: p.Elem(), null: img[k] == nil})
	}
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || f.Name == "Edges" || seen[f.Name] || tag == "" && f.Anonymous {
			continue
		}
		name := tag
		if name == "" || name == "-" {
			name = f.Name
		}
		d.Missing = append(d.Missing, name)
	}
	return out, d, nil
}
