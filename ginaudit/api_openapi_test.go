package ginaudit_test

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/goccy/go-yaml"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

// apiSpec is the part of the OpenAPI description the tests read.
type apiSpec struct {
	OpenAPI    string                                 `yaml:"openapi"`
	Paths      map[string]map[string]apiSpecOperation `yaml:"paths"`
	Components struct {
		Parameters map[string]apiSpecParam `yaml:"parameters"`
		Schemas    map[string]any          `yaml:"schemas"`
		Responses  map[string]any          `yaml:"responses"`
	} `yaml:"components"`
}

type apiSpecOperation struct {
	Parameters []apiSpecParam `yaml:"parameters"`
	Responses  map[string]any `yaml:"responses"`
}

type apiSpecParam struct {
	Ref  string `yaml:"$ref"`
	Name string `yaml:"name"`
	In   string `yaml:"in"`
}

func apiLoadSpec(t *testing.T) apiSpec {
	t.Helper()
	var s apiSpec
	if err := yaml.Unmarshal(ginaudit.OpenAPI, &s); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if !strings.HasPrefix(s.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", s.OpenAPI)
	}
	return s
}

// Every route MountAPI registers is described, and every described operation is a route.
func TestAPIOpenAPIDescribesEveryRoute(t *testing.T) {
	spec := apiLoadSpec(t)
	e := apiNewEnv(t, nil)
	r := gin.New()
	if err := ginaudit.MountAPI(r.Group("/prefix"), e.st, ginaudit.APIOptions{Verifier: apiVerifier(t), Writer: e.w}); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`:([a-z_]+)`)
	var routes []string
	for _, rt := range r.Routes() {
		p := param.ReplaceAllString(strings.TrimPrefix(rt.Path, "/prefix"), "{$1}")
		routes = append(routes, rt.Method+" "+p)
	}
	var described []string
	for path, ops := range spec.Paths {
		for method := range ops {
			described = append(described, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(routes)
	sort.Strings(described)
	if !slices.Equal(routes, described) {
		t.Fatalf("routes and description differ:\nroutes    %v\ndescribed %v", routes, described)
	}
	// Every $ref resolves.
	refs := regexp.MustCompile(`\$ref: "#/components/(parameters|schemas|responses)/([A-Za-z_-]+)"`).FindAllStringSubmatch(string(ginaudit.OpenAPI), -1)
	if len(refs) < 50 {
		t.Fatalf("only %d references found", len(refs))
	}
	for _, m := range refs {
		var ok bool
		switch m[1] {
		case "parameters":
			_, ok = spec.Components.Parameters[m[2]]
		case "schemas":
			_, ok = spec.Components.Schemas[m[2]]
		case "responses":
			_, ok = spec.Components.Responses[m[2]]
		}
		if !ok {
			t.Errorf("unresolved reference %s/%s", m[1], m[2])
		}
	}
}

func apiVerifier(t *testing.T) *ginaudit.Verifier {
	t.Helper()
	v, err := ginaudit.NewVerifier(t.Context(), core.JWTConfig{Secret: apiSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The query parameters each operation accepts are exactly those it documents: a documented one
// is never refused as unknown, and every parameter name the API knows is refused as unknown by
// the operations that do not document it.
func TestAPIOpenAPIDescribesEveryParameter(t *testing.T) {
	spec := apiLoadSpec(t)
	e := apiNewEnv(t, nil)
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	candidates := append(slices.Clone(store.FilterParams), "sort", "limit", "cursor", "format", "bucket", "top", "tenant_id",
		"access_token", "older_than", "status", "after", "unknown_thing")
	for path, ops := range spec.Paths {
		for method, op := range ops {
			documented := map[string]bool{}
			for _, p := range op.Parameters {
				if p.Ref != "" {
					p = spec.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				}
				if p.In == "query" {
					documented[p.Name] = true
				}
			}
			concrete := strings.NewReplacer("{id}", "01900000-0000-7000-8000-000000000001").Replace(path)
			if strings.HasPrefix(path, "/tenants/") {
				concrete = "/tenants/acme" + strings.TrimPrefix(path, "/tenants/{id}")
			}
			for _, name := range candidates {
				if name == "access_token" {
					continue // it is a credential: checked by TestAPIAuthentication
				}
				var body []byte
				if method == "post" || method == "patch" || method == "put" {
					body = []byte(`{}`)
				}
				var r apiResp
				if path == "/logs/stream" {
					r = e.doStream(concrete+"?"+name+"=v", admin)
				} else {
					r = e.do(strings.ToUpper(method), concrete+"?"+name+"=v", admin, body)
				}
				unknown := r.errCode() == "unknown_parameter"
				if documented[name] == unknown {
					t.Errorf("%s %s: parameter %q documented %v, refused as unknown %v (%d %s)",
						strings.ToUpper(method), path, name, documented[name], unknown, r.status, apiTruncateTest(string(r.body)))
				}
			}
			if r := e.do(http.MethodGet, "/openapi.yaml", "", nil); r.status != http.StatusOK {
				t.Fatal("openapi.yaml is not served")
			}
		}
	}
}
