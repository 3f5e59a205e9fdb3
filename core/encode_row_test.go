package core

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// encodeRowRecords are records of every kind the writer stores: ORM changes with secrets in
// their images, HTTP records with a query, bodies, an address and a status, manual records with
// metadata, and records whose fields need sanitising.
func encodeRowRecords() []*Record {
	at := time.Date(2026, 11, 24, 10, 5, 0, 123456789, time.UTC)
	var recs []*Record
	for i := range 6 {
		r := encodeBenchRecord(i)
		if i%2 == 1 {
			r.OccurredAt = at // the same instant as the record before it
		}
		r.Before["password"] = "hunter2"
		r.After["api_token"] = "ghp_" + strings.Repeat("a", 36)
		r.Diff["password"] = Change{From: "a", To: "b"}
		r.Diff["nested"] = Change{From: map[string]any{"secret": 1, "ok": []any{1.5, "x"}}, To: nil}
		if i == 2 { // strings of the after image that differ from the before image's
			r.After["email"] = "new@example.com"
			r.After["notes"] = "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJlc2lnbmF0dXJl"
			r.After["added"] = "x"
			delete(r.After, "country")
			r.Before["aaa"] = "first"
			r.After["name"] = map[string]any{"name": "DB_PASSWORD", "value": "v"}
		}
		if i == 3 {
			r.TraceID, r.SpanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		}
		recs = append(recs, r)
	}
	h := &Record{
		Kind: KindHTTP, Method: "POST", Route: "/reset/:token", Path: "/reset/abcDEF123ghiJKL456mnoPQR",
		Query:  map[string][]string{"access_token": {"x"}, "q": {"a b"}},
		Status: 404, Duration: 1500 * time.Microsecond, IP: netip.MustParseAddr("::ffff:10.0.0.1"),
		UserAgent:    "curl/8 password=hunter2",
		RequestBody:  &Body{ContentType: "application/json", Data: []byte(`{"password":"x","n":1}`), Size: 22},
		ResponseBody: &Body{ContentType: "text/plain", Data: []byte("token=abc"), Size: 9},
		Metadata:     map[string]any{"client_secret": "s", "n": 1},
		Tenant:       Tenant{ID: "t\x00\xff", Slug: "acme"},
		Actor:        Actor{ID: "svc", Type: ActorService},
	}
	h.normalize(at)
	m := &Record{Kind: KindCustom, Action: "export.run", Metadata: map[string]any{}, Severity: SeverityWarning}
	m.normalize(at)
	ins := encodeBenchRecord(99)
	ins.Kind, ins.Before, ins.Diff = KindInsert, nil, map[string]Change{}
	ins.After["bad\xffkey"] = "x"
	return append(recs, h, m, ins)
}

// TestRowBatchMatchesRowValues checks that the rows the writer encodes in one pass are the rows
// rowValues makes of the redacted copy: the same values, of the same types, the same JSON bytes.
func TestRowBatchMatchesRowValues(t *testing.T) {
	red := NewRedactor([]string{"plan"}, nil)
	recs := encodeRowRecords()
	b := newRowBatch(red, 3) // fewer than the records: the batch grows its slice of values
	for i, r := range recs {
		want, err := rowValues(red.Record(r))
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.row(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(Columns) || cap(got) != len(Columns) {
			t.Fatalf("record %d: row of len %d cap %d, want %d", i, len(got), cap(got), len(Columns))
		}
		for c := range Columns {
			if !reflect.DeepEqual(got[c], want[c]) {
				t.Errorf("record %d, column %s: got %#v (%T), want %#v (%T)", i, Columns[c], got[c], got[c], want[c], want[c])
			}
		}
	}
}

// TestRowBatchLeavesRecordsAlone checks that encoding a row does not modify its record.
func TestRowBatchLeavesRecordsAlone(t *testing.T) {
	red := NewRedactor(nil, nil)
	for i, r := range encodeRowRecords() {
		before := fmt.Sprintf("%#v", *r)
		if _, err := newRowBatch(red, 1).row(r); err != nil {
			t.Fatal(err)
		}
		if after := fmt.Sprintf("%#v", *r); after != before {
			t.Errorf("record %d changed:\n%s\n%s", i, before, after)
		}
	}
}

// TestWithDocsRestoresTheRedactedMaps checks that a record the Writer handed to its sink without
// maps of values gets them back, redacted, before OnReject sees it.
func TestWithDocsRestoresTheRedactedMaps(t *testing.T) {
	red := NewRedactor(nil, nil)
	r := encodeRowRecords()[0]
	var shell Record
	row, err := newRowBatch(red, 1).rowOf(r, &shell)
	if err != nil {
		t.Fatal(err)
	}
	shell.row = row
	if shell.Before != nil || shell.After != nil || shell.Diff != nil {
		t.Fatalf("the record handed to the sink kept maps of values: %v %v %v", shell.Before, shell.After, shell.Diff)
	}
	full := withDocs(&shell)
	if full.Before["password"] != Redacted || full.After["api_token"] != Redacted || full.Diff["password"].From != Redacted {
		t.Fatalf("maps not restored redacted: %v %v %v", full.Before, full.After, full.Diff)
	}
	if full.ID != r.ID || full.Before["email"] != r.Before["email"] {
		t.Fatalf("restored record differs: %v %v", full.ID, full.Before)
	}
	if again := withDocs(full); again != full {
		t.Fatal("a record with its maps was rebuilt")
	}
}

// encodeInto makes the rows of recs in b as the Writer's encode does (rowOf, then prepareChain
// for a chained batch), and returns them with the redacted records that carry them.
func encodeInto(t *testing.T, b *rowBatch, recs []*Record) ([][]any, []Record) {
	t.Helper()
	reds := b.records(len(recs))
	rows := make([][]any, len(recs))
	for i, r := range recs {
		row, err := b.rowOf(r, &reds[i])
		if err != nil {
			t.Fatal(err)
		}
		b.prepareChain(row, &reds[i])
		rows[i] = row
	}
	return rows, reds
}

// snapshotRows copies what rows and reds hold (their values, the documents' jsonb texts and the
// chain fields made ahead) into memory of its own, as a string per row.
func snapshotRows(rows [][]any, reds []Record) []string {
	out := make([]string, len(rows))
	for i, row := range rows {
		var sb strings.Builder
		for c, v := range row[:len(Columns)] {
			fmt.Fprintf(&sb, "%s=%T:%v;", Columns[c], v, v)
			if d, ok := v.([]byte); ok {
				fmt.Fprintf(&sb, "text=%q;", reds[i].canon.text(c, d))
			}
		}
		if c := reds[i].canon; c != nil && c.fields != nil {
			fmt.Fprintf(&sb, "fields=%q;", c.fields[:])
		}
		out[i] = sb.String()
	}
	return out
}

// TestRowBatchReleased checks that a rowBatch released after a batch makes the rows of the next
// batch exactly as a new rowBatch does, with more and with fewer records than before, chained or
// not, and that release leaves nothing of the last batch in the memory it keeps.
func TestRowBatchReleased(t *testing.T) {
	red := NewRedactor([]string{"plan"}, nil)
	first := encodeRowRecords()
	for _, chained := range []bool{false, true} {
		t.Run(fmt.Sprintf("chained=%v", chained), func(t *testing.T) {
			newBatch := func(n int) *rowBatch {
				b := newRowBatch(red, n)
				if chained {
					b.chain()
				}
				return b
			}
			b := newBatch(1) // one record: no arenas, small buffers, until resized for more
			encodeInto(t, b, first)
			for round, n := range []int{len(first) * 3, 2, len(first), 1, 4} {
				b.release()
				if left := leftInRowBatch(b); left != "" {
					t.Fatalf("round %d: release left %s", round, left)
				}
				var recs []*Record
				for i := range n {
					r := encodeRowRecords()[(i+round)%len(first)]
					r.ResourceID = fmt.Sprintf("r%d-%d", round, i)
					recs = append(recs, r)
				}
				b.resize(n)
				if want := newBatch(n); want.box != nil && b.box == nil || b.chunk < want.chunk {
					t.Fatalf("round %d: resized for %d records with arenas %v and buffers of %d, want %v and %d",
						round, n, b.box != nil, b.chunk, want.box != nil, want.chunk)
				}
				gotRows, gotReds := encodeInto(t, b, recs)
				wantRows, wantReds := encodeInto(t, newBatch(n), recs)
				got, want := snapshotRows(gotRows, gotReds), snapshotRows(wantRows, wantReds)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("round %d, row %d made in released memory:\n%s\nwant\n%s", round, i, got[i], want[i])
					}
				}
				if chained && gotReds[0].canon == nil {
					t.Fatalf("round %d: no jsonb texts made", round)
				}
			}
		})
	}
}

// leftInRowBatch describes the first non-zero value in the memory b keeps for its next batch, or
// returns "".
func leftInRowBatch(b *rowBatch) string {
	m := &b.mem
	for i, v := range m.vals[:cap(m.vals)] {
		if v != nil {
			return fmt.Sprintf("value %d: %v", i, v)
		}
	}
	for i := range m.canons[:cap(m.canons)] {
		if !reflect.ValueOf(m.canons[:cap(m.canons)][i]).IsZero() {
			return fmt.Sprintf("canon %d", i)
		}
	}
	for i := range m.fields[:cap(m.fields)] {
		if !reflect.ValueOf(m.fields[:cap(m.fields)][i]).IsZero() {
			return fmt.Sprintf("chain fields %d", i)
		}
	}
	for i := range m.recs[:cap(m.recs)] {
		if !reflect.ValueOf(m.recs[:cap(m.recs)][i]).IsZero() {
			return fmt.Sprintf("record %d", i)
		}
	}
	if b.box != nil {
		for i, v := range b.box.last {
			if v != nil {
				return fmt.Sprintf("last value of column %d", i)
			}
		}
		for name, a := range map[string]interface{ zeroed() bool }{"ids": &b.box.ids, "times": &b.box.times,
			"strs": &b.box.strs, "docs": &b.box.docs, "ints": &b.box.ints, "int32s": &b.box.int32s, "address": &b.box.address} {
			if !a.zeroed() {
				return "the arena of " + name
			}
		}
	}
	if b.vals != nil || b.canons != nil || b.fields != nil || b.buf != nil || b.cbuf != nil || b.fbuf != nil {
		return "a slice of the last batch"
	}
	return ""
}

// zeroed reports whether every slot of a is zero and none is handed out.
func (a *boxArena[T]) zeroed() bool {
	if a.used != 0 || len(a.free) != 0 {
		return false
	}
	for _, s := range a.slices {
		for i := range s {
			if !reflect.ValueOf(&s[i]).Elem().IsZero() {
				return false
			}
		}
	}
	return true
}
