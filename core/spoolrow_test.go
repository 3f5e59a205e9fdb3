package core

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// spoolCorpus returns realistic records of every kind, with the awkward values a spool must keep
// exactly: numbers beyond 2^53 in JSON, unicode, every address family, nanosecond times in other
// locations and outside the years UnixNano can hold, zero optional fields.
func spoolCorpus() []*Record {
	east := time.FixedZone("UTC+05:30", 5*3600+1800)
	west := time.FixedZone("UTC-09:59:59", -(9*3600 + 59*60 + 59))
	base := time.Date(2026, time.December, 5, 21, 7, 3, 123456789, east)
	user := Actor{ID: "u_42", Type: ActorTenantUser, Email: "zoë@example.com", Auth: "jwt:HS256"}
	tenant := Tenant{ID: "t_1", Slug: "acme-東京"}
	rows := []*Record{
		{
			Kind: KindInsert, OccurredAt: base, Tenant: tenant, Actor: user,
			ResourceType: "users", ResourceID: "42",
			After: map[string]any{
				"id": int64(42), "name": "Zoë 🎉", "big": int64(9007199254740993), "ubig": uint64(18446744073709551615),
				"exact": json.Number("123456789012345678901234567890.000000000000000000001"),
				"html":  "<script>&\u2028\u2029</script>", "nested": map[string]any{"list": []any{1.5, 1e300, -0.0, nil, true}},
			},
		},
		{
			Kind: KindUpdate, OccurredAt: base.Add(time.Nanosecond), Tenant: tenant, Actor: user, Severity: SeverityWarning,
			ResourceType: "orders", ResourceID: `{"id":7,"region":"eu"}`, Action: "orders.repriced",
			Before: map[string]any{"total": json.Number("9007199254740995"), "items": []any{map[string]any{"sku": "a", "qty": 2}}},
			After:  map[string]any{"total": json.Number("9007199254740997"), "items": []any{}},
			Diff: map[string]Change{
				"total": {From: json.Number("9007199254740995"), To: json.Number("9007199254740997")},
				"items": {From: []any{map[string]any{"sku": "a"}}, To: nil},
			},
			Metadata: map[string]any{"reason": "price ↑", "by": map[string]any{"rule": int64(-1 << 62)}},
			TraceID:  "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		},
		{
			Kind: KindDelete, OccurredAt: base.In(west), Actor: Actor{ID: "svc-billing", Type: ActorService},
			ResourceType: "sessions", ResourceID: "s-1",
			Before: map[string]any{}, // an empty row is still a document
		},
		{
			Kind: KindHTTP, OccurredAt: base.Add(999 * time.Microsecond), Tenant: tenant, Actor: user,
			RequestID: "req-1", Method: "POST", Route: "/users/:id", Path: "/users/42",
			Query:  map[string][]string{"q": {"x", "y"}, "page": {"2"}, "ü": {""}},
			Status: 201, Duration: 1234567 * time.Nanosecond, IP: netip.MustParseAddr("203.0.113.7"),
			UserAgent:    "Mozilla/5.0 (X11; Linux x86_64) Zoë",
			RequestBody:  &Body{ContentType: "application/json", Data: []byte(`{"name":"Zoë","n":12345678901234567890}`), Size: 42},
			ResponseBody: &Body{ContentType: "text/plain; charset=utf-8", Data: []byte("created ✓\n"), Size: 12},
			Metadata:     map[string]any{"route_group": "v1"},
		},
		{
			Kind: KindHTTP, OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Method: "GET", Path: "/",
			IP: netip.MustParseAddr("::ffff:198.51.100.2"), Status: 0, // an HTTP record stores a status, even 0
			RequestBody: &Body{ContentType: "application/x-www-form-urlencoded", Data: []byte("a=1&b=%E2%9C%93"), Size: 15},
		},
		{
			Kind: KindHTTP, OccurredAt: time.Date(2026, 6, 30, 23, 59, 59, 999999999, west), Method: "DELETE",
			Path: "/files/x", IP: netip.MustParseAddr("2001:db8::1"), Status: 500, Duration: time.Hour,
			ResponseBody: &Body{ContentType: "application/octet-stream", Data: []byte{0, 1, 2, 0xff}, Size: -1},
		},
		{
			Kind: KindHTTP, OccurredAt: base, Method: "GET", Path: "/local", Status: 204,
			IP:           netip.MustParseAddr("fe80::1%eth0"), // the zone is not stored
			RequestBody:  &Body{ContentType: "application/json", Truncated: true, Data: []byte(`{"a":[1,2`), Size: 1 << 20},
			ResponseBody: &Body{ContentType: "application/json", NotCaptured: "streamed", Size: -1},
		},
		{Kind: KindCustom, OccurredAt: base}, // every optional field zero
		{
			Kind: KindCustom, OccurredAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Status: 418,
			Metadata: map[string]any{"far": "future"}, Actor: Actor{Type: ActorSystem},
		},
		{
			Kind: KindCustom, OccurredAt: time.Date(1066, 10, 14, 9, 0, 0, 1, east), Action: "battle",
			Metadata: map[string]any{"invalid utf8": "a\xffb", "\xfekey": []any{"\xc3"}},
		},
		{
			Kind: KindUpdate, OccurredAt: base, ResourceType: "t", ResourceID: "1",
			Before: map[string]any{"password": "hunter2", "token": "eyJhbGciOiJIUzI1NiJ9.e30.x"},
			After:  map[string]any{"password": "hunter3"},
			Diff:   map[string]Change{}, // empty, not absent
			Query:  map[string][]string{},
		},
	}
	now := time.Now() // carries a monotonic reading
	rows = append(rows, &Record{Kind: KindCustom, Action: "now", OccurredAt: now})
	for i, r := range rows {
		if i%2 == 0 {
			r.ID = uuid.MustParse(fmt.Sprintf("0193a1b2-c3d4-7e5f-8a9b-%012x", i))
		}
		r.normalize(now)
	}
	return rows
}

// spoolCorpusRows returns the rows rowValues makes of the redacted corpus.
func spoolCorpusRows(tb testing.TB) [][]any {
	tb.Helper()
	red := NewRedactor(nil, nil)
	var rows [][]any
	for _, r := range spoolCorpus() {
		row, err := rowValues(red.Record(r))
		if err != nil {
			tb.Fatal(err)
		}
		rows = append(rows, row)
	}
	return rows
}

// sameRow reports how want and got differ, or "" when they hold the same values: same dynamic
// types (a nil []byte is not an untyped nil), times the same instant to the nanosecond, byte
// slices the same bytes, everything else deeply equal.
func sameRow(want, got []any) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d values, want %d", len(got), len(want))
	}
	var diffs []string
	for i := range want {
		w, g := want[i], got[i]
		if reflect.TypeOf(w) != reflect.TypeOf(g) {
			diffs = append(diffs, fmt.Sprintf("%s: %T %#v, want %T %#v", Columns[i], g, g, w, w))
			continue
		}
		same := true
		switch w := w.(type) {
		case time.Time:
			g := g.(time.Time)
			same = w.Equal(g) && w.UnixNano() == g.UnixNano() && w.Unix() == g.Unix() && w.Nanosecond() == g.Nanosecond()
		case []byte:
			g := g.([]byte)
			same = bytes.Equal(w, g) && (w == nil) == (g == nil)
		default:
			same = reflect.DeepEqual(w, g)
		}
		if !same {
			diffs = append(diffs, fmt.Sprintf("%s: %#v, want %#v", Columns[i], g, w))
		}
	}
	return strings.Join(diffs, "; ")
}

func TestSpoolRowRoundTrip(t *testing.T) {
	t.Parallel()
	var buf []byte
	for i, row := range spoolCorpusRows(t) {
		var err error
		buf, err = encodeRow(buf[:0], row)
		if err != nil {
			t.Fatalf("record %d: encode: %v", i, err)
		}
		got, err := decodeRow(buf)
		if err != nil {
			t.Fatalf("record %d: decode: %v", i, err)
		}
		if d := sameRow(row, got); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
		again, err := encodeRow(nil, got)
		if err != nil || !bytes.Equal(again, buf) {
			t.Errorf("record %d: re-encoding differs (%v)", i, err)
		}
		// The decoded values do not alias the input.
		clear(buf)
		if d := sameRow(row, got); d != "" {
			t.Errorf("record %d after the input was overwritten: %s", i, d)
		}
	}
}

// TestSpoolRowValues pins what the corpus is meant to exercise, so that a change to rowValues that
// made it miss a case is noticed.
func TestSpoolRowValues(t *testing.T) {
	t.Parallel()
	rows := spoolCorpusRows(t)
	ip := func(i int) any { return rows[i][23] }
	if got, want := ip(4), netip.MustParsePrefix("198.51.100.2/32"); got != want {
		t.Errorf("IPv4-mapped address stored as %v, want %v", got, want)
	}
	if got, want := ip(6), netip.MustParsePrefix("fe80::1/128"); got != want {
		t.Errorf("zoned address stored as %v, want %v", got, want)
	}
	if b, ok := rows[2][13].([]byte); !ok || string(b) != "{}" {
		t.Errorf("empty before stored as %#v", rows[2][13])
	}
	if b, ok := rows[0][13].([]byte); !ok || b != nil {
		t.Errorf("absent before is %#v, want a nil []byte", rows[0][13])
	}
	if rows[0][25] != nil {
		t.Errorf("absent body is %#v, want nil", rows[0][25])
	}
	if !bytes.Contains(rows[0][14].([]byte), []byte("9007199254740993")) || !bytes.Contains(rows[0][14].([]byte), []byte("18446744073709551615")) {
		t.Errorf("big integers not kept: %s", rows[0][14])
	}
	if got := rows[3][22]; got != int64(1234) {
		t.Errorf("duration_us = %#v, want int64(1234)", got)
	}
}

func TestSpoolRowRejects(t *testing.T) {
	t.Parallel()
	row := spoolCorpusRows(t)[3]
	good, err := encodeRow(nil, row)
	if err != nil {
		t.Fatal(err)
	}
	with := func(col int, v any) []any {
		r := append([]any(nil), row...)
		r[col] = v
		return r
	}
	for name, bad := range map[string][]any{
		"short row":             row[:28],
		"long row":              append(append([]any(nil), row...), nil),
		"int for text":          with(5, 7),
		"null kind":             with(2, nil),
		"bytes for text":        with(5, []byte("x")),
		"string for document":   with(13, "{}"),
		"int64 status":          with(21, int64(200)),
		"invalid prefix":        with(23, netip.Prefix{}),
		"address for ip":        with(23, netip.MustParseAddr("::1")),
		"string id":             with(0, "0193a1b2-c3d4-7e5f-8a9b-000000000000"),
		"int32 version":         with(28, int32(1)),
		"pointer to time value": with(1, new(time.Time)),
	} {
		dst := []byte("keep")
		out, err := encodeRow(dst, bad)
		if err == nil || !errors.Is(err, errSpoolRow) {
			t.Errorf("%s: encode error %v", name, err)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst changed to %q", name, out)
		}
	}

	// Offset of column 21 (status, int32 201) in good: decode the prefix up to it.
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	statusAt := bytes.Index(good, []byte{tagInt32, 0x92, 0x03}) // zigzag(201) = 402
	if statusAt < 0 {
		t.Fatal("status not found in the encoding")
	}
	for name, bad := range map[string][]byte{
		"empty":           nil,
		"version 9":       mutate(func(b []byte) []byte { b[0] = 9; return b }),
		"trailing byte":   append(bytes.Clone(good), 0),
		"truncated":       good[:len(good)-1],
		"only version":    good[:1],
		"unknown tag":     mutate(func(b []byte) []byte { b[statusAt] = numTags; return b }),
		"tag not allowed": mutate(func(b []byte) []byte { b[statusAt] = tagInt64; return b }),
		"overlong varint": mutate(func(b []byte) []byte {
			return append(b[:statusAt+1:statusAt+1], append([]byte{0x92, 0x83, 0x00}, good[statusAt+3:]...)...)
		}),
		"huge string": append([]byte{1, tagUUID}, append(make([]byte, 16), tagTime, 0, 0, tagString, 0xff, 0xff, 0xff, 0xff, 0x0f)...),
		"nanos 1e9":   binary.AppendUvarint(append([]byte{1, tagUUID}, append(make([]byte, 16), tagTime, 0)...), 1e9),
		"int32 out of range": mutate(func(b []byte) []byte {
			return append(b[:statusAt+1:statusAt+1], append([]byte{0x80, 0x80, 0x80, 0x80, 0x10}, good[statusAt+3:]...)...)
		}),
	} {
		if _, err := decodeRow(bad); err == nil || !errors.Is(err, errSpoolRow) {
			t.Errorf("%s: decode error %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestSpoolRowPostgres copies the decoded rows and the original rows into two schemas and
// compares what PostgreSQL stored: a replayed spool writes exactly the rows the Writer would have.
func TestSpoolRowPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rows := spoolCorpusRows(t)
	var decoded [][]any
	for i, row := range rows {
		b, err := encodeRow(nil, row)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		d, err := decodeRow(b)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		decoded = append(decoded, d)
	}
	stored := func(rows [][]any) []string {
		db := pgtest.New(t)
		n, err := db.Pool.CopyFrom(ctx, pgx.Identifier{db.Schema, "audit_logs"}, Columns, pgx.CopyFromRows(rows))
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(rows)) {
			t.Fatalf("copied %d rows, want %d", n, len(rows))
		}
		var out []string
		r, err := db.Pool.Query(ctx, `SELECT to_jsonb(t)::text FROM audit_logs t ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		out, err = pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want, got := stored(rows), stored(decoded)
	if len(want) != len(rows) {
		t.Fatalf("%d rows stored, want %d", len(want), len(rows))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if !strings.Contains(strings.Join(want, "\n"), `"occurred_at": "9999-12-31T23:59:59.999999+00:00"`) {
		t.Errorf("the year 9999 row was not stored as expected:\n%s", strings.Join(want, "\n"))
	}
}

// TestSpoolRowRecord checks that recordFromRow gives back a record rowValues turns into the same row.
func TestSpoolRowRecord(t *testing.T) {
	t.Parallel()
	for i, row := range spoolCorpusRows(t) {
		b, err := encodeRow(nil, row)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := decodeRow(b)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := recordFromRow(decoded)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		again, err := rowValues(rec)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if d := sameRow(decoded, again); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}

	rows := spoolCorpusRows(t)
	rec, err := recordFromRow(rows[3])
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != 201 || rec.Duration != 1234*time.Microsecond || rec.IP != netip.MustParseAddr("203.0.113.7") ||
		rec.Method != "POST" || rec.Actor.Email != "zoë@example.com" || rec.Tenant.Slug != "acme-東京" {
		t.Errorf("scalar fields: %+v", rec)
	}
	if b := rec.RequestBody; b == nil || b.ContentType != "application/json" || b.Size != int64(len(b.Data)) ||
		!bytes.Contains(b.Data, []byte("12345678901234567890")) || b.Truncated || b.NotCaptured != "" {
		t.Errorf("request body: %+v", b)
	}
	if got := rec.Query["q"]; !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Errorf("query q = %v", got)
	}
	rec, err = recordFromRow(rows[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.After["big"]; got != json.Number("9007199254740993") {
		t.Errorf("after.big = %#v, want json.Number", got)
	}
	if rec.Before != nil || rec.RequestBody != nil {
		t.Errorf("absent documents: before %#v, request body %#v", rec.Before, rec.RequestBody)
	}
	rec, err = recordFromRow(rows[1])
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Diff["total"].To; got != json.Number("9007199254740997") {
		t.Errorf("diff.total.to = %#v", got)
	}

	bad := append([]any(nil), rows[1]...)
	bad[13] = []byte(`{"a":1} x`)
	if _, err := recordFromRow(bad); !errors.Is(err, errSpoolRow) {
		t.Errorf("data after the document: %v", err)
	}
	bad[13] = []byte(`[1]`)
	if _, err := recordFromRow(bad); !errors.Is(err, errSpoolRow) {
		t.Errorf("array for before: %v", err)
	}
	bad = append([]any(nil), rows[1]...)
	bad[21] = "200"
	if _, err := recordFromRow(bad); !errors.Is(err, errSpoolRow) {
		t.Errorf("string status: %v", err)
	}
}

func TestSpoolRowEncodeAllocs(t *testing.T) {
	row := spoolBenchRow(t)
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := encodeRow(buf[:0], row); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("encodeRow allocates %v times per row", n)
	}
}

// spoolBenchRow returns the row of an ORM update of about 1.1 kB encoded.
func spoolBenchRow(tb testing.TB) []any {
	tb.Helper()
	before := map[string]any{
		"id": int64(1234567), "email": "jane.doe@example.com", "name": "Jane Doe", "plan": "business",
		"seats": int64(25), "created_at": "2025-03-14T09:26:53.589793Z", "updated_at": "2026-11-30T18:00:00Z",
		"address": map[string]any{"street": "1 Infinite Loop", "city": "Cupertino", "zip": "95014", "country": "US"},
		"tags":    []any{"vip", "beta", "eu-west"}, "balance_cents": int64(9007199254740993),
	}
	after := map[string]any{}
	for k, v := range before {
		after[k] = v
	}
	after["plan"], after["seats"], after["updated_at"] = "enterprise", int64(100), "2026-12-05T21:07:03.123456Z"
	r := &Record{
		Kind: KindUpdate, Tenant: Tenant{ID: "tenant_8f3a", Slug: "acme"},
		Actor:        Actor{ID: "user_77", Type: ActorTenantUser, Email: "admin@acme.example", Auth: "jwt:RS256"},
		ResourceType: "accounts", ResourceID: "1234567", RequestID: "01JEXAMPLE0REQUEST0ID00000",
		Before: before, After: after,
		Diff: map[string]Change{
			"plan":       {From: "business", To: "enterprise"},
			"seats":      {From: int64(25), To: int64(100)},
			"updated_at": {From: "2026-11-30T18:00:00Z", To: "2026-12-05T21:07:03.123456Z"},
		},
		Metadata: map[string]any{"source": "admin-console", "reason": "upgrade"},
	}
	r.normalize(time.Now())
	row, err := rowValues(NewRedactor(nil, nil).Record(r))
	if err != nil {
		tb.Fatal(err)
	}
	return row
}

func BenchmarkEncodeRow(b *testing.B) {
	row := spoolBenchRow(b)
	buf, err := encodeRow(nil, row)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = encodeRow(buf[:0], row)
	}
}

func BenchmarkDecodeRow(b *testing.B) {
	buf, err := encodeRow(nil, spoolBenchRow(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeRow(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSpoolRowVersion1: a row spooled before the trace context columns existed (format version
// 1, 29 columns) still decodes, with trace_id and span_id NULL, so that an upgrade replays it.
func TestSpoolRowVersion1(t *testing.T) {
	t.Parallel()
	for i, row := range spoolCorpusRows(t) {
		old := slices.Clone(row)
		old[len(Columns)-2], old[len(Columns)-1] = nil, nil
		b, err := encodeRow(nil, old)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		// The current encoding ends with the two NULL tags; version 1 is the rest.
		if !bytes.HasSuffix(b, []byte{tagNull, tagNull}) {
			t.Fatalf("record %d: the encoding does not end with two NULLs", i)
		}
		v1 := append([]byte{1}, b[1:len(b)-2]...)
		got, err := decodeRow(v1)
		if err != nil {
			t.Fatalf("record %d: decoding version 1: %v", i, err)
		}
		if d := sameRow(old, got); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
		// A version 1 row with the later columns present is not a version 1 row.
		if _, err := decodeRow(append([]byte{1}, b[1:]...)); err == nil {
			t.Errorf("record %d: a version 1 row with 31 columns decoded", i)
		}
	}
}
