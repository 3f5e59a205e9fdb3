package ginaudit_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// With the engine's ContextWithFallback, the *gin.Context itself answers core's lookups through
// c.Request's context, so the middleware stores nothing in c.Keys; without it, the audit context
// is stored under core.RequestContextKey. Either way an ORM call given c finds the request.
func TestGinContextWithAndWithoutFallback(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			h := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
				r := gin.New()
				r.ContextWithFallback = fallback
				r.Use(gin.RecoveryWithWriter(io.Discard), ginaudit.Middleware(ginaudit.Options{Writer: w, Logger: discardLogger(),
					Config: core.Config{LogAnonymous: true}}))
				r.GET("/x", func(c *gin.Context) {
					id, ok := core.RequestIDFromContext(c)
					_, stored := c.Get(core.RequestContextKey)
					c.String(http.StatusOK, "%v %v %v", core.FromContext(c) != nil, ok && id == c.Writer.Header().Get("X-Request-ID"), stored)
				})
				return r
			})
			_, body := h.do("GET", "/x", nil)
			if want := fmt.Sprintf("true true %v", !fallback); body != want {
				t.Fatalf("handler saw %q, want %q", body, want)
			}
		})
	}
}
