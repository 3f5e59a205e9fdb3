package core

import (
	"fmt"
	"time"
)

// HealthState summarises a Writer's condition.
type HealthState uint8

const (
	// Healthy: records are being written.
	Healthy HealthState = iota
	// Degraded: records are accepted and kept, but writing them is behind or failing for now
	// (retrying after a transient error, a queue or spool filling up, spool errors, or records
	// dropped in the last minute). Nothing needs to be refused yet.
	Degraded
	// Failing: records cannot be written until something changes: the database refuses the
	// writer (a missing table or privilege, see UnavailableError), or the Writer is closed.
	// Records are kept in the queue and spool while they have room; under FailClosed new work is
	// refused.
	Failing
)

// String returns "healthy", "degraded" or "failing".
func (s HealthState) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Degraded:
		return "degraded"
	case Failing:
		return "failing"
	}
	return fmt.Sprintf("HealthState(%d)", uint8(s))
}

// Health is a Writer's condition, for a health or readiness endpoint and for alerts.
type Health struct {
	State HealthState
	// Reason says why the state is not Healthy, in one sentence; empty when Healthy.
	Reason string
	// Err is the write error behind the state, when there is one.
	Err error
	// Since is when the condition began (the first failed attempt), when known.
	Since time.Time

	QueueDepth    int    // records accepted and not yet written (see Stats.QueueDepth)
	QueueSize     int    // the queue's bound (WriterOptions.QueueSize)
	SpoolBytes    int64  // the spool's files, 0 without a spool
	SpoolMaxBytes int64  // the spool's bound, 0 without a spool
	Dropped       uint64 // records lost so far (Stats.Dropped)
}

// OK reports whether the state is not Failing: a readiness probe's answer.
func (h Health) OK() bool { return h.State != Failing }

// dropWindow is how long a drop keeps a Writer Degraded.
const dropWindow = time.Minute

// Health returns w's condition now.
func (w *Writer) Health() Health {
	st := w.Stats()
	h := Health{QueueDepth: st.QueueDepth, QueueSize: w.opts.QueueSize, Dropped: st.Dropped}
	if w.sp != nil {
		h.SpoolBytes, h.SpoolMaxBytes = st.SpoolBytes, w.sp.max
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	degrade := func(reason string) {
		if h.State == Healthy {
			h.State, h.Reason = Degraded, reason
		}
	}
	switch f := w.failing.Load(); {
	case f != nil:
		h.State, h.Err, h.Since = Failing, f.err, f.since
		h.Reason = "the database refuses the audit writer: " + f.err.Error()
	case closed:
		h.State, h.Reason = Failing, "the writer is closed"
	}
	if r := w.retrying.Load(); r != nil {
		degrade("audit writes are failing and being retried: " + r.err.Error())
		if h.Err == nil {
			h.Err, h.Since = r.err, r.since
		}
	}
	if w.sp != nil && h.SpoolBytes >= w.sp.max/10*9 {
		degrade(fmt.Sprintf("the audit spool is %d%% full", h.SpoolBytes*100/max(w.sp.max, 1)))
	}
	if w.sp == nil && h.QueueDepth >= w.opts.QueueSize/10*9 {
		degrade(fmt.Sprintf("the audit queue is %d%% full", h.QueueDepth*100/max(w.opts.QueueSize, 1)))
	}
	if w.sp != nil {
		if last := w.sp.lastErrReport.Load(); last != 0 && time.Since(time.Unix(0, last)) < dropWindow {
			degrade("the audit spool refused records in the last minute")
		}
	}
	if last := w.lastDrop.Load(); last != 0 && time.Since(time.Unix(0, last)) < dropWindow {
		degrade(fmt.Sprintf("audit records were dropped in the last minute (%d in all)", h.Dropped))
	}
	return h
}
