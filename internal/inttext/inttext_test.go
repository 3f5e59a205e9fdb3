package inttext

import (
	"math"
	"strconv"
	"testing"
)

// TestFormat: every text is strconv's, and stays so while many more are made after it.
func TestFormat(t *testing.T) {
	var texts Texts
	var got []string
	var want []string
	for i := range 5000 {
		x := int64(i*7919) - 10000
		switch i {
		case 10:
			x = math.MaxInt64
		case 11:
			x = math.MinInt64
		}
		got = append(got, texts.Format(x))
		want = append(want, strconv.FormatInt(x, 10))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("text %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestFormatAllocations: many texts share few buffers.
func TestFormatAllocations(t *testing.T) {
	n := testing.AllocsPerRun(10, func() {
		var texts Texts
		for i := range 1000 {
			texts.Format(int64(100000 + i))
		}
	})
	if n > 20 {
		t.Fatalf("%v allocations for 1,000 texts, want at most 20", n)
	}
}
