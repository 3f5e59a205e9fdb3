package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
)

// Format is an export format.
type Format string

// The export formats.
const (
	// FormatCSV is RFC 4180 CSV with a header row of ExportColumns. A NULL is an empty field; JSON
	// columns hold the JSON text. A field that a spreadsheet program would run as a formula
	// (one starting with =, +, -, @, tab or carriage return) is prefixed with a single quote.
	FormatCSV Format = "csv"
	// FormatNDJSON is one JSON object per line, with the keys of Record's JSON form; NULL columns
	// are left out.
	FormatNDJSON Format = "ndjson"
	// FormatChain is one tenant's hash chain in seq order, for verification without the database
	// (core.VerifyExport, docs/verify_chain.py): one JSON object per line,
	// {"seq":N,"fields":[...],"row_hash":"hex"}, where fields are the 32 canonical fields of
	// docs/chain.md as strings or null, field 3 (prev_hash) in lowercase hex. Under a tenant scope
	// it is the tenant's chain; under the all-tenants scope, the chain of the records without a
	// tenant (tenant key ""). It takes no filter and ignores Order; FromSeq and ToSeq bound it.
	FormatChain Format = "chain"
	// FormatOCSF is one OCSF event (OCSFEvent, version OCSFVersion) per line.
	FormatOCSF Format = "ocsf"
)

// ParamFormat is the export format parameter.
const ParamFormat = "format"

// ParseFormat reads the format parameter: csv, ndjson, chain or ocsf (there is no default).
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatCSV, FormatNDJSON, FormatChain, FormatOCSF:
		return Format(s), nil
	case "":
		return "", paramErr(ParamFormat, "is required: csv, ndjson, chain or ocsf")
	}
	return "", paramErr(ParamFormat, "%q is not csv, ndjson, chain or ocsf", s)
}

// ExportColumns are the columns of an export, in CSV column order. They are the columns of
// audit_logs; ip holds the address without a prefix length.
var ExportColumns = []string{
	"id", "occurred_at", "kind", "action", "severity", "tenant_id", "tenant_slug",
	"actor_id", "actor_type", "actor_email", "actor_auth", "resource_type", "resource_id",
	"request_id", "method", "route", "path", "status", "duration_us", "ip", "user_agent",
	"query", "before", "after", "diff", "metadata", "request_body", "response_body", "version",
	"trace_id", "span_id",
}

// exportSelect matches ExportColumns; id and occurred_at arrive in binary, the rest as text.
const exportSelect = `id, occurred_at, kind, action, severity, tenant_id, tenant_slug,
	actor_id, actor_type, actor_email, actor_auth, resource_type, resource_id,
	request_id, method, route, path, status, duration_us, host(ip), user_agent,
	query, before, after, diff, metadata, request_body, response_body, version, trace_id, span_id`

// How each export column is encoded.
const (
	colText = iota
	colNumber
	colJSON
)

var exportKinds = func() []int {
	k := make([]int, len(ExportColumns))
	for i, c := range ExportColumns {
		switch c {
		case "status", "duration_us", "version":
			k[i] = colNumber
		case "query", "before", "after", "diff", "metadata", "request_body", "response_body":
			k[i] = colJSON
		}
	}
	return k
}()

var exportFormats = func() pgx.QueryResultFormats {
	f := make(pgx.QueryResultFormats, len(ExportColumns))
	for i := range f {
		f[i] = pgx.TextFormatCode
	}
	f[0], f[1] = pgx.BinaryFormatCode, pgx.BinaryFormatCode
	return f
}()

// ExportOptions configure an export.
type ExportOptions struct {
	Format Format
	// Order sorts the records by time. Within a tenant scope it is the order of List (zero means
	// NewestFirst). Across tenants, zero means storage order (roughly oldest first, the fastest:
	// one sequential scan); NewestFirst or OldestFirst group the records by tenant (ascending for
	// NewestFirst, descending for OldestFirst, rows without a tenant last for NewestFirst) and
	// sort them by time within each, which the tenant index serves without sorting the table but
	// with a random read per row.
	Order Order
	// FromSeq and ToSeq bound a FormatChain export to the records with seq from FromSeq to ToSeq;
	// zero means from the start and to the end.
	FromSeq, ToSeq int64
}

// ErrExportWrite wraps an error returned by the export's writer (typically a client that went
// away), to tell it from a database error.
var ErrExportWrite = errors.New("store: writing the export failed")

// Export writes every record in scope that matches f to w, in opts.Format, and returns the number
// of records written. It streams: rows are read from PostgreSQL and written to w one at a time
// through a fixed buffer, so memory stays flat whatever the size of the export.
//
// Nothing is written to w until the query has produced its first row (or finished empty), so a
// query that fails at once leaves w untouched and the caller can still report the error. An error
// after that means the output is truncated.
func (s *Store) Export(ctx context.Context, sc Scope, f Filter, opts ExportOptions, w io.Writer) (int64, error) {
	if err := sc.Validate(); err != nil {
		return 0, err
	}
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if _, err := ParseFormat(string(opts.Format)); err != nil {
		return 0, err
	}
	if opts.Format == FormatChain {
		return s.exportChain(ctx, sc, f, opts, w)
	}
	f.normalize()
	order, err := ParseOrder(string(opts.Order))
	if err != nil {
		return 0, err
	}
	var b sqlBuilder
	b.w("SELECT ", exportSelect, " FROM ", s.logs)
	s.where(&b, sc, f)
	switch {
	case sc.AllTenants && opts.Order == "":
		// storage order
	case !sc.AllTenants && order == NewestFirst:
		b.w(" ORDER BY occurred_at DESC, id DESC")
	case !sc.AllTenants:
		b.w(" ORDER BY occurred_at ASC, id ASC")
	case order == NewestFirst:
		b.w(" ORDER BY tenant_id ASC NULLS LAST, occurred_at DESC, id DESC")
	default:
		b.w(" ORDER BY tenant_id DESC NULLS FIRST, occurred_at ASC, id ASC")
	}
	args := append([]any{customPlan, exportFormats}, b.args...)
	var n int64
	err = s.scoped(ctx, sc, func(db querier) error {
		var err error
		n, err = s.export(ctx, db, b.sb.String(), args, opts.Format, w)
		return err
	})
	return n, err
}

// export runs the export's query on db and streams its rows to w.
func (s *Store) export(ctx context.Context, db querier, query string, args []any, format Format, w io.Writer) (int64, error) {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("store: export: %w", err)
	}
	defer rows.Close()
	more := rows.Next()
	if !more {
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("store: export: %w", err)
		}
	}

	ew := &exportWriter{w: w}
	ew.bw = bufio.NewWriterSize(ew, 64<<10)
	var n int64
	line := make([]byte, 0, 4096)
	if format == FormatCSV {
		for i, c := range ExportColumns {
			if i > 0 {
				line = append(line, ',')
			}
			line = append(line, c...)
		}
		line = append(line, '\r', '\n')
		_, _ = ew.bw.Write(line)
	}
	for ; more; more = rows.Next() {
		vals := rows.RawValues()
		want := len(ExportColumns)
		if format == FormatChain {
			want = core.ChainFieldCount + 1
		}
		if len(vals) != want {
			return n, fmt.Errorf("store: export: got %d columns, want %d", len(vals), want)
		}
		switch format {
		case FormatChain:
			line = appendChainRow(line[:0], vals)
		case FormatCSV:
			line = appendCSVRow(line[:0], vals)
		case FormatOCSF:
			var r Record
			if err := json.Unmarshal(appendNDJSONRow(line[:0], vals), &r); err != nil {
				return n, fmt.Errorf("store: export: %w", err)
			}
			if line, err = AppendOCSF(line[:0], &r); err != nil {
				return n, fmt.Errorf("store: export: %w", err)
			}
		default:
			line = appendNDJSONRow(line[:0], vals)
		}
		if _, err := ew.bw.Write(line); err != nil {
			return n, err
		}
		n++
		if cap(line) > 1<<20 { // one huge row must not pin its buffer for the rest of the export
			line = make([]byte, 0, 4096)
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("store: export after %d records: %w", n, err)
	}
	if err := ew.bw.Flush(); err != nil {
		return n, err
	}
	return n, nil
}

// exportChain writes the chain of sc's tenant (or, for all tenants, of tenant key "") in seq
// order, each record as its canonical fields and row_hash (FormatChain).
func (s *Store) exportChain(ctx context.Context, sc Scope, f Filter, opts ExportOptions, w io.Writer) (int64, error) {
	if !reflect.ValueOf(f).IsZero() {
		return 0, paramErr(ParamFormat, "chain exports a whole chain: it takes no filter")
	}
	if opts.FromSeq < 0 || opts.ToSeq < 0 || (opts.ToSeq > 0 && opts.ToSeq < opts.FromSeq) {
		return 0, paramErr(ParamFormat, "the seq range %d to %d is not a range", opts.FromSeq, opts.ToSeq)
	}
	var b sqlBuilder
	b.w(core.ChainSQL, " FROM ", s.logs, " WHERE coalesce(tenant_id, '') = ", b.arg(sc.TenantID), " AND seq IS NOT NULL")
	if opts.FromSeq > 0 {
		b.w(" AND seq >= ", b.arg(opts.FromSeq))
	}
	if opts.ToSeq > 0 {
		b.w(" AND seq <= ", b.arg(opts.ToSeq))
	}
	b.w(" ORDER BY seq")
	args := append([]any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}, b.args...)
	var n int64
	err := s.scoped(ctx, sc, func(db querier) error {
		var err error
		n, err = s.export(ctx, db, b.sb.String(), args, FormatChain, w)
		return err
	})
	return n, err
}

// appendChainRow encodes one row of core.ChainSQL, read in binary (text as its bytes, bytea raw),
// as a FormatChain line.
func appendChainRow(dst []byte, vals [][]byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = append(dst, vals[1]...)
	dst = append(dst, `,"fields":[`...)
	fields := vals[:core.ChainFieldCount]
	if v := fields[core.ChainFieldCountV2-1]; len(v) == 1 && (v[0] == '1' || v[0] == '2') && fields[32] == nil && fields[33] == nil {
		// A version 1 or 2 record has no trace context fields. One that has them anyway keeps
		// them, so that verifiers see that they are not covered by its hash.
		fields = fields[:core.ChainFieldCountV2]
	}
	for i, v := range fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		switch {
		case v == nil:
			dst = append(dst, "null"...)
		case i == 2:
			dst = append(dst, '"')
			dst = hex.AppendEncode(dst, v)
			dst = append(dst, '"')
		default:
			dst = appendJSONString(dst, v)
		}
	}
	dst = append(dst, `],"row_hash":"`...)
	dst = hex.AppendEncode(dst, vals[core.ChainFieldCount])
	return append(dst, '"', '}', '\n')
}

// exportWriter marks errors of the destination writer.
type exportWriter struct {
	w  io.Writer
	bw *bufio.Writer
}

func (e *exportWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrExportWrite, err)
	}
	return n, err
}

// pgEpoch is PostgreSQL's timestamp epoch, in Unix microseconds.
const pgEpoch = 946684800 * 1000000

func appendTimestamp(dst, raw []byte) []byte {
	if len(raw) != 8 {
		return dst
	}
	v := int64(binary.BigEndian.Uint64(raw))
	switch v {
	case math.MaxInt64:
		return append(dst, "infinity"...)
	case math.MinInt64:
		return append(dst, "-infinity"...)
	}
	return time.UnixMicro(v+pgEpoch).UTC().AppendFormat(dst, time.RFC3339Nano)
}

const hexDigits = "0123456789abcdef"

func appendUUID(dst, raw []byte) []byte {
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// appendCSVRow encodes one row as a CSV line ending in CRLF.
func appendCSVRow(dst []byte, vals [][]byte) []byte {
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		switch {
		case i == 0:
			dst = appendUUID(dst, v)
		case i == 1:
			dst = appendTimestamp(dst, v)
		case v == nil:
		case exportKinds[i] == colNumber:
			dst = append(dst, v...)
		default:
			dst = appendCSVField(dst, v)
		}
	}
	return append(dst, '\r', '\n')
}

// appendCSVField quotes a field when it needs quoting, and defuses a leading formula character
// with a single quote (OWASP's advice for CSV injection).
func appendCSVField(dst, v []byte) []byte {
	formula := len(v) > 0 && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' || v[0] == '\t' || v[0] == '\r')
	quote := false
	for _, c := range v {
		if c == ',' || c == '"' || c == '\n' || c == '\r' {
			quote = true
			break
		}
	}
	if !quote {
		if formula {
			dst = append(dst, '\'')
		}
		return append(dst, v...)
	}
	dst = append(dst, '"')
	if formula {
		dst = append(dst, '\'')
	}
	for _, c := range v {
		if c == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// appendNDJSONRow encodes one row as a JSON object and a newline.
func appendNDJSONRow(dst []byte, vals [][]byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = appendUUID(dst, vals[0])
	dst = append(dst, `","occurred_at":"`...)
	dst = appendTimestamp(dst, vals[1])
	dst = append(dst, '"')
	for i := 2; i < len(vals); i++ {
		v := vals[i]
		if v == nil {
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, ExportColumns[i]...)
		dst = append(dst, '"', ':')
		if exportKinds[i] == colText {
			dst = appendJSONString(dst, v)
		} else {
			dst = append(dst, v...)
		}
	}
	return append(dst, '}', '\n')
}

// appendJSONString appends s as a JSON string. PostgreSQL text is valid UTF-8 without NUL, so only
// quotes, backslashes and control characters need escaping; U+2028 and U+2029 are escaped too so
// that the output is also valid JavaScript.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0xe2 {
			i++
			continue
		}
		if c == 0xe2 { // U+2028 and U+2029 are e2 80 a8 and e2 80 a9
			if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9) {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hexDigits[s[i+2]&0xf])
				i += 3
				start = i
				continue
			}
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// VerifyChain runs core.Verify on the chain of sc's tenant or, under the all-tenants scope, on
// the chain of the records without a tenant (tenant key ""), in the store's schema and, with
// Options.RowLevelSecurity, under sc's row-level security settings. opts.Schema and
// opts.BeforeRead are the store's.
func (s *Store) VerifyChain(ctx context.Context, sc Scope, opts core.VerifyOptions) (*core.VerifyReport, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	opts.Schema = s.schema
	opts.BeforeRead = func(ctx context.Context, tx pgx.Tx) error { return s.setScope(ctx, tx, sc) }
	return core.Verify(ctx, s.pool, sc.TenantID, opts)
}
