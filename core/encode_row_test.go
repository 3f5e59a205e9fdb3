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
