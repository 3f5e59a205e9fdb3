package ginaudit

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

// retryAfter is the Retry-After header's value, in seconds, of a request refused with 503
// because its audit record could not be kept (core.FailClosed).
const retryAfter = "5"

// stateKeyType is the type of the gin.Context key under which the middleware keeps the state of
// an audited request, for FailurePolicy.
type stateKeyType struct{}

var stateKey stateKeyType

// FailurePolicy returns a middleware that sets p as the failure policy of the request's context
// (core.WithFailurePolicy), for the routes it is registered on: the request's http record (when
// the audit middleware runs before it) and the ORM changes its handler makes follow p instead of
// the Writer's policy.
//
// Under core.FailClosed a request whose audit record cannot be kept (the writer's queue or spool
// is full, the writer is closed, the database refuses it) is answered 503 Service Unavailable
// with a Retry-After header, and its handler never runs. For example, an application that is
// fail-open except for its administration routes:
//
//	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg}))
//	admin := r.Group("/admin", ginaudit.FailurePolicy(core.FailClosed))
//	admin.POST("/users/:id/roles", grantRole)
//
// Registered after the audit middleware, FailurePolicy(core.FailClosed) reserves the room for
// the request's record itself. FailurePolicy(core.FailOpen) after the middleware applies to the
// handler's ORM changes only: a request refused because the Writer is fail-closed was refused
// before the route's middleware ran. Requests the middleware does not audit (Config.ExcludePaths,
// Config.SkipMethods) are never refused.
func FailurePolicy(p core.FailurePolicy) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := core.WithFailurePolicy(c.Request.Context(), p)
		c.Request = c.Request.WithContext(ctx)
		if v, ok := c.Get(stateKey); ok {
			st := v.(*reqState)
			// ORM calls given c itself find the policy through the audit context.
			c.Set(core.RequestContextKey, ctx)
			if p == core.FailClosed && st.res == nil {
				res, err := core.Admit(ctx, st.w, 1)
				if err != nil {
					st.refused = true
					st.m.refuse(c, err)
					return
				}
				st.res = res
			}
		}
		c.Next()
	}
}

// refuse answers 503 to a request whose audit record could not be admitted under FailClosed, and
// stops the chain: the handler never runs. The refusal is logged (at most once a second, with
// counts).
func (m *middleware) refuse(c *gin.Context, err error) {
	m.refusals.add(c.Request.Method, c.Request.URL.Path, err)
	c.Header("Retry-After", retryAfter)
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{
		"error":  "audit trail unavailable",
		"reason": refusalReason(err),
	})
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

// refusalLog reports requests refused under FailClosed: at once when nothing was reported in the
// last second, otherwise when that second ends, with the count and the latest reason.
type refusalLog struct {
	logger *slog.Logger
	total  atomic.Uint64

	mu       sync.Mutex // guards the fields below
	reported uint64
	last     time.Time
	timer    *time.Timer
	method   string
	path     string
	err      error
}

func (l *refusalLog) add(method, path string, err error) {
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
func (l *refusalLog) report() {
	total := l.total.Load()
	if total <= l.reported {
		return
	}
	l.logger.Error("ginaudit: requests refused with 503 because their audit record cannot be kept (fail-closed)",
		"refused_since_last_report", total-l.reported, "refused_total", total,
		"latest_method", l.method, "latest_path", l.path, "latest_error", l.err)
	l.reported = total
	l.last = time.Now()
}
