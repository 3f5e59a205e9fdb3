package core_test

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// rawQueryCases are queries with and without escapes, repeated keys, empty values and keys,
// semicolons, malformed escapes, many parameters, and secrets that redaction must remove.
var rawQueryCases = []string{
	"a=1", "expand=orders", "a=1&b=2&c=3&d=4", "a=1&b=2&c=3&d=4&e=5", "a=1&a=2", "a=1&b=2&a=3&a=4",
	"a", "a=", "=1", "&", "&&a=1&&", "a=1;b=2", ";", "a=1&b;=2&c=3", "a=%zz&b=2", "%zz=1&b=2", "%zz",
	"q=hello+world&x=%41%42", "k%20ey=v%26al", "a=1&a=2&a=3&a=4&a=5", "a==b", "=", "a=1&=&b",
	"email=ada%40example.com&password=hunter2", "x=" + strings.Repeat("y", 300),
	"password=hunter2&password=hunter3&page=2", "api_key=k-hunter2&expand=orders&api_key=%zz",
	"next=%2Fhome%3Ftoken%3Dhunter2", "q=Bearer+hunter2xxxxxxxxxxxxxxxxxxxx",
}

// rawQueryPair returns two copies of one http record, the first with q given by SetRawQuery and
// the second with Query set to what url.ParseQuery makes of q.
func rawQueryPair(i int, q string) (raw, parsed *core.Record) {
	raw = sampleRecord(i)
	raw.Kind, raw.Method, raw.Route, raw.Path, raw.Status = core.KindHTTP, "GET", "/x", "/x", 200
	raw.ResourceID = fmt.Sprint(i)
	raw.ID = core.NewID()
	raw.OccurredAt = time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC).Add(time.Duration(i) * time.Second)
	p := *raw
	parsed = &p
	raw.SetRawQuery(q)
	parsed.Query, _ = url.ParseQuery(q)
	return raw, parsed
}

// A record given its query by SetRawQuery stores, through the Writer, the
// same query column as the record given the parsed query in Query, redacted alike.
func TestRawQueryStoredAsParsedQuery(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer closeWriter(t, w)
	for i, q := range rawQueryCases {
		raw, parsed := rawQueryPair(i, q)
		raw.Action, parsed.Action = "raw", "parsed"
		parsed.ID = core.NewID() // a record of its own
		if err := w.Enqueue(raw); err != nil {
			t.Fatal(err)
		}
		if err := w.Enqueue(parsed); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"raw", "parsed"}} {
		rows, err := db.Pool.Query(ctx, `
			SELECT a.resource_id, a.query::text, b.query::text
			FROM audit_logs a JOIN audit_logs b USING (resource_id)
			WHERE a.action = $1 AND b.action = $2`, pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var id string
			var a, b *string
			if err := rows.Scan(&id, &a, &b); err != nil {
				t.Fatal(err)
			}
			n++
			if (a == nil) != (b == nil) || a != nil && *a != *b {
				t.Errorf("%s %s: query %s stored as %v, %s as %v", pair, id, pair[0], deref(a), pair[1], deref(b))
			}
			if a != nil && strings.Contains(*a, "hunter2") {
				t.Errorf("%s: a secret of the query was stored: %s", id, *a)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n != len(rawQueryCases) {
			t.Fatalf("%s: %d pairs stored, want %d", pair, n, len(rawQueryCases))
		}
	}
	// The secrets were redacted rather than dropped with their keys.
	var redacted int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = 'raw' AND query->'password' = $1::jsonb`,
		fmt.Sprintf("[%q]", core.Redacted)).Scan(&redacted); err != nil {
		t.Fatal(err)
	}
	if redacted != 1 {
		t.Fatalf("%d rows store the one-value password redacted, want 1", redacted)
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// Redactor.Record fills Query from the raw query, and leaves the record it is given as it was.
func TestRedactorRecordParsesRawQuery(t *testing.T) {
	red := core.NewRedactor(nil, nil)
	raw, _ := rawQueryPair(0, "password=hunter2&a=1&a=2&b=%zz")
	got := red.Record(raw)
	want := map[string][]string{"password": {core.Redacted}, "a": {"1", "2"}}
	if !reflect.DeepEqual(got.Query, want) {
		t.Fatalf("Query = %v, want %v", got.Query, want)
	}
	if raw.Query != nil {
		t.Fatalf("the record given was changed: Query = %v", raw.Query)
	}
	// A Query that is set wins over the raw query.
	raw.Query = map[string][]string{"x": {"1"}}
	if got := red.Record(raw); !reflect.DeepEqual(got.Query, raw.Query) {
		t.Fatalf("Query = %v, want %v", got.Query, raw.Query)
	}
	// The copy holds the parsed query only: redacting it again keeps it.
	raw.Query = nil
	raw.SetRawQuery("a=1")
	once := red.Record(raw)
	once.Query = nil
	if got := red.Record(once); got.Query != nil {
		t.Fatalf("the redacted copy kept the raw query: Query = %v", got.Query)
	}
}

// Every row value of a record given its query raw is the one of the record given it parsed.
func FuzzRawQueryRow(f *testing.F) {
	for _, q := range rawQueryCases {
		f.Add(q)
	}
	red := core.NewRedactor(nil, nil)
	f.Fuzz(func(t *testing.T, q string) {
		raw, parsed := rawQueryPair(1, q)
		a, b := core.RowValuesForBenchmark(red, raw), core.RowValuesForBenchmark(red, parsed)
		if !reflect.DeepEqual(a, b) {
			for i := range a {
				if !reflect.DeepEqual(a[i], b[i]) {
					t.Fatalf("query %q: column %s = %v raw, %v parsed", q, core.Columns[i], a[i], b[i])
				}
			}
			t.Fatalf("query %q: rows differ", q)
		}
	})
}
