package auditmw

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditkit/auditkit/core"
)

// RetryAfter is the Retry-After header's value, in seconds, of a request refused with 503
// because its audit record could not be kept (core.FailClosed).
const RetryAfter = "5"

// Refusal is the JSON body of a request refused under core.FailClosed.
type Refusal struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// Refuse records a refusal of req for err (see RefusalLog) and returns the body to answer with
// 503 Service Unavailable and Retry-After.
func (e *Engine) Refuse(req *http.Request, err error) Refusal {
	e.Refusals.add(req.Method, req.URL.Path, err)
	return Refusal{Error: "audit trail unavailable", Reason: refusalReason(err)}
}

// refusalReason says in one sentence why a request was refused, without the internal details of
// err (addresses, SQL states, file names), which are logged instead.
func refusalReason(err error) string {
	var unavail *core.UnavailableError
	switch {
	case errors.Is(err, core.ErrQueueFull):
		return "the audit queue is full"
	case errors.Is(err, core.ErrSpoolFull):
		return "the audit spool is full"
	case errors.Is(err, core.ErrClosed):
		return "the audit writer is shutting down"
	case errors.As(err, &unavail):
		return "the audit database refuses writes"
	}
	return "audit records cannot be accepted now"
}

// RefusalLog reports requests refused under FailClosed: at once when nothing was reported in the
// last second, otherwise when that second ends, with the count and the latest reason.
type RefusalLog struct {
	logger *slog.Logger
	name   string
	total  atomic.Uint64

	mu       sync.Mutex // guards the fields below
	reported uint64
	last     time.Time
	timer    *time.Timer
	method   string
	path     string
	err      error
}

func (l *RefusalLog) add(method, path string, err error) {
	l.total.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.method, l.path, l.err = method, path, err
	if l.timer != nil {
		return // the scheduled report includes this one
	}
	if wait := time.Until(l.last.Add(time.Second)); wait > 0 {
		l.timer = time.AfterFunc(wait, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.timer = nil
			l.report()
		})
		return
	}
	l.report()
}

// report logs the refusals since the last report. mu must be held.
func (l *RefusalLog) report() {
	total := l.total.Load()
	if total <= l.reported {
		return
	}
	l.logger.Error(l.name+": requests refused with 503 because their audit record cannot be kept (fail-closed)",
		"refused_since_last_report", total-l.reported, "refused_total", total,
		"latest_method", l.method, "latest_path", l.path, "latest_error", l.err)
	l.reported = total
	l.last = time.Now()
}
