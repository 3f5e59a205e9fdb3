package auditmw

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// queryCases are queries with and without escapes, repeated keys, empty values and keys,
// semicolons, malformed escapes, and more parameters than the state holds.
var queryCases = []string{
	"a=1", "expand=orders", "a=1&b=2&c=3&d=4", "a=1&b=2&c=3&d=4&e=5", "a=1&a=2", "a=1&b=2&a=3&a=4",
	"a", "a=", "=1", "&", "&&a=1&&", "a=1;b=2", "a=1&b;=2&c=3", "a=%zz&b=2", "%zz=1&b=2",
	"q=hello+world&x=%41%42", "k%20ey=v%26al", "a=1&a=2&a=3&a=4&a=5", "a==b", "=", "a=1&=&b",
	"email=ada%40example.com&password=hunter2", "x=" + strings.Repeat("y", 300),
}

func TestParseQueryMatchesNetURL(t *testing.T) {
	for _, q := range queryCases {
		var st State
		got := st.parseQuery(q)
		want, _ := url.ParseQuery(q)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parseQuery(%q) = %v, want %v", q, got, want)
		}
	}
}

// Appending to one key's values must leave the others' values as they were: every slice ends
// where its values end.
func TestParseQueryValuesDoNotShareRoom(t *testing.T) {
	var st State
	m := st.parseQuery("a=1&b=2&c=3")
	m["a"] = append(m["a"], "x")
	m["b"] = append(m["b"], "y")
	if got := m.Encode(); got != "a=1&a=x&b=2&b=y&c=3" {
		t.Fatalf("after appends: %s", got)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, q := range queryCases {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		var st State
		got := st.parseQuery(q)
		want, _ := url.ParseQuery(q)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseQuery(%q) = %v, want %v", q, got, want)
		}
	})
}

func TestParseQueryAllocations(t *testing.T) {
	var st State
	var m url.Values
	n := testing.AllocsPerRun(100, func() { m = st.parseQuery("a=1&b=2&c=3&d=4") })
	if len(m) != 4 {
		t.Fatalf("parsed %v", m)
	}
	// The map and its group; the four values live in the state.
	if n > 2 {
		t.Fatalf("%v allocations per query of four parameters, want at most 2", n)
	}
}

// BenchmarkParseQuery compares, in one run, url.ParseQuery with the state's parse of the
// benchmarks' query (one parameter) and of one with four.
func BenchmarkParseQuery(b *testing.B) {
	for _, q := range []string{"expand=orders", "expand=orders&page=2&per_page=50&sort=-created_at"} {
		b.Run(fmt.Sprintf("net-url/%d", strings.Count(q, "&")+1), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkValues, _ = url.ParseQuery(q)
			}
		})
		b.Run(fmt.Sprintf("state/%d", strings.Count(q, "&")+1), func(b *testing.B) {
			b.ReportAllocs()
			st := new(State)
			for b.Loop() {
				sinkValues = st.parseQuery(q)
			}
		})
	}
}

var sinkValues url.Values
