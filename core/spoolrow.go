package core

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/netip"
	"time"
	"unsafe"

	"github.com/google/uuid"
)

// The spool row format keeps one audit_logs row, as rowValues returns it, in bytes that decode to
// exactly the same values: same Go types, same bytes of every JSON document, same instant to the
// nanosecond. A row replayed from a spool after a crash is then copied as it would have been copied
// without the spool, and hits the same (id, occurred_at) key.
//
// Layout: the format version byte (spoolRowVersion), then for each of the len(Columns) columns, in
// order, a tag byte and the value:
//
//	null      nothing (an untyped nil)
//	nilBytes  nothing (a nil []byte, which rowValues gives for an absent JSON document)
//	string    uvarint length, bytes
//	bytes     uvarint length, bytes (a non-nil []byte, possibly empty)
//	int16     zigzag varint
//	int32     zigzag varint
//	int64     zigzag varint
//	uuid      16 bytes
//	time      zigzag varint Unix seconds, uvarint nanoseconds (< 1e9); decoded in UTC
//	prefix    4 or 16 (the address length), the address bytes, the prefix length byte
//
// Every value has exactly one encoding (varints are minimal), so a row that decodes re-encodes to
// the same bytes. Times are kept as seconds and nanoseconds rather than UnixNano so that every time
// PostgreSQL can store (4713 BC to 294276 AD) survives, not only 1678 to 2262; the location is not
// kept, as pgx copies the instant only.
//
// Version 2 added the trace_id and span_id columns at the end. A version 1 row (the 29 columns
// before them) still decodes, with both as NULL, so a spool written before the upgrade is replayed.
const spoolRowVersion = 2

// spoolRowColumnsV1 is the number of columns of a version 1 row.
const spoolRowColumnsV1 = 29

// Value tags of the spool row format.
const (
	tagNull byte = iota
	tagNilBytes
	tagString
	tagBytes
	tagInt16
	tagInt32
	tagInt64
	tagUUID
	tagTime
	tagPrefix
	numTags
)

var tagNames = [numTags]string{"null", "nil bytes", "string", "bytes", "int16", "int32", "int64", "uuid", "time", "prefix"}

// The tags each column accepts, as bit sets over the tags.
const (
	allowText     = 1 << tagString
	allowOptText  = 1<<tagNull | 1<<tagString
	allowDocument = 1<<tagNull | 1<<tagNilBytes | 1<<tagBytes
)

// spoolColumnTags lists the tags allowed for each column, in the order of Columns.
var spoolColumnTags = [...]uint16{
	1 << tagUUID, 1 << tagTime, allowText, allowText, allowText, // id, occurred_at, kind, action, severity
	allowOptText, allowOptText, // tenant_id, tenant_slug
	allowOptText, allowText, allowOptText, allowOptText, // actor_id, actor_type, actor_email, actor_auth
	allowOptText, allowOptText, // resource_type, resource_id
	allowDocument, allowDocument, allowDocument, // before, after, diff
	allowOptText, allowOptText, allowOptText, allowOptText, // request_id, method, route, path
	allowDocument, 1<<tagNull | 1<<tagInt32, 1<<tagNull | 1<<tagInt64, // query, status, duration_us
	1<<tagNull | 1<<tagPrefix, allowOptText, allowDocument, allowDocument, allowDocument, // ip, user_agent, request_body, response_body, metadata
	1 << tagInt16,              // version
	allowOptText, allowOptText, // trace_id, span_id
}

// errSpoolRow is wrapped by the errors of encodeRow, decodeRow and recordFromRow.
var errSpoolRow = errors.New("spool row")

// encodeRow appends the binary encoding of row (as returned by rowValues) to dst and returns it.
// It allocates nothing beyond growing dst. A row of the wrong length, or a value whose type the
// column does not take, is an error and dst is returned unchanged.
func encodeRow(dst []byte, row []any) ([]byte, error) {
	if len(row) != len(Columns) {
		return dst, fmt.Errorf("%w: %d values, want %d", errSpoolRow, len(row), len(Columns))
	}
	start := len(dst)
	dst = append(dst, spoolRowVersion)
	for i, v := range row {
		var tag byte
		switch v := v.(type) {
		case nil:
			tag = tagNull
		case string:
			tag = tagString
		case []byte:
			if v == nil {
				tag = tagNilBytes
			} else {
				tag = tagBytes
			}
		case int16:
			tag = tagInt16
		case int32:
			tag = tagInt32
		case int64:
			tag = tagInt64
		case uuid.UUID:
			tag = tagUUID
		case time.Time:
			tag = tagTime
		case netip.Prefix:
			if !v.IsValid() {
				return dst[:start], fmt.Errorf("%w: column %s: invalid prefix", errSpoolRow, Columns[i])
			}
			tag = tagPrefix
		default:
			return dst[:start], fmt.Errorf("%w: column %s: unsupported value type %T", errSpoolRow, Columns[i], v)
		}
		if spoolColumnTags[i]&(1<<tag) == 0 {
			return dst[:start], fmt.Errorf("%w: column %s: %s value not allowed", errSpoolRow, Columns[i], tagNames[tag])
		}
		dst = append(dst, tag)
		switch v := v.(type) {
		case string:
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		case []byte:
			if v != nil {
				dst = binary.AppendUvarint(dst, uint64(len(v)))
				dst = append(dst, v...)
			}
		case int16:
			dst = binary.AppendVarint(dst, int64(v))
		case int32:
			dst = binary.AppendVarint(dst, int64(v))
		case int64:
			dst = binary.AppendVarint(dst, v)
		case uuid.UUID:
			dst = append(dst, v[:]...)
		case time.Time:
			dst = binary.AppendVarint(dst, v.Unix())
			dst = binary.AppendUvarint(dst, uint64(v.Nanosecond()))
		case netip.Prefix:
			a := v.Addr()
			if a.Is4() {
				b := a.As4()
				dst = append(dst, 4)
				dst = append(dst, b[:]...)
			} else {
				b := a.As16()
				dst = append(dst, 16)
				dst = append(dst, b[:]...)
			}
			dst = append(dst, byte(v.Bits()))
		}
	}
	return dst, nil
}

// decodeRow decodes one row encoded by encodeRow. Malformed input (a truncated value, a tag the
// column does not take, a non-minimal varint, trailing bytes, ...) is an error saying which column
// and byte offset; it never panics.
//
// The strings and []byte values returned alias one private copy of b, made by decodeRow, so b may
// be reused afterwards. Each []byte value has its capacity capped at its length: appending to it
// reallocates, and writing into it changes only that value.
func decodeRow(b []byte) ([]any, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errSpoolRow)
	}
	n := len(Columns)
	switch b[0] {
	case spoolRowVersion:
	case 1:
		n = spoolRowColumnsV1
	default:
		return nil, fmt.Errorf("%w: format version %d, want %d (or 1)", errSpoolRow, b[0], spoolRowVersion)
	}
	d := rowDecoder{buf: bytes.Clone(b), off: 1}
	row := make([]any, len(Columns)) // a version 1 row leaves the later columns nil (NULL)
	for i := range row[:n] {
		v, err := d.value(i)
		if err != nil {
			return nil, err
		}
		row[i] = v
	}
	if d.off != len(d.buf) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the last column", errSpoolRow, len(d.buf)-d.off)
	}
	return row, nil
}

// rowDecoder reads the values of one row from buf, a private copy of the input.
type rowDecoder struct {
	buf   []byte
	off   int // the next byte to read
	start int // where the current column's tag is, for errors
}

func (d *rowDecoder) errorf(col int, format string, args ...any) error {
	return fmt.Errorf("%w: column %s at byte %d: %s", errSpoolRow, Columns[col], d.start, fmt.Sprintf(format, args...))
}

// value reads the tag and value of column col.
func (d *rowDecoder) value(col int) (any, error) {
	d.start = d.off
	if d.off >= len(d.buf) {
		return nil, d.errorf(col, "truncated: no tag")
	}
	tag := d.buf[d.off]
	if tag >= numTags {
		return nil, d.errorf(col, "unknown tag %d", tag)
	}
	if spoolColumnTags[col]&(1<<tag) == 0 {
		return nil, d.errorf(col, "%s value not allowed", tagNames[tag])
	}
	d.off++
	switch tag {
	case tagNull:
		return nil, nil
	case tagNilBytes:
		return []byte(nil), nil
	case tagString, tagBytes:
		n, err := d.uvarint(col)
		if err != nil {
			return nil, err
		}
		if n > uint64(len(d.buf)-d.off) {
			return nil, d.errorf(col, "truncated: %s of %d bytes, %d left", tagNames[tag], n, len(d.buf)-d.off)
		}
		end := d.off + int(n)
		s := d.buf[d.off:end:end]
		d.off = end
		if tag == tagBytes {
			return s, nil
		}
		// The copy is private and never written: no []byte value handed out overlaps a string.
		return unsafe.String(unsafe.SliceData(s), len(s)), nil
	case tagInt16:
		v, err := d.varint(col, math.MinInt16, math.MaxInt16)
		return int16(v), err
	case tagInt32:
		v, err := d.varint(col, math.MinInt32, math.MaxInt32)
		return int32(v), err
	case tagInt64:
		return d.varint(col, math.MinInt64, math.MaxInt64)
	case tagUUID:
		if len(d.buf)-d.off < 16 {
			return nil, d.errorf(col, "truncated uuid")
		}
		var id uuid.UUID
		copy(id[:], d.buf[d.off:])
		d.off += 16
		return id, nil
	case tagTime:
		sec, err := d.varint(col, math.MinInt64, math.MaxInt64)
		if err != nil {
			return nil, err
		}
		nsec, err := d.uvarint(col)
		if err != nil {
			return nil, err
		}
		if nsec >= 1e9 {
			return nil, d.errorf(col, "nanoseconds %d out of range", nsec)
		}
		return time.Unix(sec, int64(nsec)).UTC(), nil
	default: // tagPrefix
		if d.off >= len(d.buf) {
			return nil, d.errorf(col, "truncated prefix")
		}
		n := int(d.buf[d.off])
		if n != 4 && n != 16 {
			return nil, d.errorf(col, "address length %d, want 4 or 16", n)
		}
		if len(d.buf)-d.off < 1+n+1 {
			return nil, d.errorf(col, "truncated prefix")
		}
		var a netip.Addr
		if n == 4 {
			a = netip.AddrFrom4([4]byte(d.buf[d.off+1 : d.off+5]))
		} else {
			a = netip.AddrFrom16([16]byte(d.buf[d.off+1 : d.off+17]))
		}
		bitLen := int(d.buf[d.off+1+n])
		if bitLen > a.BitLen() {
			return nil, d.errorf(col, "prefix length %d longer than the address", bitLen)
		}
		d.off += 1 + n + 1
		return netip.PrefixFrom(a, bitLen), nil
	}
}

// uvarint reads a minimally encoded uvarint.
func (d *rowDecoder) uvarint(col int) (uint64, error) {
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		return 0, d.errorf(col, "truncated or overflowing varint")
	}
	if n != (bits.Len64(v|1)+6)/7 {
		return 0, d.errorf(col, "varint of %d bytes is not minimal", n)
	}
	d.off += n
	return v, nil
}

// varint reads a minimally encoded zigzag varint in [lo, hi].
func (d *rowDecoder) varint(col int, lo, hi int64) (int64, error) {
	u, err := d.uvarint(col)
	if err != nil {
		return 0, err
	}
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	if v < lo || v > hi {
		return 0, d.errorf(col, "integer %d out of range", v)
	}
	return v, nil
}

// recordFromRow rebuilds a Record from decoded row values, for callers that need the fields
// (OnReject callbacks, custom sinks, logs): every scalar field; Before, After, Metadata, Diff and
// Query decoded from their JSON with numbers kept as json.Number, so that they keep their exact
// text; bodies as a *Body with ContentType "application/json", the document as Data and its
// length as Size; Duration from microseconds; IP from the prefix's address. For a row rowValues
// made, rowValues of the result gives the row again. The version column has no Record field and
// is not checked. The record's byte slices and strings alias row's.
func recordFromRow(row []any) (*Record, error) {
	if len(row) != len(Columns) {
		return nil, fmt.Errorf("%w: %d values, want %d", errSpoolRow, len(row), len(Columns))
	}
	var err error
	str := func(i int) string {
		switch v := row[i].(type) {
		case string:
			return v
		case nil:
			if spoolColumnTags[i]&(1<<tagNull) != 0 {
				return ""
			}
		}
		if err == nil {
			err = fmt.Errorf("%w: column %s: %T value, want a string", errSpoolRow, Columns[i], row[i])
		}
		return ""
	}
	doc := func(i int, dst any) []byte {
		var b []byte
		switch v := row[i].(type) {
		case []byte:
			b = v
		case nil:
		default:
			if err == nil {
				err = fmt.Errorf("%w: column %s: %T value, want a JSON document", errSpoolRow, Columns[i], row[i])
			}
			return nil
		}
		if b == nil || dst == nil || err != nil {
			return b
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if e := dec.Decode(dst); e != nil {
			err = fmt.Errorf("%w: column %s: %w", errSpoolRow, Columns[i], e)
		} else if _, e := dec.Token(); e != io.EOF {
			err = fmt.Errorf("%w: column %s: data after the JSON document", errSpoolRow, Columns[i])
		}
		return b
	}
	body := func(i int) *Body {
		b := doc(i, nil)
		if len(b) == 0 {
			return nil
		}
		return &Body{ContentType: "application/json", Data: b, Size: int64(len(b))}
	}
	r := &Record{
		Kind:         Kind(str(2)),
		Action:       str(3),
		Severity:     Severity(str(4)),
		Tenant:       Tenant{ID: str(5), Slug: str(6)},
		Actor:        Actor{ID: str(7), Type: ActorType(str(8)), Email: str(9), Auth: str(10)},
		ResourceType: str(11),
		ResourceID:   str(12),
		RequestID:    str(16),
		Method:       str(17),
		Route:        str(18),
		Path:         str(19),
		UserAgent:    str(24),
		TraceID:      str(29),
		SpanID:       str(30),
	}
	doc(13, &r.Before)
	doc(14, &r.After)
	doc(15, &r.Diff)
	doc(20, &r.Query)
	r.RequestBody = body(25)
	r.ResponseBody = body(26)
	doc(27, &r.Metadata)
	if err != nil {
		return nil, err
	}
	var ok bool
	if r.ID, ok = row[0].(uuid.UUID); !ok {
		return nil, fmt.Errorf("%w: column id: %T value, want uuid.UUID", errSpoolRow, row[0])
	}
	if r.OccurredAt, ok = row[1].(time.Time); !ok {
		return nil, fmt.Errorf("%w: column occurred_at: %T value, want time.Time", errSpoolRow, row[1])
	}
	switch v := row[21].(type) {
	case int32:
		r.Status = int(v)
	case nil:
	default:
		return nil, fmt.Errorf("%w: column status: %T value, want int32", errSpoolRow, v)
	}
	switch v := row[22].(type) {
	case int64:
		if v > math.MaxInt64/int64(time.Microsecond) || v < math.MinInt64/int64(time.Microsecond) {
			return nil, fmt.Errorf("%w: column duration_us: %d µs does not fit a time.Duration", errSpoolRow, v)
		}
		r.Duration = time.Duration(v) * time.Microsecond
	case nil:
	default:
		return nil, fmt.Errorf("%w: column duration_us: %T value, want int64", errSpoolRow, v)
	}
	switch v := row[23].(type) {
	case netip.Prefix:
		r.IP = v.Addr()
	case nil:
	default:
		return nil, fmt.Errorf("%w: column ip: %T value, want netip.Prefix", errSpoolRow, v)
	}
	return r, nil
}
