package ginaudit

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/auditmw"
)

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
		if st := auditmw.StateFrom(ctx); st != nil {
			// ORM calls given c itself find the policy through the audit context.
			c.Set(core.RequestContextKey, ctx)
			if p == core.FailClosed && st.Res == nil {
				res, err := core.Admit(ctx, st.E.Writer, 1)
				if err != nil {
					st.Refused = true
					refuse(c, st.E, err)
					return
				}
				st.Res = res
			}
		}
		c.Next()
	}
}

// refuse answers 503 to a request whose audit record could not be admitted under FailClosed, and
// stops the chain: the handler never runs. The refusal is logged (at most once a second, with
// counts).
func (m *middleware) refuse(c *gin.Context, err error) { refuse(c, m.e, err) }

func refuse(c *gin.Context, e *auditmw.Engine, err error) {
	body := e.Refuse(c.Request, err)
	c.Header("Retry-After", auditmw.RetryAfter)
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, body)
}
