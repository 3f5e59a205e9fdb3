package entaudit

import (
	"bytes"
	"context"
	stdsql "database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
)

// rowSet holds rows read from one table: the images of the first rows (up to a limit) and the
// ids of all of them.
type rowSet struct {
	idType string           // PostgreSQL type of the id column, for array parameters ("" when unknown)
	ids    []string         // every id read, in order
	rawIDs []any            // the same ids as the driver returned them
	images []map[string]any // images of the first rows, in order
	xmax   []string         // xmax of the rows, when asked for
	byID   map[string]int   // id -> index in images
}

func (rs *rowSet) image(id string) map[string]any {
	if rs == nil {
		return nil
	}
	if i, ok := rs.byID[id]; ok {
		return rs.images[i]
	}
	return nil
}

// itemised returns the ids that have an image.
func (rs *rowSet) itemised() []string {
	if rs == nil {
		return nil
	}
	return rs.ids[:len(rs.images)]
}

// query runs q through drv and reads the rows of table t: images (without omitted columns) for
// the first limit rows, the ids of all rows. With xmax, the query's last column is the row's
// xmax as text.
func (h *hook) query(ctx context.Context, drv dialect.Driver, t *typeInfo, q string, args []any, limit int, xmax bool) (*rowSet, error) {
	var rows sql.Rows
	if err := drv.Query(ctx, q, args, &rows); err != nil {
		return nil, fmt.Errorf("entaudit: reading %s: %w", t.Table, err)
	}
	defer rows.Close()
	rs, err := scanRows(&rows, t, limit, xmax)
	if err != nil {
		return nil, fmt.Errorf("entaudit: reading %s: %w", t.Table, err)
	}
	return rs, nil
}

// column kinds that need converting after the scan.
const (
	colPlain = iota
	colOmit
	colJSON
	colBytes // bytea: kept as bytes
	colText  // a textual type some drivers return as bytes
)

// layout is how the columns of one query shape on one table are read. It is computed from the
// driver's column types once and reused while the columns stay the same.
type layout struct {
	cols   []string
	kinds  []uint8
	idIdx  int
	idType string
}

func (l *layout) matches(cols []string) bool {
	if l == nil || len(l.cols) != len(cols) {
		return false
	}
	for i, c := range cols {
		if l.cols[i] != c {
			return false
		}
	}
	return true
}

func newLayout(rows *sql.Rows, cols []string, n int, t *typeInfo) (*layout, error) {
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	l := &layout{cols: cols, kinds: make([]uint8, len(cols)), idIdx: -1}
	for i := 0; i < n; i++ {
		c := cols[i]
		dt := strings.ToUpper(types[i].DatabaseTypeName())
		switch {
		case c == t.IDColumn && l.idIdx < 0:
			l.idIdx = i
			l.idType = arrayType(dt)
			l.kinds[i] = colText
		case t.omit[c]:
			l.kinds[i] = colOmit
		case dt == "JSON" || dt == "JSONB":
			l.kinds[i] = colJSON
		case dt == "BYTEA":
			l.kinds[i] = colBytes
		default:
			l.kinds[i] = colText
		}
	}
	if l.idIdx < 0 {
		return nil, fmt.Errorf("no column %q in the result", t.IDColumn)
	}
	return l, nil
}

func scanRows(rows *sql.Rows, t *typeInfo, limit int, xmax bool) (*rowSet, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	n := len(cols)
	cache := &t.layouts[0]
	if xmax {
		n--
		cache = &t.layouts[1]
	}
	l := cache.Load()
	if !l.matches(cols) {
		if l, err = newLayout(rows, cols, n, t); err != nil {
			return nil, err
		}
		cache.Store(l)
	}
	kinds, idIdx := l.kinds, l.idIdx
	rs := &rowSet{idType: l.idType, byID: map[string]int{}}
	vals := make([]any, len(cols))
	full := make([]any, len(cols))
	for i := range vals {
		full[i] = &vals[i]
	}
	// Rows past the limit only give their id: the other columns go into reused buffers.
	var skip []any
	for rows.Next() {
		dest := full
		if len(rs.images) >= limit {
			if skip == nil {
				skip = make([]any, len(cols))
				for i := range skip {
					if i == idIdx {
						skip[i] = &vals[i]
					} else {
						skip[i] = new(stdsql.RawBytes)
					}
				}
			}
			dest = skip
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		id := idString(vals[idIdx])
		rs.ids = append(rs.ids, id)
		rs.rawIDs = append(rs.rawIDs, rawID(vals[idIdx]))
		if xmax {
			rs.xmax = append(rs.xmax, textOf(vals[n]))
		}
		if len(rs.images) >= limit {
			continue
		}
		img := make(map[string]any, n)
		for i := 0; i < n; i++ {
			if kinds[i] == colOmit {
				continue
			}
			img[cols[i]] = normalize(vals[i], kinds[i])
		}
		rs.byID[id] = len(rs.images)
		rs.images = append(rs.images, img)
	}
	return rs, rows.Err()
}

// normalize turns a scanned value into what the record stores.
func normalize(v any, kind uint8) any {
	switch x := v.(type) {
	case nil:
		return nil
	case time.Time:
		return x.UTC()
	case []byte:
		switch kind {
		case colJSON:
			return decodeJSON(x)
		case colBytes:
			return x
		}
		return string(x)
	case string:
		if kind == colJSON {
			return decodeJSON([]byte(x))
		}
		return x
	case [16]byte:
		return uuid.UUID(x).String()
	}
	return v
}

func decodeJSON(b []byte) any {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	return v
}

// idString is the text form of a primary key, as audit records store it.
func idString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case [16]byte:
		return uuid.UUID(x).String()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// rawID copies a scanned id so that it outlives the scan buffer.
func rawID(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// arrayType returns the PostgreSQL type to cast an array parameter of the id column to, or ""
// when the driver did not name a plain type.
func arrayType(dt string) string {
	t := strings.ToLower(dt)
	if t == "" || len(t) > 32 {
		return ""
	}
	for _, r := range t {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return ""
		}
	}
	return t
}

// arrayLiteral renders ids as the text of a PostgreSQL array, every element quoted.
func arrayLiteral(ids []string) string {
	var b strings.Builder
	b.Grow(len(ids) * 8)
	b.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(id); j++ {
			if id[j] == '"' || id[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(id[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// inIDs returns the predicate "column is one of ids": one array parameter when the column's type
// is known, a list of parameters otherwise.
func inIDs(column string, ids []string, raw []any, typ string) *sql.Predicate {
	if typ != "" {
		lit := arrayLiteral(ids)
		return sql.P(func(b *sql.Builder) {
			b.Ident(column).WriteString(" = ANY(").Arg(lit).WriteString("::" + typ + "[])")
		})
	}
	return sql.In(column, raw...)
}

// equal reports whether two normalised values are the same.
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return reflect.DeepEqual(a, b)
}
