package core

import (
	"sync"
	"sync/atomic"
	"time"
)

// BatchEvent describes one attempt of a Writer to store a batch through its Sink, for metrics.
type BatchEvent struct {
	Records  int           // records in the batch
	Attempt  int           // 0 for the first attempt, counting retries after transient errors
	Duration time.Duration // how long the sink took to answer
	Err      error         // the sink's error; nil when the batch was stored
}

// observers maps a *Writer to its []func(BatchEvent) (an immutable slice, replaced on change).
// Observing is rare and read once per batch, so a package-level map keeps the Writer unchanged.
var (
	observers   sync.Map
	observersMu sync.Mutex
	observing   atomic.Int32 // number of Writers with observers: 0 skips the lookup
)

// Observe registers fn to be called after every attempt to write a batch, from the goroutine
// that wrote it; fn must be quick and safe for concurrent use (several workers write at once).
// The returned function removes fn; call it before dropping the Writer.
func (w *Writer) Observe(fn func(BatchEvent)) (remove func()) {
	if fn == nil {
		panic("auditkit: Writer.Observe called with a nil function")
	}
	observersMu.Lock()
	defer observersMu.Unlock()
	old, _ := observers.Load(w)
	list, _ := old.([]*observer)
	if len(list) == 0 {
		observing.Add(1)
	}
	o := &observer{fn: fn}
	observers.Store(w, append(list[:len(list):len(list)], o))
	var once sync.Once
	return func() {
		once.Do(func() {
			observersMu.Lock()
			defer observersMu.Unlock()
			cur, _ := observers.Load(w)
			list, _ := cur.([]*observer)
			next := make([]*observer, 0, len(list))
			for _, x := range list {
				if x != o {
					next = append(next, x)
				}
			}
			if len(next) == 0 {
				observers.Delete(w)
				observing.Add(-1)
				return
			}
			observers.Store(w, next)
		})
	}
}

type observer struct{ fn func(BatchEvent) }

// observe reports a write attempt of n records that began at start to w's observers.
func (w *Writer) observe(n, attempt int, start time.Time, err error) {
	if observing.Load() == 0 {
		return
	}
	v, ok := observers.Load(w)
	if !ok {
		return
	}
	ev := BatchEvent{Records: n, Attempt: attempt, Duration: time.Since(start), Err: err}
	for _, o := range v.([]*observer) {
		o.fn(ev)
	}
}
