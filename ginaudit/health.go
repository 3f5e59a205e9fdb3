package ginaudit

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/httpaudit"
)

// WriterHealth is the JSON form of a Writer's condition (core.Health), as HealthHandler answers
// it: state ("healthy", "degraded" or "failing"), reason (why the state is not healthy, in one
// sentence; empty when healthy), since (when the condition began, when known; null otherwise),
// queue_depth, queue_size, spool_bytes, spool_max_bytes and dropped.
type WriterHealth = httpaudit.WriterHealth

// NewWriterHealth returns the JSON form of h.
func NewWriterHealth(h core.Health) WriterHealth { return httpaudit.NewWriterHealth(h) }

// HealthHandler returns a handler that reports w's condition (core.Writer.Health) as a
// WriterHealth, for a readiness probe: 200 while the writer is healthy or degraded (records are
// accepted and kept), 503 Service Unavailable while it is failing (the database refuses the
// writer, or the writer is closed).
//
//	r.GET("/health/audit", ginaudit.HealthHandler(w))
//
// The reason may quote the database's error; serve the handler where the operators, not the
// public, can reach it.
func HealthHandler(w *core.Writer) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := w.Health()
		status := http.StatusOK
		if !h.OK() {
			status = http.StatusServiceUnavailable
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(status, NewWriterHealth(h))
	}
}
