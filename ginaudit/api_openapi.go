package ginaudit

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

// OpenAPI is the OpenAPI 3 description of the API that MountAPI registers, served at
// GET /openapi.yaml relative to the router group.
//
//go:embed openapi.yaml
var OpenAPI []byte

// openAPI serves GET /openapi.yaml.
func (a *apiServer) openAPI(c *gin.Context) {
	apiMarkRequest(c)
	// The description is public and names no tenant: a platform administrator's request for it
	// is recorded, like the rest of the administrator's work on no tenant, without one.
	if act, ok := core.ActorFromContext(c.Request.Context()); ok && act.Type == core.ActorPlatformAdmin {
		c.Set(TenantKey, core.Tenant{})
	}
	if _, ok := a.params(c); !ok {
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/yaml", OpenAPI)
}
