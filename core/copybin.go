package core

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The Writer's rows go to PostgreSQL in COPY's binary format, written here straight from the row
// values: the columns of audit_logs have fixed types, so each value is appended as its column's
// binary form with a type switch, where pgx's CopyFrom looks up an encode plan for every value of
// every row (and learns the column types from the server first). The bytes are those pgx sends
// for the same values (TestCopyBinaryMatchesPgx stores rows both ways and compares them). A row
// holding a value of any other type is sent through pgx's CopyFrom instead.

// copyType is the PostgreSQL type of a column, as COPY's binary format writes it.
type copyType uint8

const (
	copyText        copyType = iota // text and the enum types: the UTF-8 bytes
	copyJSONB                       // jsonb: version 1, then the JSON text
	copyUUID                        // 16 bytes
	copyTimestamptz                 // int64 microseconds since 2000-01-01 00:00 UTC
	copyInt2
	copyInt4
	copyInt8
	copyInet  // family, bits, is_cidr, length, address
	copyBytea // the bytes
)

// copyTypes are the types of the columns of audit_logs and of its chain columns, by name.
var copyTypes = map[string]copyType{
	"id": copyUUID, "occurred_at": copyTimestamptz,
	"kind": copyText, "action": copyText, "severity": copyText,
	"tenant_id": copyText, "tenant_slug": copyText,
	"actor_id": copyText, "actor_type": copyText, "actor_email": copyText, "actor_auth": copyText,
	"resource_type": copyText, "resource_id": copyText,
	"before": copyJSONB, "after": copyJSONB, "diff": copyJSONB,
	"request_id": copyText, "method": copyText, "route": copyText, "path": copyText,
	"query": copyJSONB, "status": copyInt4, "duration_us": copyInt8,
	"ip": copyInet, "user_agent": copyText, "request_body": copyJSONB, "response_body": copyJSONB,
	"metadata": copyJSONB, "version": copyInt2,
	"trace_id": copyText, "span_id": copyText,
	"seq": copyInt8, "prev_hash": copyBytea, "row_hash": copyBytea,
}

// copyTypesOf returns the types of cols, or false when a column is not one of audit_logs'.
func copyTypesOf(cols []string) ([]copyType, bool) {
	types := make([]copyType, len(cols))
	for i, c := range cols {
		t, ok := copyTypes[c]
		if !ok {
			return nil, false
		}
		types[i] = t
	}
	return types, true
}

// copyHeader opens COPY's binary format: the signature, no flags, no header extension.
const copyHeader = "PGCOPY\n\377\r\n\000\000\000\000\000\000\000\000\000"

// microsecFromUnixEpochToY2K is the time from the Unix epoch to PostgreSQL's, 2000-01-01 UTC.
const microsecFromUnixEpochToY2K = 946684800 * 1000000

// errCopyValue reports a value that appendCopyValue does not write: the rows then go through
// pgx's CopyFrom.
var errCopyValue = errors.New("auditkit: a value the binary COPY does not write")

// appendCopyRow appends row, whose columns have the given types, as one tuple of COPY's binary
// format, or returns errCopyValue (and buf unchanged) when a value is not of a type it writes.
func appendCopyRow(buf []byte, row []any, types []copyType) ([]byte, error) {
	if len(row) != len(types) {
		return buf, fmt.Errorf("auditkit: a row of %d values for %d columns", len(row), len(types))
	}
	start := len(buf)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(row)))
	for i, v := range row {
		var ok bool
		if buf, ok = appendCopyValue(buf, v, types[i]); !ok {
			return buf[:start], errCopyValue
		}
	}
	return buf, nil
}

// appendCopyValue appends v as a field of type t: its length and its binary form, or -1 for NULL.
// It reports false when v is not of a Go type it writes for t.
func appendCopyValue(buf []byte, v any, t copyType) ([]byte, bool) {
	if v == nil {
		return binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF), true
	}
	switch t {
	case copyBytea:
		if x, ok := v.([]byte); ok {
			if x == nil {
				return binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF), true
			}
			return append(binary.BigEndian.AppendUint32(buf, uint32(len(x))), x...), true
		}
	case copyText:
		switch x := v.(type) {
		case string:
			return append(binary.BigEndian.AppendUint32(buf, uint32(len(x))), x...), true
		case []byte:
			if x == nil {
				return binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF), true
			}
			return append(binary.BigEndian.AppendUint32(buf, uint32(len(x))), x...), true
		}
	case copyJSONB:
		switch x := v.(type) {
		case []byte:
			if x == nil {
				return binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF), true
			}
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(x)+1))
			return append(append(buf, 1), x...), true
		case string:
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(x)+1))
			return append(append(buf, 1), x...), true
		}
	case copyUUID:
		if x, ok := v.(uuid.UUID); ok {
			return append(binary.BigEndian.AppendUint32(buf, 16), x[:]...), true
		}
	case copyTimestamptz:
		if x, ok := v.(time.Time); ok {
			us := x.Unix()*1000000 + int64(x.Nanosecond())/1000 - microsecFromUnixEpochToY2K
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(us)), true
		}
	case copyInt2:
		if x, ok := v.(int16); ok {
			return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint32(buf, 2), uint16(x)), true
		}
	case copyInt4:
		if x, ok := v.(int32); ok {
			return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(buf, 4), uint32(x)), true
		}
	case copyInt8:
		if x, ok := v.(int64); ok {
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(x)), true
		}
	case copyInet:
		if x, ok := v.(netip.Prefix); ok {
			if !x.IsValid() {
				return binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF), true
			}
			a := x.Addr()
			if a.Is4() {
				b := a.As4()
				buf = binary.BigEndian.AppendUint32(buf, 8)
				return append(append(buf, 2, byte(x.Bits()), 0, 4), b[:]...), true
			}
			b := a.As16()
			buf = binary.BigEndian.AppendUint32(buf, 20)
			return append(append(buf, 3, byte(x.Bits()), 0, 16), b[:]...), true
		}
	}
	return buf, false
}

// copyReader is COPY's binary data of a set of rows, made as it is read: a Read encodes rows
// until p is full, so that the batch is never held twice in memory.
//
// pgconn reads it from a goroutine of its own, which can still be inside Read when CopyFrom has
// returned (after an error from the server or a lost connection); close waits for that Read to
// end, and a Read after it reads nothing, so that the rows and the buffer are the caller's again.
type copyReader struct {
	mu      sync.Mutex
	closed  bool
	rows    [][]any
	types   []copyType
	next    int    // the next row to encode
	pending []byte // encoded bytes not yet read
	off     int    // where pending's unread bytes start
	done    bool   // the trailer is in pending
	scratch []byte
}

// copyBufs holds the buffers of copyReaders.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// errCopyClosed ends a Read after the COPY that asked for it returned.
var errCopyClosed = errors.New("auditkit: the COPY ended")

// close waits for a Read in progress and makes the Reads after it fail.
func (r *copyReader) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// Read fills p with the next bytes of the data.
func (r *copyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errCopyClosed
	}
	n := 0
	for n < len(p) {
		if r.off < len(r.pending) {
			c := copy(p[n:], r.pending[r.off:])
			n += c
			r.off += c
			continue
		}
		if r.done {
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
		// Encode while rows fit in p, the last one past it kept in pending.
		buf := r.scratch[:0]
		if r.next == 0 {
			buf = append(buf, copyHeader...)
		}
		for r.next < len(r.rows) && len(buf) < len(p)-n {
			var err error
			if buf, err = appendCopyRow(buf, r.rows[r.next], r.types); err != nil {
				return n, err
			}
			r.next++
		}
		if r.next == len(r.rows) {
			buf = append(buf, 0xFF, 0xFF) // the trailer: a tuple of -1 fields
			r.done = true
		}
		r.scratch, r.pending, r.off = buf, buf, 0
	}
	return n, nil
}

// copyRowsBinary stores rows into the table's columns with COPY in binary format on conn, and
// returns the number of rows stored. It reports errCopyValue, having sent nothing, when a column
// is not one of audit_logs' or a value is not of a type appendCopyValue writes. With begin, the
// query string opens a transaction before the COPY (and nothing is sent when an error is returned
// before the COPY starts): a multi-statement query runs its statements in order, COPY included,
// and the transaction an explicit BEGIN opens stays open after it.
func copyRowsBinary(ctx context.Context, conn *pgconn.PgConn, begin bool, table pgx.Identifier, cols []string, rows [][]any) (int64, error) {
	types, ok := copyTypesOf(cols)
	if !ok {
		return 0, errCopyValue
	}
	// Every value is checked before COPY starts, so that a value written the other way never
	// leaves a COPY half sent.
	for _, row := range rows {
		if len(row) != len(types) {
			return 0, fmt.Errorf("auditkit: a row of %d values for %d columns", len(row), len(types))
		}
		for i, v := range row {
			if !copyWrites(v, types[i]) {
				return 0, errCopyValue
			}
		}
	}
	var sql strings.Builder
	if begin {
		sql.WriteString("BEGIN; ")
	}
	sql.WriteString("COPY ")
	sql.WriteString(table.Sanitize())
	sql.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString(pgx.Identifier{c}.Sanitize())
	}
	sql.WriteString(") FROM STDIN (FORMAT binary)")
	bp := copyBufs.Get().(*[]byte)
	r := &copyReader{rows: rows, types: types, scratch: (*bp)[:0]}
	tag, err := conn.CopyFrom(ctx, r, sql.String())
	r.close()
	if cap(r.scratch) <= 1<<20 {
		*bp = r.scratch[:0]
		copyBufs.Put(bp)
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// copyWrites reports whether appendCopyValue writes v for a column of type t.
func copyWrites(v any, t copyType) bool {
	if v == nil {
		return true
	}
	switch t {
	case copyText, copyJSONB:
		switch v.(type) {
		case string, []byte:
			return true
		}
	case copyBytea:
		_, ok := v.([]byte)
		return ok
	case copyUUID:
		_, ok := v.(uuid.UUID)
		return ok
	case copyTimestamptz:
		_, ok := v.(time.Time)
		return ok
	case copyInt2:
		_, ok := v.(int16)
		return ok
	case copyInt4:
		_, ok := v.(int32)
		return ok
	case copyInt8:
		_, ok := v.(int64)
		return ok
	case copyInet:
		_, ok := v.(netip.Prefix)
		return ok
	}
	return false
}

// copyFromConn is what copyRows needs of a connection or a transaction: pgx's CopyFrom and the
// connection under it.
type copyFromConn interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
	Conn() *pgx.Conn
}

// copyRows stores rows with COPY on c: in binary format written by appendCopyRow when bin says the
// table's columns have the types it writes, otherwise (or when a value is of a type the binary
// writer does not write) through pgx's CopyFrom, which asks the server for the types.
func copyRows(ctx context.Context, bin *binaryCopy, c copyFromConn, table pgx.Identifier, cols []string, rows [][]any) (int64, error) {
	if bin.usable() {
		n, err := copyRowsBinary(ctx, c.Conn().PgConn(), false, table, cols, rows)
		if !errors.Is(err, errCopyValue) {
			return n, err
		}
	}
	return c.CopyFrom(ctx, table, cols, newCopySource(rows))
}

// beginCopyRows opens a transaction on c and stores rows in it as copyRows does. With the binary
// COPY, BEGIN travels in the COPY's query string and takes no round trip of its own. On an error
// the transaction may or may not be open: the caller rolls back either way.
func beginCopyRows(ctx context.Context, bin *binaryCopy, c copyFromConn, table pgx.Identifier, cols []string, rows [][]any) (int64, error) {
	if bin.usable() {
		n, err := copyRowsBinary(ctx, c.Conn().PgConn(), true, table, cols, rows)
		if !errors.Is(err, errCopyValue) {
			return n, err
		}
	}
	if _, err := c.Conn().Exec(ctx, "BEGIN"); err != nil {
		return 0, err
	}
	return c.CopyFrom(ctx, table, cols, newCopySource(rows))
}

// binaryCopy says whether a sink's table takes the binary COPY: whether each of its columns has
// the type copyTypes gives (text, varchar or an enum where text is written). Binary COPY sends
// each value in its column's binary form with no conversion, so a table whose columns were given
// other types (an int4 column made bigint) would refuse every batch; such a table is copied
// through pgx's CopyFrom, which converts. The table is checked once, before the first batch.
type binaryCopy struct {
	table pgx.Identifier
	state atomic.Int32 // binaryUnknown, binaryYes or binaryNo
}

const (
	binaryUnknown = iota
	binaryYes
	binaryNo
)

// usable reports whether the table was checked and takes the binary COPY.
func (b *binaryCopy) usable() bool { return b != nil && b.state.Load() == binaryYes }

// check reads the types of the table's columns once (until a read succeeds); an error leaves the
// table unchecked, and its batches go through pgx's CopyFrom meanwhile.
func (b *binaryCopy) check(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) {
	if b == nil || b.state.Load() != binaryUnknown {
		return
	}
	rows, err := q.Query(ctx, `SELECT a.attname, t.typname, t.typtype FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, b.table.Sanitize())
	if err != nil {
		return
	}
	types := map[string]string{}
	for rows.Next() {
		var name, typ, kind string
		if rows.Scan(&name, &typ, &kind) != nil {
			rows.Close()
			return
		}
		if kind == "e" {
			typ = "enum"
		}
		types[name] = typ
	}
	if rows.Err() != nil {
		return
	}
	state := int32(binaryYes)
	for col, t := range copyTypes {
		if !copyTypeMatches(t, types[col]) {
			state = binaryNo
			break
		}
	}
	b.state.Store(state)
}

// copyTypeMatches reports whether a column of the named PostgreSQL type ("enum" for any enum)
// takes the binary form appendCopyValue writes for t.
func copyTypeMatches(t copyType, typ string) bool {
	switch t {
	case copyText:
		return typ == "text" || typ == "varchar" || typ == "enum"
	case copyJSONB:
		return typ == "jsonb"
	case copyUUID:
		return typ == "uuid"
	case copyTimestamptz:
		return typ == "timestamptz"
	case copyInt2:
		return typ == "int2"
	case copyInt4:
		return typ == "int4"
	case copyInt8:
		return typ == "int8"
	case copyInet:
		return typ == "inet"
	case copyBytea:
		return typ == "bytea"
	}
	return false
}
