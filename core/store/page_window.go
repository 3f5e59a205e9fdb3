package store

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/auditkit/auditkit/schema"
)

// Pages of a partitioned audit_logs are read window by window.
//
// A page query without a time range on a partitioned table is planned over every partition and
// starts an index scan in each (a Merge Append), although the page usually comes from the newest
// one or two. So the page is asked for within a time window first, whose edges are partition
// bounds, and only when that window holds fewer records than the page needs is the next window in
// the page's direction read, twice as many partitions wide each time, the last one unbounded. The
// windows tile the time line in the page's order and a record's window depends only on its
// occurred_at, so the concatenated windows hold exactly the records of the unbounded query, in
// its order: records in the default partition (strays, held records of dropped partitions) are
// found in the window of their time, and ties on occurred_at never straddle two windows. The
// bounds only decide how fast a page is found, never which records it holds: stale bounds (a
// partition created or dropped since they were read) cost at most an extra query.

// partitionBoundsTTL is how long the partition bounds of audit_logs are reused before they are
// read again.
const partitionBoundsTTL = time.Minute

// partitionBounds caches the partition bounds of a Store's audit_logs.
type partitionBounds struct {
	mu     sync.Mutex
	read   time.Time   // when bounds were read; zero before the first read
	bounds []time.Time // ascending, distinct; empty when audit_logs is not partitioned
}

// pageBounds returns the distinct bounds of the partitions of audit_logs (the default partition
// has none), ascending, read at most once per partitionBoundsTTL. It returns nil for a table
// that is not partitioned, and also when the bounds cannot be read (then pages run unbounded,
// which is always correct).
func (s *Store) pageBounds(ctx context.Context) []time.Time {
	c := &s.partBounds
	c.mu.Lock()
	if !c.read.IsZero() && time.Since(c.read) < partitionBoundsTTL {
		b := c.bounds
		c.mu.Unlock()
		return b
	}
	c.mu.Unlock()
	parts, err := schema.Partitions(ctx, s.pool, schema.WithSchema(s.schema))
	if err != nil {
		s.log.Warn("store: reading the partition bounds of audit_logs failed; pages scan every partition", "err", err)
		return nil
	}
	var b []time.Time
	for _, p := range parts {
		if !p.Default && !p.From.IsZero() && !p.To.IsZero() {
			b = append(b, p.From, p.To)
		}
	}
	slices.SortFunc(b, time.Time.Compare)
	b = slices.CompactFunc(b, time.Time.Equal)
	c.mu.Lock()
	c.read, c.bounds = time.Now(), b
	c.mu.Unlock()
	return b
}

// pageWindows walks the time windows of one page query. The zero value (no bounds) yields one
// window: the query itself.
type pageWindows struct {
	bounds []time.Time
	order  Order
	f      Filter // the query's own filter; every window is intersected with its time range
	// next is the index in bounds of the far edge of the next window (its lower bound for
	// NewestFirst, its upper bound for OldestFirst); out of range means unbounded.
	next int
	// edge is the near edge of the next window, where the previous one ended; zero for the
	// first window, whose near side is bounded only by the query (filter and cursor).
	edge time.Time
	step int
	done bool
}

// newPageWindows prepares the windows of a page of f in order after the cursor position after
// (nil for a first page), on a table with the given partition bounds. now anchors a newest-first
// page that has no upper bound of its own: records later than now are still in its first window.
func newPageWindows(bounds []time.Time, f Filter, order Order, after *position, now time.Time) *pageWindows {
	w := &pageWindows{bounds: bounds, order: order, f: f, step: 1}
	if len(bounds) == 0 {
		w.next = -1
		if order == OldestFirst {
			w.next = len(bounds)
		}
		return w
	}
	if order == OldestFirst {
		// The first window ends at the first bound after where the page starts: the cursor, the
		// filter's From, or else the start of the oldest partition.
		start := bounds[0]
		if !f.From.IsZero() && f.From.After(start) {
			start = f.From
		}
		if after != nil && after.at.After(start) {
			start = after.at
		}
		w.next, _ = slices.BinarySearchFunc(bounds, start, time.Time.Compare)
		for w.next < len(bounds) && !bounds[w.next].After(start) {
			w.next++
		}
		return w
	}
	// The first window starts at the last bound before where the page starts: the cursor, the
	// filter's To, or now, whichever is earliest.
	start := now
	if !f.To.IsZero() && f.To.Before(start) {
		start = f.To
	}
	if after != nil && after.at.Before(start) {
		start = after.at
	}
	i, _ := slices.BinarySearchFunc(bounds, start, time.Time.Compare)
	w.next = i - 1 // the last bound strictly before start; -1 when there is none
	return w
}

// window returns the filter of the next window: the query's filter with its time range narrowed
// to the window. ok is false when the last window has been given.
func (w *pageWindows) window() (f Filter, ok bool) {
	if w.done {
		return Filter{}, false
	}
	f = w.f
	var last bool
	if w.order == OldestFirst {
		if !w.edge.IsZero() && (f.From.IsZero() || w.edge.After(f.From)) {
			f.From = w.edge
		}
		if w.next < len(w.bounds) {
			hi := w.bounds[w.next]
			if f.To.IsZero() || hi.Before(f.To) {
				f.To = hi
			}
		}
		last = f.To.Equal(w.f.To)
		w.edge = f.To
		w.next += w.step
	} else {
		if !w.edge.IsZero() && (f.To.IsZero() || w.edge.Before(f.To)) {
			f.To = w.edge
		}
		if w.next >= 0 {
			lo := w.bounds[w.next]
			if f.From.IsZero() || lo.After(f.From) {
				f.From = lo
			}
		}
		last = f.From.Equal(w.f.From)
		w.edge = f.From
		w.next -= w.step
	}
	w.step *= 2
	w.done = last
	return f, true
}
