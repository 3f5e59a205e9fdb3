package entaudit

import (
	"context"
	stdsql "database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/inttext"
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
	xid    string           // the transaction's id, when the statement returned it (see xidColumn)
	// diffs, for rows read together with their versions before an UPDATE (see scanner.oldNew),
	// holds each imaged row's changed columns (Options.IgnoreFields left out), in the order of
	// images: core.Diff of the two images, made from the columns as they were scanned.
	diffs []map[string]core.Change
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

// imageDiff returns the image of the row id and, when the rows were read with their versions
// before an UPDATE, its diff from that version (see diffs); ok reports that the diff was made
// (d is nil when no column changed). Without ok, the caller makes the diff from the images.
func (rs *rowSet) imageDiff(id string) (img map[string]any, d map[string]core.Change, ok bool) {
	if rs == nil {
		return nil, nil, false
	}
	i, found := rs.byID[id]
	if !found {
		return nil, nil, false
	}
	if rs.diffs == nil {
		return rs.images[i], nil, false
	}
	return rs.images[i], rs.diffs[i], true
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
	colBytes // bytea: standard base64, as gormaudit and encoding/json write bytes
	colText  // a textual type some drivers return as bytes
)

// layout is how the columns of one query shape on one table are read. It is computed from the
// driver's column types once and reused while the columns stay the same.
type layout struct {
	cols   []string
	types  []*stdsql.ColumnType
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

// The shapes of result the hook reads, each with its cached layout.
const (
	shapeSelect    = iota // SELECT * (and UPDATE ... RETURNING *)
	shapeXmax             // SELECT *, xmax (and INSERT ... RETURNING *, xmax)
	shapeLeadXmax         // INSERT ... RETURNING "id", *, xmax: the first column is ent's
	shapeSelectXID        // UPDATE ... RETURNING *, the transaction's id (see xidColumn)
	shapeOldNew           // UPDATE ... RETURNING old.*, new.* (PostgreSQL 18 and later)
	shapeOldNewXID        // the same, then the transaction's id
	numShapes
)

// scanner reads the rows of one table into a rowSet: images (without omitted columns) for the
// first limit rows, the ids of all of them. For an UPDATE returning its rows before and after
// it (oldNew), rs holds the rows after it and old the same rows before it.
type scanner struct {
	rs         *rowSet
	old        *rowSet
	oldNew     bool // the columns before lead are the table's own again, as they were
	l          *layout
	lead, end  int // the table's columns are cols[lead:end]; xmax follows when asked
	xmax       bool
	xid        bool // the last column is the transaction's id
	limit      int
	vals       []any
	full, skip []any
	ids        inttext.Texts // the text of the rows' integer ids
	// With oldNew: was holds the current row's values before the UPDATE as its old image has
	// them, by column (an omitted column's entry is not used), and ignore names the columns the
	// diffs leave out.
	was    []any
	ignore map[string]bool
}

// idText is idString(v), an integer id's text sharing a buffer with the others' (see inttext).
func (s *scanner) idText(v any) string {
	if x, ok := v.(int64); ok {
		return s.ids.Format(x)
	}
	return idString(v)
}

func newScanner(rows sql.ColumnScanner, t *typeInfo, limit int, shape int) (*scanner, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	s := &scanner{limit: limit, end: len(cols)}
	switch shape {
	case shapeXmax:
		s.xmax, s.end = true, len(cols)-1
	case shapeLeadXmax:
		s.lead, s.xmax, s.end = 1, true, len(cols)-1
	case shapeSelectXID:
		s.xid, s.end = true, len(cols)-1
	case shapeOldNew, shapeOldNewXID:
		n := len(cols)
		if shape == shapeOldNewXID {
			s.xid, n = true, n-1
		}
		if n%2 != 0 {
			return nil, fmt.Errorf("unexpected columns %v", cols)
		}
		s.oldNew, s.lead, s.end = true, n/2, n
	}
	if s.end <= s.lead {
		return nil, fmt.Errorf("unexpected columns %v", cols)
	}
	cache := &t.layouts[shape]
	l := cache.Load()
	if !l.matches(cols) {
		types, err := rows.ColumnTypes()
		if err != nil {
			return nil, err
		}
		l = &layout{cols: cols, types: types, kinds: make([]uint8, len(cols)), idIdx: -1}
		for i := s.lead; i < s.end; i++ {
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
		cache.Store(l)
	}
	s.l = l
	s.rs = &rowSet{idType: l.idType, byID: map[string]int{}}
	if s.oldNew {
		s.old = &rowSet{idType: l.idType, byID: map[string]int{}}
	}
	s.vals = make([]any, len(cols))
	s.full = make([]any, len(cols))
	for i := range s.vals {
		s.full[i] = &s.vals[i]
	}
	return s, nil
}

// scan reads the current row; lead receives the columns before the table's own.
func (s *scanner) scan(rows sql.ColumnScanner, lead ...any) error {
	dest := s.full
	past := len(s.rs.images) >= s.limit
	if past {
		// Rows past the limit only give their id: the other columns go into reused buffers.
		if s.skip == nil {
			s.skip = make([]any, len(s.vals))
			for i := range s.skip {
				if i == s.l.idIdx || i < s.lead && (!s.oldNew || i == s.l.idIdx-s.lead) {
					s.skip[i] = &s.vals[i]
				} else {
					s.skip[i] = new(stdsql.RawBytes)
				}
			}
		}
		dest = s.skip
	}
	copy(dest, lead)
	err := rows.Scan(dest...)
	for i := range lead {
		dest[i] = &s.vals[i] // the buffers are reused for the next row
	}
	if err != nil {
		return err
	}
	rs := s.rs
	if s.xid && len(rs.ids) == 0 {
		rs.xid = textOf(s.vals[len(s.vals)-1])
	}
	id := s.idText(s.vals[s.l.idIdx])
	rs.ids = append(rs.ids, id)
	rs.rawIDs = append(rs.rawIDs, rawID(s.vals[s.l.idIdx]))
	if s.xmax {
		rs.xmax = append(rs.xmax, textOf(s.vals[s.end]))
	}
	if s.oldNew {
		s.scanOld(past)
	}
	if past {
		return nil
	}
	img := make(map[string]any, s.end-s.lead)
	var d map[string]core.Change
	for i := s.lead; i < s.end; i++ {
		if s.l.kinds[i] == colOmit {
			continue
		}
		col, v := s.l.cols[i], normalize(s.vals[i], s.l.kinds[i])
		img[col] = v
		// Both images have the same columns, so this is core.Diff of the two.
		if s.oldNew && !s.ignore[col] && !core.Equal(s.was[i-s.lead], v) {
			if d == nil {
				d = make(map[string]core.Change)
			}
			d[col] = core.Change{From: s.was[i-s.lead], To: v}
		}
	}
	rs.byID[id] = len(rs.images)
	rs.images = append(rs.images, img)
	if s.oldNew {
		rs.diffs = append(rs.diffs, d)
	}
	return nil
}

// scanOld adds to s.old the row the current one was before the UPDATE: its id, and its image
// unless the row is past the limit.
func (s *scanner) scanOld(past bool) {
	old, idIdx := s.old, s.l.idIdx-s.lead
	id := s.idText(s.vals[idIdx])
	old.ids = append(old.ids, id)
	old.rawIDs = append(old.rawIDs, rawID(s.vals[idIdx]))
	if past {
		return
	}
	img := make(map[string]any, s.lead)
	if s.was == nil {
		s.was = make([]any, s.lead)
	}
	for i := range s.lead {
		if k := s.l.kinds[i+s.lead]; k != colOmit {
			v := normalize(s.vals[i], k)
			img[s.l.cols[i+s.lead]] = v
			s.was[i] = v
		}
	}
	old.byID[id] = len(old.images)
	old.images = append(old.images, img)
}

func scanRows(rows *sql.Rows, t *typeInfo, limit int, xmax bool) (*rowSet, error) {
	shape := shapeSelect
	if xmax {
		shape = shapeXmax
	}
	s, err := newScanner(rows, t, limit, shape)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		if err := s.scan(rows); err != nil {
			return nil, err
		}
	}
	return s.rs, rows.Err()
}

// normalize turns a scanned value into what the record stores. Values that need no change are
// returned as they are, without boxing them again.
func normalize(v any, kind uint8) any {
	switch x := v.(type) {
	case nil:
		return nil
	case time.Time:
		if x.Location() == time.UTC {
			return v
		}
		return x.UTC()
	case []byte:
		switch kind {
		case colJSON:
			return decodeJSON(x)
		case colBytes:
			// Text, not bytes: the Redactor reads bytes as a request body, so two different
			// binary values would both become "[binary: N bytes]" and their change would vanish.
			return base64.StdEncoding.EncodeToString(x)
		}
		return string(x)
	case string:
		if kind == colJSON {
			return decodeJSON([]byte(x))
		}
		return v
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
