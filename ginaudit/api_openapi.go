package ginaudit

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// OpenAPI is the OpenAPI 3 description of the API that MountAPI registers, served at
// GET /openapi.yaml relative to the router group.
//
//go:embed openapi.yaml
var OpenAPI []byte

// openAPI serves GET /openapi.yaml.
func (a *apiServer) openAPI(c *gin.Context) {
	if _, ok := a.params(c); !ok {
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/yaml", OpenAPI)
}
