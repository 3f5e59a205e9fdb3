package gormaudit

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/inttext"
)

// Images are read from the database, never from the application's structs: a struct may be
// stale, may hold an expression instead of the stored value, and misses defaults and trigger
// effects. The values are the column values normalised for JSON:
//
//   - timestamps and timestamptz as RFC 3339 text in UTC with up to nanosecond digits (PostgreSQL
//     keeps microseconds), date as "2006-01-02";
//   - json and jsonb as the decoded document (numbers kept exact), and so are text or bytea
//     columns written by a serializer:json field;
//   - bytea as standard base64 (the way encoding/json writes []byte);
//   - numeric as a JSON number (NaN and infinities as text);
//   - integers, floats and booleans as themselves; everything else (uuid, text, enums, arrays,
//     intervals, ...) as PostgreSQL's text form.
//
// Because the stored value is read back, fields with a driver.Valuer or a serializer appear as
// what they stored, and embedded structs appear flattened into their columns, as GORM maps them.

// row is one database row read for an image.
type row struct {
	key   string         // the resource id: the primary key as text
	pk    []any          // the primary key values as the driver returned them
	vals  map[string]any // the image; nil when the row is not itemised
	fp    []any          // fingerprints of the audit:"-" columns (see column.fingerprint)
	fresh bool           // extra column 1: xmax = 0 (inserted, not updated, by the statement)
	ours  bool           // extra column 2: the row version was written by this transaction
}

type colKind uint8

const (
	kindPlain colKind = iota
	kindJSON
	kindBytea
	kindDate
	kindNumeric
	kindText
)

// scanRows reads rows whose first len(m.cols) columns are the model's columns, followed by
// nextra boolean columns (see row.fresh and row.ours). itemise decides, by position and key,
// whether a row gets an image or only its key. It closes rows. pkType is the database type of
// the first primary key column, as the driver names it.
func scanRows(rows *sql.Rows, m *model, nextra int, itemise func(i int, key string) bool) (out []row, pkType string, err error) {
	out, _, pkType, err = scanResult(rows, m, scanShape{nextra: nextra}, itemise)
	return out, pkType, err
}

// scanRowsXID is scanRows for a result whose last column is the transaction's id (xidColumn),
// when xid is not nil: the value of the first row is stored there, empty when there is none.
func scanRowsXID(rows *sql.Rows, m *model, nextra int, itemise func(i int, key string) bool, xid *string) (out []row, pkType string, err error) {
	out, _, pkType, err = scanResult(rows, m, scanShape{nextra: nextra, xid: xid}, itemise)
	return out, pkType, err
}

// scanShape describes a result scanResult reads beyond the model's columns, and what is known
// of it already.
type scanShape struct {
	lead   int // columns of another reader before the model's columns
	nextra int // boolean columns after them (see row.fresh and row.ours)
	// xid, when not nil, receives the value of the last column of the first row: the
	// transaction's id (xidColumn), empty when there is no row.
	xid *string
	// keep receives the lead values of each row (the slice is reused).
	keep func([]any)
	// before, when not nil, makes the lead columns the model's columns once more: each row's
	// image before the statement (see fuse.go), appended to *before with the same kinds,
	// itemised as its after image is.
	before *[]row
	// types are the result's column types when the caller has read them already.
	types []*sql.ColumnType
	// kinds are the kinds of the model's columns when they are known already: from a read of
	// the same columns of the same table earlier in the same transaction, after which the
	// table's lock keeps their types from changing. The column types are not read then, and
	// pkType is returned empty.
	kinds []colKind
	// rows is how many rows the result is expected to hold, when the caller knows (a statement
	// pinned to the rows read before it): the rows are then allocated at once, not grown into.
	rows int
}

// scanResult reads a result whose model columns follow shape.lead columns of another reader's
// and are followed by shape.nextra boolean columns and, with shape.xid, the transaction's id.
// It returns the rows, the kinds of the model's columns and the database type of the first
// primary key column (see scanRows), and closes rows.
func scanResult(rows *sql.Rows, m *model, shape scanShape, itemise func(i int, key string) bool) (out []row, kinds []colKind, pkType string, err error) {
	defer rows.Close()
	lead, nextra, xid := shape.lead, shape.nextra, shape.xid
	n := len(m.cols)
	if shape.before != nil {
		lead = n
	}
	width := lead + n + nextra
	if xid != nil {
		width++
	}
	types, kinds := shape.types, shape.kinds
	if len(kinds) != n {
		kinds = nil
	}
	var got int
	switch {
	case types != nil:
		got = len(types)
	case kinds != nil:
		cols, err := rows.Columns()
		if err != nil {
			return nil, nil, "", err
		}
		got = len(cols)
	default:
		if types, err = rows.ColumnTypes(); err != nil {
			return nil, nil, "", err
		}
		got = len(types)
	}
	if got != width {
		return nil, nil, "", fmt.Errorf("gormaudit: %d columns in the result, want %d", got, width)
	}
	if kinds == nil {
		pkType = types[lead].DatabaseTypeName()
		kinds = make([]colKind, n)
		for i := range n {
			kinds[i] = kindOf(types[lead+i].DatabaseTypeName(), m.cols[i].jsonSer)
		}
	}
	buf := make([]any, 2*width) // the values, then pointers to them
	all, ptrs := buf[:width:width], buf[width:]
	for i := range all {
		ptrs[i] = &all[i]
	}
	vals := all[lead:]
	if shape.rows > 0 {
		out = make([]row, 0, shape.rows)
	}
	var pks []any // backing store of the rows' keys, allocated in chunks
	var keys keyTexts
	need := m.npk // key values per result row
	if shape.before != nil {
		need *= 2
	}
	for rows.Next() {
		clear(all)
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, "", err
		}
		if shape.keep != nil {
			shape.keep(all[:lead])
		}
		if len(pks) < need {
			// One row's first (the usual statement changes one), then 64 rows' at a time.
			chunk := 64
			if len(out) == 0 {
				chunk = 1
			}
			pks = make([]any, chunk*need)
		}
		if shape.before != nil {
			b := row{pk: pks[:m.npk:m.npk]}
			pks = pks[m.npk:]
			fill(&b, m, all[:n], kinds, &keys, itemise == nil || itemise(len(out), ""))
			*shape.before = append(*shape.before, b)
		}
		r := row{pk: pks[:m.npk:m.npk]}
		pks = pks[m.npk:]
		if nextra > 0 {
			r.fresh, _ = vals[n].(bool)
		}
		if nextra > 1 {
			r.ours, _ = vals[n+1].(bool)
		}
		if xid != nil && len(out) == 0 {
			*xid, _ = all[width-1].(string)
		}
		if shape.before != nil {
			fill(&r, m, vals, kinds, &keys, (*shape.before)[len(out)].vals != nil)
		} else {
			r.key = keys.text(m, vals[:m.npk], kinds)
			fill(&r, m, vals, kinds, &keys, itemise == nil || itemise(len(out), r.key))
		}
		out = append(out, r)
	}
	return out, kinds, pkType, rows.Err()
}

// fill sets a row's key from the values of the model's columns (vals[:n]) and, when it is
// itemised, its image and fingerprints. r.pk must have room for the key's values.
func fill(r *row, m *model, vals []any, kinds []colKind, keys *keyTexts, itemised bool) {
	copy(r.pk, vals[:m.npk])
	if r.key == "" {
		r.key = keys.text(m, vals[:m.npk], kinds)
	}
	if !itemised {
		return
	}
	r.vals = make(map[string]any, len(m.cols))
	for i, c := range m.cols {
		switch {
		case c.fingerprint:
			r.fp = append(r.fp, vals[i])
		case !c.omit:
			r.vals[c.name] = normalise(vals[i], kinds[i])
		}
	}
}

func kindOf(dbType string, jsonSer bool) colKind {
	switch dbType {
	case "JSON", "JSONB":
		return kindJSON
	case "DATE":
		return kindDate
	case "NUMERIC":
		return kindNumeric
	}
	if jsonSer {
		return kindText
	}
	if dbType == "BYTEA" {
		return kindBytea
	}
	return kindPlain
}

func normalise(v any, k colKind) any {
	switch x := v.(type) {
	case nil, int64, bool:
		return v
	case time.Time:
		if k == kindDate {
			return x.Format(time.DateOnly)
		}
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return v
	case []byte:
		switch k {
		case kindJSON, kindText:
			if d, ok := decodeJSON(x); ok {
				return d
			}
			if k == kindJSON || !isBinary(x) {
				return string(x)
			}
		}
		if k == kindPlain && !isBinary(x) { // xml and other text the driver hands over as bytes
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case string:
		switch k {
		case kindNumeric:
			if _, err := strconv.ParseFloat(x, 64); err == nil && !strings.ContainsAny(x, "nN") {
				return json.Number(x)
			}
		case kindText, kindJSON:
			if d, ok := decodeJSON([]byte(x)); ok {
				return d
			}
		}
		return v // not x: boxing x again would allocate
	}
	return v
}

// isBinary is true for bytes that are not valid UTF-8 text.
func isBinary(b []byte) bool {
	return !bytes.Equal(bytes.ToValidUTF8(b, nil), b) || bytes.IndexByte(b, 0) >= 0
}

func decodeJSON(b []byte) (any, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// keyTexts renders the keys of a result's rows as keyText does, an integer key's text sharing
// a buffer with the others' (see inttext).
type keyTexts struct{ ints inttext.Texts }

func (k *keyTexts) text(m *model, pk []any, kinds []colKind) string {
	if x, ok := pk[0].(int64); ok && len(pk) == 1 {
		return k.ints.Format(x)
	}
	return keyText(m, pk, kinds)
}

// keyText renders a primary key as the resource id: the value's text for a single column, a
// JSON object of the columns (keys sorted, so the text is stable) for a composite key.
func keyText(m *model, pk []any, kinds []colKind) string {
	if len(pk) == 1 {
		return scalarText(normalise(pk[0], kinds[0]))
	}
	obj := make(map[string]any, len(pk))
	for i, v := range pk {
		obj[m.cols[i].name] = normalise(v, kinds[i])
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return ""
	}
	return string(b)
}

func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// diff returns the changed columns between two images (either may be nil), skipping omitted
// and ignored columns; redacted columns show that they changed with both sides masked.
func diff(m *model, before, after map[string]any) map[string]core.Change {
	var d map[string]core.Change
	for _, c := range m.cols {
		if c.omit || c.ignore {
			continue
		}
		b, a := before[c.name], after[c.name]
		if core.Equal(b, a) {
			continue
		}
		if c.redact {
			b, a = core.Mask(b), core.Mask(a)
		}
		if d == nil {
			d = make(map[string]core.Change)
		}
		d[c.name] = core.Change{From: b, To: a}
	}
	return d
}

// omittedChanged names the audit:"-" columns whose fingerprints differ between two rows.
func omittedChanged(m *model, before, after row) []string {
	if len(before.fp) == 0 || len(before.fp) != len(after.fp) {
		return nil
	}
	var out []string
	i := 0
	for _, c := range m.cols {
		if !c.fingerprint {
			continue
		}
		if !core.Equal(before.fp[i], after.fp[i]) {
			out = append(out, c.name)
		}
		i++
	}
	return out
}

// maskImage replaces the values of redacted columns; it runs after diff, which needs them.
func maskImage(m *model, img map[string]any) {
	if img == nil {
		return
	}
	for _, c := range m.cols {
		if c.redact {
			if v, ok := img[c.name]; ok {
				img[c.name] = core.Mask(v)
			}
		}
	}
}
