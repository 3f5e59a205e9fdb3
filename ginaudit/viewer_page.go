package ginaudit

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

// viewerAssets holds the log viewer: one HTML page, its ES modules and its stylesheet, written
// by hand so that nothing is built.
//
//go:embed viewer
var viewerAssets embed.FS

// viewerPageCSP confines the page to its own scripts and styles and to requests to its origin.
const viewerPageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'"

// viewerPathRE is what APIOptions.ViewerPath may be: one or more path segments of letters,
// digits, '-', '_' and '.'.
var viewerPathRE = regexp.MustCompile(`^(/[A-Za-z0-9_.-]+)+$`)

// viewerReserved are the first path segments of the API's routes, which the viewer cannot take.
var viewerReserved = []string{"logs", "tenants", "chain", "subjects", "resources", "openapi.yaml"}

// viewerHistoryPath finds a resource's history route in the OpenAPI description.
var viewerHistoryPath = regexp.MustCompile(`\n  /resources/\{[a-z_]+\}/\{[a-z_]+\}/history:`)

var viewerIndexTmpl = template.Must(template.ParseFS(viewerAssets, "viewer/index.html"))

// viewerPage renders the page for an API at apiBase whose assets are served at assets.
func viewerPage(apiBase, assets string) ([]byte, error) {
	var b bytes.Buffer
	err := viewerIndexTmpl.Execute(&b, struct{ API, Assets, Features string }{API: apiBase, Assets: assets, Features: viewerFeatures()})
	return b.Bytes(), err
}

// viewerFeatures lists the optional routes the API serves, for the page to offer: "history" when
// the API describes a resource's history.
func viewerFeatures() string {
	if viewerHistoryPath.Match(OpenAPI) {
		return "history"
	}
	return ""
}

func viewerHeaders(h http.Header) {
	h.Set("Content-Security-Policy", viewerPageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// ViewerIndex returns a handler that serves the log viewer's page for the API mounted at the
// router group path apiBase with APIOptions.ViewerPath viewerPath, so that an application can
// show the viewer at a path of its own, such as /. The page loads its scripts and stylesheet from
// apiBase+viewerPath and calls the API at apiBase.
//
//	h, err := ginaudit.ViewerIndex("/api/v1", "/viewer")
//	if err != nil {
//		return err
//	}
//	r.GET("/", gin.WrapH(h))
func ViewerIndex(apiBase, viewerPath string) (http.Handler, error) {
	if apiBase != "" && !viewerPathRE.MatchString(apiBase) {
		return nil, fmt.Errorf("ginaudit: ViewerIndex: the API base %q is not a path such as /api/v1", apiBase)
	}
	if err := viewerCheckPath(viewerPath); err != nil {
		return nil, err
	}
	page, err := viewerPage(apiBase, apiBase+viewerPath)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		viewerHeaders(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	}), nil
}

func viewerCheckPath(p string) error {
	if !viewerPathRE.MatchString(p) {
		return fmt.Errorf("ginaudit: APIOptions.ViewerPath %q is not a path such as /viewer (segments of letters, digits, - _ .)", p)
	}
	first, _, _ := strings.Cut(p[1:], "/")
	for _, r := range viewerReserved {
		if first == r {
			return fmt.Errorf("ginaudit: APIOptions.ViewerPath %q would shadow the API's /%s routes", p, r)
		}
	}
	return nil
}

// mountViewer registers POST /viewer/tokens and, with APIOptions.ViewerPath, the page and its
// assets.
func (a *apiServer) mountViewer(group *gin.RouterGroup, auth *gin.RouterGroup) error {
	viewerBases.Store(a, strings.TrimSuffix(group.BasePath(), "/"))
	auth.POST("/viewer/tokens", a.mintViewerToken)
	p := a.opts.ViewerPath
	if p == "" {
		return nil
	}
	if err := viewerCheckPath(p); err != nil {
		return err
	}
	base := strings.TrimSuffix(group.BasePath(), "/")
	page, err := viewerPage(base, base+p)
	if err != nil {
		return err
	}
	sub, err := fs.Sub(viewerAssets, "viewer")
	if err != nil {
		return err
	}
	serve := func(c *gin.Context) {
		apiMarkRequest(c)
		// The page is public and names no tenant: recorded, behind Middleware, without one.
		if act, ok := core.ActorFromContext(c.Request.Context()); ok && act.Type == core.ActorPlatformAdmin {
			c.Set(TenantKey, core.Tenant{})
		}
		viewerHeaders(c.Writer.Header())
		name := strings.TrimPrefix(c.Param("file"), "/")
		if name == "" || name == "index.html" {
			c.Data(http.StatusOK, "text/html; charset=utf-8", page)
			return
		}
		b, err := fs.ReadFile(sub, name)
		if err != nil || strings.Contains(name, "/") || !strings.Contains(name, ".") {
			c.Header("Content-Type", "text/plain; charset=utf-8")
			c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": apiError{Code: "not_found", Message: "the viewer has no file " + apiTruncate(name, 64)}})
			return
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if path.Ext(name) == ".js" {
			ct = "text/javascript; charset=utf-8"
		}
		c.Data(http.StatusOK, ct, b)
	}
	group.GET(p, func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, base+p+"/") })
	group.GET(p+"/*file", serve)
	return nil
}
