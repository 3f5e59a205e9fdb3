package core

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// copyOIDs are the types pgx encodes each copyType as.
var copyOIDs = map[copyType]uint32{
	copyText: pgtype.TextOID, copyJSONB: pgtype.JSONBOID, copyUUID: pgtype.UUIDOID,
	copyTimestamptz: pgtype.TimestamptzOID, copyInt2: pgtype.Int2OID, copyInt4: pgtype.Int4OID,
	copyInt8: pgtype.Int8OID, copyInet: pgtype.InetOID, copyBytea: pgtype.ByteaOID,
}

// copyEdgeValues are values of every type the binary COPY writes, at the edges of their ranges.
func copyEdgeValues() map[copyType][]any {
	return map[copyType][]any{
		copyText:  {"", "a", "ünïcödé ☃ 𝄞", strings.Repeat("x", 2000), "with\ttab and \"quotes\" and \\", []byte("bytes"), []byte{}},
		copyJSONB: {[]byte(`{"a": 1}`), []byte(`[1,2,{"b":"ü"}]`), []byte(`"s"`), `{"from":"string"}`, []byte(`{"big":"` + strings.Repeat("y", 90000) + `"}`)},
		copyUUID:  {uuid.Nil, uuid.MustParse("0190a3b4-5c6d-7e8f-9012-3456789abcde"), uuid.UUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		copyTimestamptz: {
			time.Date(2026, 12, 6, 1, 2, 3, 999999999, time.FixedZone("x", -5*3600)),
			time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC),
			time.Date(1, 1, 1, 0, 0, 0, 500, time.UTC),
			time.Date(200000, 1, 1, 0, 0, 0, 500, time.UTC),
		},
		copyInt2:  {int16(0), int16(3), int16(-1), int16(math.MaxInt16), int16(math.MinInt16)},
		copyInt4:  {int32(0), int32(200), int32(-1), int32(math.MaxInt32), int32(math.MinInt32)},
		copyInt8:  {int64(0), int64(1), int64(-1), int64(math.MaxInt64), int64(math.MinInt64)},
		copyInet:  copyEdgePrefixes(),
		copyBytea: {[]byte{}, []byte{0, 1, 2, 255}, bytes.Repeat([]byte{7}, 32)},
	}
}

func copyEdgePrefixes() []any {
	var out []any
	for _, s := range []string{"1.2.3.4/32", "10.0.0.0/8", "0.0.0.0/0", "::1/128", "2001:db8::1/64", "::ffff:1.2.3.4/128", "fe80::1/128"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return append(out, netip.Prefix{})
}

// TestCopyValueBytesArePgx: every value appendCopyValue writes is written as pgx's binary
// encoding of the same value for the column's type, its length before it, NULL as -1.
func TestCopyValueBytesArePgx(t *testing.T) {
	m := pgtype.NewMap()
	for typ, vals := range copyEdgeValues() {
		for _, v := range append(vals, nil) {
			got, ok := appendCopyValue(nil, v, typ)
			if !ok || !copyWrites(v, typ) {
				t.Fatalf("type %d: %T not written", typ, v)
			}
			want, err := m.Encode(copyOIDs[typ], pgtype.BinaryFormatCode, v, []byte{}) // nil means NULL
			if err != nil {
				t.Fatalf("type %d, %T: pgx: %v", typ, v, err)
			}
			var field []byte
			if want == nil {
				field = binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF)
			} else {
				field = append(binary.BigEndian.AppendUint32(nil, uint32(len(want))), want...)
			}
			if !bytes.Equal(got, field) {
				t.Errorf("type %d, %T %.40v: wrote %.80x, pgx %.80x", typ, v, v, got, field)
			}
		}
	}
	// Values of other types are left to pgx.
	for typ, v := range map[copyType]any{copyInt4: 5, copyInt8: int32(5), copyUUID: "0190a3b4-5c6d-7e8f-9012-3456789abcde",
		copyTimestamptz: "2026-01-01", copyInet: "1.2.3.4", copyText: 5, copyBytea: "text", copyJSONB: map[string]any{}} {
		if _, ok := appendCopyValue(nil, v, typ); ok || copyWrites(v, typ) {
			t.Errorf("type %d: %T written", typ, v)
		}
	}
	if len(copyTypes) != len(Columns)+len(ChainColumns) {
		t.Errorf("%d column types for %d columns", len(copyTypes), len(Columns)+len(ChainColumns))
	}
	for _, c := range append(append([]string(nil), Columns...), ChainColumns...) {
		if _, ok := copyTypes[c]; !ok {
			t.Errorf("no type for column %s", c)
		}
	}
}

// copyTestRows returns rows of audit_logs with its chain columns: the Writer's rows of a few
// records, and rows holding every edge value in its column.
func copyTestRows(t *testing.T) [][]any {
	t.Helper()
	cols := append(append([]string(nil), Columns...), ChainColumns...)
	red := NewRedactor(nil, nil)
	var base [][]any
	for i, r := range encodeRowRecords() {
		row, err := rowValues(red.Record(r))
		if err != nil {
			t.Fatal(err)
		}
		row = append(row, int64(i+1), bytes.Repeat([]byte{byte(i)}, 32), bytes.Repeat([]byte{byte(i + 1)}, 32))
		base = append(base, row)
	}
	rows := append([][]any(nil), base...)
	edges := copyEdgeValues()
	for c, name := range cols {
		typ := copyTypes[name]
		if name == "id" || name == "occurred_at" {
			continue // the key: every row needs its own
		}
		for j, v := range edges[typ] {
			if name == "kind" || name == "severity" || name == "actor_type" {
				break // enums: their labels only
			}
			if typ == copyJSONB {
				if s, ok := v.(string); ok && !strings.HasPrefix(s, "{") {
					continue
				}
			}
			row := append([]any(nil), base[j%len(base)]...)
			row[0] = uuid.Must(uuid.NewV7())
			row[c] = v
			rows = append(rows, row)
		}
		row := append([]any(nil), base[0]...)
		row[0] = uuid.Must(uuid.NewV7())
		if name != "action" && name != "kind" && name != "severity" && name != "actor_type" && name != "version" {
			row[c] = nil
		}
		rows = append(rows, row)
	}
	for _, at := range edges[copyTimestamptz] {
		row := append([]any(nil), base[1]...)
		row[0], row[1] = uuid.Must(uuid.NewV7()), at
		rows = append(rows, row)
	}
	// Enough rows that the data crosses the reader's buffers many times.
	for i := range 3000 {
		row := append([]any(nil), base[i%len(base)]...)
		row[0] = uuid.Must(uuid.NewV7())
		rows = append(rows, row)
	}
	return rows
}

// TestCopyBinaryMatchesPgx stores the same rows with pgx's CopyFrom and with the binary COPY into
// two tables like audit_logs, and finds them equal, value by value; copyRows stores them into
// audit_logs itself (partitioned).
func TestCopyBinaryMatchesPgx(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE copy_pgx (LIKE audit_logs INCLUDING DEFAULTS);
		CREATE TABLE copy_bin (LIKE audit_logs INCLUDING DEFAULTS)`); err != nil {
		t.Fatal(err)
	}
	cols := append(append([]string(nil), Columns...), ChainColumns...)
	rows := copyTestRows(t)
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{db.Schema, "copy_pgx"}, cols, newCopySource(rows))
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("pgx CopyFrom: %d rows, %v", n, err)
	}
	n, err = copyRowsBinary(ctx, conn.Conn().PgConn(), false, pgx.Identifier{db.Schema, "copy_bin"}, cols, rows)
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("binary COPY: %d rows of %d, %v", n, len(rows), err)
	}
	bin := &binaryCopy{table: pgx.Identifier{db.Schema, "audit_logs"}}
	bin.check(ctx, db.Pool)
	if !bin.usable() {
		t.Fatal("audit_logs as migrated does not take the binary COPY")
	}
	n, err = copyRows(ctx, bin, conn, pgx.Identifier{db.Schema, "audit_logs"}, cols, rows)
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("copyRows into audit_logs: %d rows of %d, %v", n, len(rows), err)
	}
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT * FROM copy_pgx EXCEPT ALL SELECT * FROM copy_bin) d`,
		`SELECT count(*) FROM (SELECT * FROM copy_bin EXCEPT ALL SELECT * FROM copy_pgx) d`,
		`SELECT count(*) FROM (SELECT * FROM copy_pgx EXCEPT ALL SELECT * FROM audit_logs) d`,
		// EXCEPT compares jsonb and inet by equality; their text forms must match too.
		`SELECT count(*) FROM copy_pgx p JOIN copy_bin b USING (id)
			WHERE p.occurred_at::text IS DISTINCT FROM b.occurred_at::text OR p.ip::text IS DISTINCT FROM b.ip::text
			OR p.before::text IS DISTINCT FROM b.before::text OR p.metadata::text IS DISTINCT FROM b.metadata::text`,
	} {
		var diff int
		if err := db.Pool.QueryRow(ctx, q).Scan(&diff); err != nil {
			t.Fatal(err)
		}
		if diff != 0 {
			t.Errorf("%d rows differ: %s", diff, q)
		}
	}
	var total int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM copy_bin`).Scan(&total); err != nil || total != len(rows) {
		t.Fatalf("copy_bin holds %d rows of %d (%v)", total, len(rows), err)
	}
}

// TestCopyRowsFallsBackToPgx: a row holding a value the binary COPY does not write is stored by
// pgx's CopyFrom, and nothing is sent twice; a bad value the server refuses fails the COPY either
// way, leaving the connection usable.
func TestCopyRowsFallsBackToPgx(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	rows := copyTestRows(t)[:20]
	rows[3] = append([]any(nil), rows[3]...)
	rows[3][21] = 404 // status as an int: pgx converts it, the binary writer leaves it to pgx
	cols := append(append([]string(nil), Columns...), ChainColumns...)
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := copyRowsBinary(ctx, conn.Conn().PgConn(), false, pgx.Identifier{db.Schema, "audit_logs"}, cols, rows); !errors.Is(err, errCopyValue) {
		t.Fatalf("binary COPY of an int status: %v, want errCopyValue", err)
	}
	bin := &binaryCopy{table: pgx.Identifier{db.Schema, "audit_logs"}}
	bin.check(ctx, db.Pool)
	n, err := copyRows(ctx, bin, conn, pgx.Identifier{db.Schema, "audit_logs"}, cols, rows)
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("copyRows: %d rows, %v", n, err)
	}
	if got := db.Count(t); got != len(rows) {
		t.Fatalf("audit_logs holds %d rows, want %d", got, len(rows))
	}
	// A document PostgreSQL refuses fails the COPY, and the connection goes on.
	bad := [][]any{append([]any(nil), rows[0]...)}
	bad[0][0] = uuid.Must(uuid.NewV7())
	bad[0][13] = []byte(`{"not json`)
	if _, err := copyRows(ctx, bin, conn, pgx.Identifier{db.Schema, "audit_logs"}, cols, bad); err == nil ||
		!strings.Contains(err.Error(), "json") {
		t.Fatalf("a bad document: %v, want PostgreSQL's json error", err)
	}
	var one int
	if err := conn.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("the connection after a failed COPY: %v", err)
	}
	if got := db.Count(t); got != len(rows) {
		t.Fatalf("audit_logs holds %d rows after the failed COPY, want %d", got, len(rows))
	}
	// Columns that are not audit_logs' are left to pgx.
	if _, err := copyRowsBinary(ctx, conn.Conn().PgConn(), false, pgx.Identifier{db.Schema, "audit_logs"}, []string{"nope"}, nil); !errors.Is(err, errCopyValue) {
		t.Fatalf("unknown column: %v", err)
	}
}

// BenchmarkCopyEncode compares the CPU of writing the Writer's rows (with their chain columns) in
// COPY's binary format: `pgx` encodes every value as pgx's CopyFrom does (an encode plan looked
// up in its type map for each value, the id and time through the valuers copySource hands over),
// `binary` appends them with appendCopyRow. ns/op is per row.
func BenchmarkCopyEncode(b *testing.B) {
	red := NewRedactor(nil, nil)
	var rows [][]any
	recs := encodeRowRecords()
	for i := range 500 {
		row, err := rowValues(red.Record(recs[i%len(recs)]))
		if err != nil {
			b.Fatal(err)
		}
		rows = append(rows, append(row, int64(i+1), bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)))
	}
	cols := append(append([]string(nil), Columns...), ChainColumns...)
	types, _ := copyTypesOf(cols)
	b.Run("pgx", func(b *testing.B) {
		m := pgtype.NewMap()
		buf := make([]byte, 0, 1<<20)
		src := newCopySource(nil)
		for i := 0; b.Loop(); i++ {
			if i%len(rows) == 0 {
				buf = buf[:0]
				src = newCopySource(rows)
			}
			src.Next()
			vals, _ := src.Values()
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(vals)))
			for c, v := range vals {
				at := len(buf)
				buf = append(buf, 0, 0, 0, 0)
				out, err := m.Encode(copyOIDs[types[c]], pgtype.BinaryFormatCode, v, buf)
				if err != nil {
					b.Fatal(err)
				}
				if out == nil {
					buf = binary.BigEndian.AppendUint32(buf[:at], 0xFFFFFFFF)
					continue
				}
				binary.BigEndian.PutUint32(out[at:], uint32(len(out)-at-4))
				buf = out
			}
		}
	})
	b.Run("binary", func(b *testing.B) {
		buf := make([]byte, 0, 1<<20)
		for i := 0; b.Loop(); i++ {
			if i%len(rows) == 0 {
				buf = buf[:0]
			}
			var err error
			if buf, err = appendCopyRow(buf, rows[i%len(rows)], types); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCopyBinaryLeavesRetypedTablesToPgx: a sink whose audit_logs has a column of another type
// than the migrations give it (status made bigint) stores its batches through
// pgx's CopyFrom, which converts, chained or not; a sink on a migrated table uses the binary COPY.
func TestCopyBinaryLeavesRetypedTablesToPgx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain := pgtest.New(t)
	retyped := pgtest.New(t)
	if _, err := retyped.Pool.Exec(ctx, `ALTER TABLE audit_logs ALTER COLUMN status TYPE bigint`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		db     *pgtest.DB
		binary bool
	}{{plain, true}, {retyped, false}} {
		for _, noChain := range []bool{false, true} {
			sink := NewPostgresSink(tc.db.Pool, PostgresSinkOptions{Schema: tc.db.Schema, DisableChain: noChain})
			// Two batches: with the chain, the second is linked ahead (writeLinked).
			for b := range 2 {
				batch := chainBatch(fmt.Sprintf("retyped-%v-%v-%d", tc.binary, noChain, b), 10)
				for i, r := range batch {
					r.Kind, r.Status, r.Method, r.Path = KindHTTP, 200+i, "GET", "/x"
				}
				if err := sink.Write(ctx, batch); err != nil {
					t.Fatalf("binary %v, chain off %v: %v", tc.binary, noChain, err)
				}
			}
			if got := sink.bin.usable(); got != tc.binary {
				t.Fatalf("binary COPY usable %v on %s, want %v", got, tc.db.Schema, tc.binary)
			}
			if want := uint64(map[bool]int{false: 1, true: 0}[noChain]); sink.ahead.Load() != want {
				t.Fatalf("binary %v, chain off %v: %d batches linked ahead, want %d", tc.binary, noChain, sink.ahead.Load(), want)
			}
			if !noChain { // written first: the table holds only chained rows
				if lengths := verifyChains(t, tc.db.Pool); lengths["t_alpha"] != 8 || lengths["t_beta"] != 6 || lengths[""] != 6 {
					t.Fatalf("%s: chain lengths %v", tc.db.Schema, lengths)
				}
			}
		}
		var n, sum int
		if err := tc.db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(status), 0) FROM audit_logs`).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		if n != 40 || sum != 4*(10*200+45) {
			t.Fatalf("%s: %d rows, statuses summing to %d", tc.db.Schema, n, sum)
		}
	}
	// An enum or varchar column still takes the text the binary COPY writes.
	for typ, want := range map[string]bool{"text": true, "varchar": true, "enum": true, "int4": false, "bpchar": false} {
		if got := copyTypeMatches(copyText, typ); got != want {
			t.Errorf("text column of type %s: %v", typ, got)
		}
	}
}

// TestBeginCopyRows checks that beginCopyRows leaves its rows in a transaction it opened, on the
// binary COPY (BEGIN in the COPY's query string) and on pgx's: nobody else sees them before the
// COMMIT, a ROLLBACK removes them, and after a COPY the server refused, a ROLLBACK leaves the
// connection as it was.
func TestBeginCopyRows(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	table := pgx.Identifier{db.Schema, "audit_logs"}
	cols := append(append([]string(nil), Columns...), ChainColumns...)
	for _, binary := range []bool{true, false} {
		t.Run(fmt.Sprintf("binary=%v", binary), func(t *testing.T) {
			if _, err := db.Pool.Exec(ctx, `TRUNCATE audit_logs`); err != nil {
				t.Fatal(err)
			}
			bin := &binaryCopy{table: table}
			if binary {
				bin.check(ctx, db.Pool)
				if !bin.usable() {
					t.Fatal("audit_logs as migrated does not take the binary COPY")
				}
			}
			conn, err := db.Pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			rows := copyTestRows(t)
			copied := func() {
				t.Helper()
				n, err := beginCopyRows(ctx, bin, conn, table, cols, rows)
				if err != nil || n != int64(len(rows)) {
					t.Fatalf("beginCopyRows: %d rows of %d, %v", n, len(rows), err)
				}
				if s := conn.Conn().PgConn().TxStatus(); s != 'T' {
					t.Fatalf("transaction status %q after the COPY, want T", s)
				}
				if n := db.Count(t); n != 0 {
					t.Fatalf("another session sees %d rows before the COMMIT", n)
				}
			}
			copied()
			if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
			if n := db.Count(t); n != 0 {
				t.Fatalf("%d rows after ROLLBACK", n)
			}
			copied()
			if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
				t.Fatal(err)
			}
			if n := db.Count(t); n != len(rows) {
				t.Fatalf("%d rows after COMMIT, want %d", n, len(rows))
			}
			// The same ids again: the server refuses the COPY inside the transaction.
			if _, err := beginCopyRows(ctx, bin, conn, table, cols, rows); !isUniqueViolation(err) {
				t.Fatalf("copying the rows again: %v, want a unique violation", err)
			}
			if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("the connection after the ROLLBACK: %d, %v", one, err)
			}
			if s := conn.Conn().PgConn().TxStatus(); s != 'I' {
				t.Fatalf("transaction status %q after the ROLLBACK, want I", s)
			}
			if n := db.Count(t); n != len(rows) {
				t.Fatalf("%d rows, want %d", n, len(rows))
			}
		})
	}
}
