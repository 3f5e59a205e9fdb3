package core

import (
	"fmt"
	"testing"
)

func TestBatchQueue(t *testing.T) {
	q := newBatchQueue(3, 2)
	recs := make([]*Record, 40)
	for i := range recs {
		recs[i] = &Record{ResourceID: fmt.Sprint(i)}
	}
	var got []string
	take := func(partial bool) int {
		c := q.pop(partial)
		for _, r := range c {
			got = append(got, r.ResourceID)
		}
		n := len(c)
		if c != nil {
			q.recycle(c)
		}
		return n
	}
	// Wrap the ring's head around before it has to grow, so that growing must keep the order.
	for i := range 7 {
		if full := q.push(recs[i]); full != (i%3 == 2) {
			t.Fatalf("push %d reported full=%v", i, full)
		}
	}
	if n := take(false); n != 3 {
		t.Fatalf("took %d, want a full batch of 3", n)
	}
	if n := take(false); n != 3 {
		t.Fatalf("took %d, want a full batch of 3", n)
	}
	if n := take(false); n != 0 {
		t.Fatalf("took %d from a partial batch without partial set", n)
	}
	for i := 7; i < 30; i++ {
		q.push(recs[i])
	}
	if q.len != 24 {
		t.Fatalf("len = %d, want 24", q.len)
	}
	for take(true) > 0 {
	}
	if q.len != 0 || len(got) != 30 {
		t.Fatalf("len = %d after taking %d records, want 0 and 30", q.len, len(got))
	}
	for i, id := range got {
		if id != fmt.Sprint(i) {
			t.Fatalf("record %s came out at position %d", id, i)
		}
	}
	for i := 30; i < 35; i++ {
		q.push(recs[i])
	}
	if n := q.reset(); n != 5 || q.len != 0 || q.pop(true) != nil {
		t.Fatalf("reset returned %d and left %d", n, q.len)
	}
	if len(q.free) != 2 {
		t.Fatalf("%d spare chunks kept, want at most 2 (and 2 here)", len(q.free))
	}
	for _, c := range q.free {
		for _, r := range c[:cap(c)] {
			if r != nil {
				t.Fatal("a spare chunk still refers to a record")
			}
		}
	}
	// In the steady state (no more chunks queued than are kept spare) nothing is allocated.
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range recs[:6] {
			q.push(r)
		}
		for c := q.pop(true); c != nil; c = q.pop(true) {
			q.recycle(c)
		}
	}); n != 0 {
		t.Fatalf("push/pop/recycle allocate %.1f times per round, want 0", n)
	}
}
