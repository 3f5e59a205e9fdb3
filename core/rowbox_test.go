package core

import (
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// checkBoxed boxes n values made by mk in an arena of small chunks, lets the garbage collector run
// while only the interfaces hold them, and checks each against the ordinary any(v): same dynamic
// type, equal value, found by a type switch.
func checkBoxed[T any](t *testing.T, n int, mk func(i int) T) {
	t.Helper()
	a := newBoxArena[T](7)
	got := make([]any, n)
	for i := range got {
		got[i] = a.box(mk(i))
	}
	a = boxArena[T]{} // the arena's last chunk is now reachable through the interfaces only
	var junk [][]byte
	for range 3 {
		for range 1000 {
			junk = append(junk, make([]byte, 64))
		}
		junk = nil
		runtime.GC()
	}
	_ = junk
	for i, g := range got {
		want := any(mk(i))
		if reflect.TypeOf(g) != reflect.TypeOf(want) || !reflect.DeepEqual(g, want) {
			t.Fatalf("value %d: boxed %#v (%T), want %#v (%T)", i, g, g, want, want)
		}
		if _, ok := g.(T); !ok {
			t.Fatalf("value %d: %T is not a %T", i, g, want)
		}
		if reflect.TypeOf(want).Comparable() && g != want {
			t.Fatalf("value %d: boxed %#v != %#v", i, g, want)
		}
	}
}

// TestBoxArenaMakesTheValuesAnyMakes checks that a value boxed into an arena is the interface
// any(v) would make, for every type a row's values are boxed as, across several chunks and
// garbage collections.
func TestBoxArenaMakesTheValuesAnyMakes(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 456789000, time.UTC)
	checkBoxed(t, 50, func(i int) uuid.UUID { return uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i)}) })
	zones := []*time.Location{time.UTC, time.FixedZone("x", 3600), time.Local}
	checkBoxed(t, 50, func(i int) time.Time { return at.Add(time.Duration(i) * time.Hour).In(zones[i%len(zones)]) })
	checkBoxed(t, 50, func(i int) string { return strings.Repeat("s", i) })
	checkBoxed(t, 50, func(i int) []byte {
		if i%10 == 0 {
			return nil
		}
		return []byte(strings.Repeat("{}", i))
	})
	checkBoxed(t, 50, func(i int) int32 { return int32(i * 1000) })
	checkBoxed(t, 50, func(i int) int64 { return int64(i) << 40 })
	checkBoxed(t, 50, func(i int) netip.Prefix {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i), 1})
		if i%2 == 1 {
			a = netip.MustParseAddr("2001:db8::1")
		}
		return netip.PrefixFrom(a, a.BitLen())
	})

	var zero boxArena[string] // no type word: boxes the ordinary way
	if v := zero.box("x"); v != any("x") {
		t.Fatalf("zero arena boxed %#v", v)
	}
}

// TestRowBatchAllocations checks the allocations a row of an ORM update record costs in a batch
// of the writer's default size: at most 2 per record, the redaction and the JSON encoding
// included.
func TestRowBatchAllocations(t *testing.T) {
	recs := make([]*Record, 500)
	for i := range recs {
		recs[i] = encodeBenchRecord(i)
	}
	red := NewRedactor(nil, nil)
	perBatch := testing.AllocsPerRun(5, func() {
		b := newRowBatch(red, len(recs))
		for _, r := range recs {
			if _, err := b.row(r); err != nil {
				t.Fatal(err)
			}
		}
	})
	per := perBatch / float64(len(recs))
	if per > 2 {
		t.Fatalf("%.2f allocations per record (%.0f per batch of %d), want at most 2", per, perBatch, len(recs))
	}
	t.Logf("%.3f allocations per record (%.0f per batch of %d)", per, perBatch, len(recs))
}
