package core_test

import (
	"reflect"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// Keys that sanitize to the same text keep one entry, and which one does not depend on the order
// of a map's iteration: the key that is already clean, else the smallest key. Each case is
// redacted many times, so that a choice left to the iteration order would show.
func TestRedactCollidingKeysAreDeterministic(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	for _, c := range []struct {
		name string
		in   map[string]int
		want map[string]int
	}{
		{"clean key wins", map[string]int{"k\x00": 1, "k": 2}, map[string]int{"k": 2}},
		{"smallest key wins", map[string]int{"k\x00": 1, "\x00k": 2, "k\x00\x00": 3}, map[string]int{"k": 2}},
		{"secret key", map[string]int{"password\x00": 1, "password": 2, "\x00password": 3}, nil},
		{"no collision", map[string]int{"a\x00": 1, "b": 2}, map[string]int{"a": 1, "b": 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := make(map[string]any, len(c.in))
			d := make(map[string]core.Change, len(c.in))
			v := make(map[string][]string, len(c.in))
			for k, n := range c.in {
				m[k], d[k], v[k] = n, core.Change{From: n, To: n + 10}, []string{string(rune('0' + n))}
			}
			first := []any{r.Map(m), r.Diff(d), r.Values(v)}
			if c.want != nil {
				want := make(map[string]any, len(c.want))
				for k, n := range c.want {
					want[k] = n
				}
				if !reflect.DeepEqual(first[0], want) {
					t.Fatalf("Map(%v) = %v, want %v", c.in, first[0], want)
				}
			} else if len(first[0].(map[string]any)) != 1 {
				t.Fatalf("Map(%v) = %v, want one entry", c.in, first[0])
			}
			for range 200 {
				if got := []any{r.Map(m), r.Diff(d), r.Values(v)}; !reflect.DeepEqual(got, first) {
					t.Fatalf("redacting %v again gave %v, first %v", c.in, got, first)
				}
			}
		})
	}
}
