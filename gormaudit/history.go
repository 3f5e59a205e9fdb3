package gormaudit

import (
	"context"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/revertcore"
)

// rc holds what reverting shares with entaudit; its errors start with "gormaudit".
const rc = revertcore.Prefix("gormaudit")

// ErrIncompatibleImage is wrapped by the *IncompatibleError returned when a stored image no
// longer fits the model or its table: a column of the image is gone, or its value no longer
// converts to the column's type.
var ErrIncompatibleImage = errors.New("the image does not fit the current schema")

// IncompatibleError names the column of an image that no longer fits and why.
type IncompatibleError struct {
	Table   string
	Column  string
	Problem string
}

// Error names the table, the column and the problem.
func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("gormaudit: %v: %s.%s: %s", ErrIncompatibleImage, e.Table, e.Column, e.Problem)
}

// Unwrap lets errors.Is(err, ErrIncompatibleImage) match.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatibleImage }

// Decoded says how an image was decoded into a model.
type Decoded struct {
	// Masked lists the columns whose stored value is a mask (core.Redacted, a secret replaced in
	// place, core.ErasedValue, a value still encrypted): their fields were left as they were.
	Masked []string
	// Missing lists the model's columns the image does not hold (audit:"-" columns, columns
	// added since): their fields were left as they were.
	Missing []string
}

// History reads the recorded past of the rows of GORM models from a Store, in one scope. It is
// a small value: make one per request or tenant.
//
//	h := gormaudit.History{Store: st, Scope: store.TenantScope("t-42")}
//	var u User
//	v, err := h.AsOf(ctx, db, &u, 7, lastWeek)
type History struct {
	Store *store.Store
	Scope store.Scope
}

// Version is a row of a model as it was at a time.
type Version struct {
	// Snapshot is the stored image and the record that left it (store.Store.AsOf).
	Snapshot *store.Snapshot
	// Deleted reports that the row was deleted at that time; dest then holds its last image.
	Deleted bool
	Decoded
}

// AsOf decodes into dest (a pointer to a model) the row with primary key id as it was at t. id is
// the key's value, or for a composite key a map from column names to values. The image is
// converted by PostgreSQL to the types of the table's columns and scanned by GORM into the
// model, as a query would: times, JSON and serializer fields, []byte, UUIDs and other Scanner
// types, embedded structs. A row deleted at t is decoded from its last image with
// Version.Deleted set; a row whose history starts after t gives an error wrapping
// store.ErrBeforeHistory, and a row without history store.ErrNotFound.
func (h History) AsOf(ctx context.Context, db *gorm.DB, dest any, id any, t time.Time) (*Version, error) {
	if h.Store == nil {
		return nil, errors.New("gormaudit: History.Store is nil")
	}
	sch, err := parseModel(db, dest)
	if err != nil {
		return nil, err
	}
	rid, err := resourceID(sch, id)
	if err != nil {
		return nil, err
	}
	sn, err := h.Store.AsOf(ctx, h.Scope, sch.Table, rid, t)
	if err != nil {
		return nil, err
	}
	d, err := DecodeImage(ctx, db, dest, sn.Image)
	if err != nil {
		return nil, err
	}
	return &Version{Snapshot: sn, Deleted: sn.Deleted, Decoded: d}, nil
}

// ResourceID returns the resource id the plugin records for the row of model whose primary key is
// id (a value, or for a composite key a map from column names to values): what History and
// store.Store.History take.
func ResourceID(db *gorm.DB, model any, id any) (string, error) {
	sch, err := parseModel(db, model)
	if err != nil {
		return "", err
	}
	return resourceID(sch, id)
}

func parseModel(db *gorm.DB, model any) (*schema.Schema, error) {
	if db == nil {
		return nil, errors.New("gormaudit: nil *gorm.DB")
	}
	if model == nil {
		return nil, errors.New("gormaudit: nil model")
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(model); err != nil {
		return nil, fmt.Errorf("gormaudit: model %T: %w", model, err)
	}
	if len(stmt.Schema.PrimaryFields) == 0 {
		return nil, fmt.Errorf("gormaudit: model %s has no primary key: its rows have no history", stmt.Schema.Name)
	}
	return stmt.Schema, nil
}

// resourceID renders id as the plugin renders a primary key (keyText).
func resourceID(sch *schema.Schema, id any) (string, error) {
	img, err := keyImage(sch, id)
	if err != nil {
		return "", err
	}
	if len(sch.PrimaryFields) == 1 {
		return scalarText(img[sch.PrimaryFields[0].DBName]), nil
	}
	b, err := json.Marshal(img)
	return string(b), err
}

// keyImage returns the primary key id as an image of the key columns.
func keyImage(sch *schema.Schema, id any) (map[string]any, error) {
	pks := sch.PrimaryFields
	if m, ok := id.(map[string]any); ok {
		if len(m) != len(pks) {
			return nil, fmt.Errorf("gormaudit: the key of %s has the columns %s; got %d values", sch.Table, pkNames(sch), len(m))
		}
		img := make(map[string]any, len(m))
		for _, f := range pks {
			v, ok := m[f.DBName]
			if !ok {
				return nil, fmt.Errorf("gormaudit: the key of %s has the columns %s; %s is missing", sch.Table, pkNames(sch), f.DBName)
			}
			nv, err := keyValue(v)
			if err != nil {
				return nil, fmt.Errorf("gormaudit: %s.%s: %w", sch.Table, f.DBName, err)
			}
			img[f.DBName] = nv
		}
		return img, nil
	}
	if len(pks) != 1 {
		return nil, fmt.Errorf("gormaudit: %s has the composite key %s: give the id as a map[string]any of its columns", sch.Table, pkNames(sch))
	}
	v, err := keyValue(id)
	if err != nil {
		return nil, fmt.Errorf("gormaudit: %s.%s: %w", sch.Table, pks[0].DBName, err)
	}
	return map[string]any{pks[0].DBName: v}, nil
}

func pkNames(sch *schema.Schema) string {
	names := make([]string, len(sch.PrimaryFields))
	for i, f := range sch.PrimaryFields {
		names[i] = f.DBName
	}
	return strings.Join(names, ", ")
}

// keyValue normalises a key value as images hold it.
func keyValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, errors.New("the key value is nil")
	case string:
		return x, nil
	case json.Number:
		return x, nil
	case bool:
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), nil
	case fmt.Stringer:
		return x.String(), nil
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		return string(b), err
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return json.Number(strconv.FormatUint(rv.Uint(), 10)), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Pointer:
		if !rv.IsNil() {
			return keyValue(rv.Elem().Interface())
		}
	}
	return nil, fmt.Errorf("a key value of type %T is not supported; give its text", v)
}

// tableColumn is one column of a table as the catalog describes it.
type tableColumn struct {
	name, typ, typname string
}

// tableColumns reads the columns of table (resolved through the connection's search_path).
func tableColumns(ctx context.Context, db *gorm.DB, table string) (map[string]tableColumn, error) {
	rows, err := db.WithContext(ctx).Raw(`SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname
		FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = pg_catalog.to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped`, db.Statement.Quote(table)).Rows()
	if err != nil {
		return nil, fmt.Errorf("gormaudit: reading the columns of %s: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]tableColumn{}
	for rows.Next() {
		var c tableColumn
		if err := rows.Scan(&c.name, &c.typ, &c.typname); err != nil {
			return nil, fmt.Errorf("gormaudit: reading the columns of %s: %w", table, err)
		}
		cols[c.name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gormaudit: reading the columns of %s: %w", table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("gormaudit: table %s does not exist in the connection's search_path", table)
	}
	return cols, nil
}

// DecodeImage decodes a stored row image (store.Snapshot.Image, store.Record.Before or After)
// into dest, a pointer to a model, through the database and GORM: every column value is cast by
// PostgreSQL to the type the table's column has now, and the row is scanned by GORM into the
// model. Fields of masked columns, and of columns the image lacks, are left as they are (the
// result lists them). A column of the image that the table or the model no longer has, or a
// value the column's type no longer accepts, gives an *IncompatibleError.
func DecodeImage(ctx context.Context, db *gorm.DB, dest any, image json.RawMessage) (Decoded, error) {
	sch, err := parseModel(db, dest)
	if err != nil {
		return Decoded{}, err
	}
	img, err := rc.ImageMap(image)
	if err != nil {
		return Decoded{}, err
	}
	if img == nil {
		return Decoded{}, errors.New("gormaudit: the image is empty: the row has no image there")
	}
	d, _, err := decodeInto(ctx, db, sch, img, dest)
	return d, err
}

// decodeInto casts the columns of img to the table's types and scans them into dest. It returns
// the columns it set.
func decodeInto(ctx context.Context, db *gorm.DB, sch *schema.Schema, img map[string]any, dest any) (Decoded, []string, error) {
	var d Decoded
	cols, err := tableColumns(ctx, db, sch.Table)
	if err != nil {
		return d, nil, err
	}
	names := make([]string, 0, len(img))
	for k := range img {
		names = append(names, k)
	}
	slices.Sort(names)
	var set []string
	for _, k := range names {
		if _, ok := cols[k]; !ok {
			return d, nil, &IncompatibleError{Table: sch.Table, Column: k, Problem: "the table has no such column any more"}
		}
		if f := sch.LookUpField(k); f == nil || f.DBName != k {
			return d, nil, &IncompatibleError{Table: sch.Table, Column: k, Problem: fmt.Sprintf("model %s has no field for it any more", sch.Name)}
		}
		if store.IsMasked(img[k]) {
			d.Masked = append(d.Masked, k)
			continue
		}
		set = append(set, k)
	}
	for _, name := range sch.DBNames {
		if _, ok := img[name]; !ok {
			d.Missing = append(d.Missing, name)
		}
	}
	if len(set) == 0 {
		return d, nil, nil
	}
	raw, err := json.Marshal(img)
	if err != nil {
		return d, nil, err
	}
	exprs := make([]string, len(set))
	for i, k := range set {
		exprs[i] = castExpr(sch, cols[k], img[k]) + " AS " + db.Statement.Quote(k)
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM (SELECT CAST(? AS jsonb) AS i) AS src"
	// GORM's Scan sets every field of its destination: scan into a new value, then copy the
	// fields of the columns set, so that the others keep what dest holds.
	tmp := reflect.New(sch.ModelType)
	if err := db.WithContext(ctx).Raw(q, string(raw)).Scan(tmp.Interface()).Error; err != nil {
		// Find the column: cast them one at a time (only on this path).
		for _, k := range set {
			one := "SELECT " + castExpr(sch, cols[k], img[k]) + " FROM (SELECT CAST(? AS jsonb) AS i) AS src"
			var discard any
			if e := db.WithContext(ctx).Raw(one, string(raw)).Row().Scan(&discard); e != nil {
				return d, nil, &IncompatibleError{Table: sch.Table, Column: k,
					Problem: fmt.Sprintf("its value does not convert to the column's type %s: %v", cols[k].typ, e)}
			}
		}
		return d, nil, &IncompatibleError{Table: sch.Table, Column: strings.Join(set, ","),
			Problem: fmt.Sprintf("model %s cannot hold the values: %v", sch.Name, err)}
	}
	dv := reflect.ValueOf(dest)
	for dv.Kind() == reflect.Pointer {
		dv = dv.Elem()
	}
	if dv.Type() != sch.ModelType {
		return d, nil, fmt.Errorf("gormaudit: decode: the destination is a %s, want a pointer to %s", dv.Type(), sch.ModelType)
	}
	for _, k := range set {
		f := sch.LookUpField(k)
		f.ReflectValueOf(ctx, dv).Set(f.ReflectValueOf(ctx, tmp.Elem()))
	}
	return d, set, nil
}

// castExpr is the SQL expression that turns the image's value of column c (in src.i) into the
// column's type, the inverse of the normalisation in image.go.
func castExpr(sch *schema.Schema, c tableColumn, v any) string {
	key := "'" + strings.ReplaceAll(c.name, "'", "''") + "'"
	_, isText := v.(string)
	f := sch.LookUpField(c.name)
	jsonSer := f != nil && f.Serializer != nil && strings.EqualFold(f.TagSettings["SERIALIZER"], "json")
	switch {
	case v == nil:
		return "CAST(NULL AS " + c.typ + ")"
	case c.typname == "json" || c.typname == "jsonb":
		return "CAST(src.i->" + key + " AS " + c.typ + ")"
	case c.typname == "bytea" && (jsonSer || !isText):
		// A serializer:json document stored as bytes.
		return "pg_catalog.convert_to((src.i->" + key + ")::text, 'UTF8')"
	case c.typname == "bytea":
		return "pg_catalog.decode(src.i->>" + key + ", 'base64')"
	case jsonSer || !isText && f != nil && f.Serializer != nil:
		// A serializer:json document stored as text.
		return "CAST((src.i->" + key + ")::text AS " + c.typ + ")"
	}
	return "CAST(src.i->>" + key + " AS " + c.typ + ")"
}
