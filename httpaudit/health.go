package httpaudit

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/auditkit/auditkit/core"
)

// WriterHealth is the JSON form of a Writer's condition (core.Health), as HealthHandler answers
// it.
type WriterHealth struct {
	State         string     `json:"state"`  // "healthy", "degraded" or "failing"
	Reason        string     `json:"reason"` // why the state is not healthy, in one sentence; empty when healthy
	Since         *time.Time `json:"since"`  // when the condition began, when known; null otherwise
	QueueDepth    int        `json:"queue_depth"`
	QueueSize     int        `json:"queue_size"`
	SpoolBytes    int64      `json:"spool_bytes"`
	SpoolMaxBytes int64      `json:"spool_max_bytes"`
	Dropped       uint64     `json:"dropped"`
}

// NewWriterHealth returns the JSON form of h.
func NewWriterHealth(h core.Health) WriterHealth {
	out := WriterHealth{
		State:         h.State.String(),
		Reason:        h.Reason,
		QueueDepth:    h.QueueDepth,
		QueueSize:     h.QueueSize,
		SpoolBytes:    h.SpoolBytes,
		SpoolMaxBytes: h.SpoolMaxBytes,
		Dropped:       h.Dropped,
	}
	if !h.Since.IsZero() {
		since := h.Since.UTC()
		out.Since = &since
	}
	return out
}

// HealthHandler returns a handler that reports w's condition (core.Writer.Health) as a
// WriterHealth, for a readiness probe: 200 while the writer is healthy or degraded (records are
// accepted and kept), 503 Service Unavailable while it is failing (the database refuses the
// writer, or the writer is closed).
//
//	mux.Handle("GET /health/audit", httpaudit.HealthHandler(w))
//
// The reason may quote the database's error; serve the handler where the operators, not the
// public, can reach it.
func HealthHandler(w *core.Writer) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		h := w.Health()
		status := http.StatusOK
		if !h.OK() {
			status = http.StatusServiceUnavailable
		}
		rw.Header().Set("Cache-Control", "no-store")
		rw.Header().Set("Content-Type", "application/json; charset=utf-8")
		rw.WriteHeader(status)
		_ = json.NewEncoder(rw).Encode(NewWriterHealth(h))
	})
}
