package ginaudit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

// entryBadTenants are tenant ids core.ValidateTenantID refuses that can travel in a header and a
// query parameter; pathBadTenants those that also survive as a URL path segment.
var (
	entryBadTenants = []string{"..", "a..b", "../t-2", "-acme", "@acme", ":acme", "_acme", ".acme", "acme.",
		"acme-", "acme:", "acme@", "t 1", "t\"1", "t/1", "tеnant", strings.Repeat("t", 129)}
	pathBadTenants = []string{"a..b", "-acme", "@acme", ":acme", "_acme", ".acme", "acme.", "acme-", "acme:", "acme@"}
)

// TestCheckTenantDelegatesToCore: CheckTenant applies core.ValidateTenantID to id and slug, and
// its error matches both packages' sentinels.
func TestCheckTenantDelegatesToCore(t *testing.T) {
	for _, id := range entryBadTenants {
		for _, tn := range []core.Tenant{{ID: id}, {ID: "t-1", Slug: id}} {
			err := ginaudit.CheckTenant(tn)
			if !errors.Is(err, ginaudit.ErrInvalidTenant) || !errors.Is(err, core.ErrInvalidTenant) {
				t.Errorf("CheckTenant(%+v) = %v", tn, err)
			}
		}
	}
	for _, tn := range []core.Tenant{{}, {ID: "t-1"}, {ID: "org:acme", Slug: "acme-corp"}, {Slug: "acme"}} {
		if err := ginaudit.CheckTenant(tn); err != nil {
			t.Errorf("CheckTenant(%+v) = %v", tn, err)
		}
	}
}

// TestBadTenantAtEveryMiddlewareEntry: a tenant id that core.ValidateTenantID refuses is never
// recorded, whether it comes from the tenant header, an outer middleware's core.WithTenant, the
// handler's c.Set(TenantKey) or a core.WithTenant made while the handler runs; the record notes
// the problem and the ORM records of the request carry no tenant either. (Token claims are in
// TestForgedTokenCorpus.)
func TestBadTenantAtEveryMiddlewareEntry(t *testing.T) {
	noTenantTok := hs256(t, with(claims("u-2"), "iss", "https://idp.test", "aud", "api"))
	withTenantTok := tenantToken(t, "u-3", "from-token")
	entries := []struct {
		name  string
		token string
		build func(w *core.Writer, bad string) *gin.Engine
		send  func(bad string) []string
	}{
		{"header", noTenantTok, func(w *core.Writer, _ string) *gin.Engine {
			cfg := hsConfig()
			cfg.TenantHeader = "X-Tenant-ID"
			return entryEngine(w, cfg, nil, nil, nil)
		}, func(bad string) []string { return []string{"X-Tenant-ID", bad} }},
		{"outer core.WithTenant", withTenantTok, func(w *core.Writer, bad string) *gin.Engine {
			return entryEngine(w, hsConfig(), func(c *gin.Context) {
				c.Request = c.Request.WithContext(core.WithTenant(c.Request.Context(), core.Tenant{ID: bad}))
			}, nil, nil)
		}, nil},
		{"c.Set(TenantKey)", withTenantTok, func(w *core.Writer, bad string) *gin.Engine {
			return entryEngine(w, hsConfig(), nil, func(c *gin.Context) { c.Set(ginaudit.TenantKey, bad) }, nil)
		}, nil},
		{"core.WithTenant in the handler", withTenantTok, func(w *core.Writer, bad string) *gin.Engine {
			return entryEngine(w, hsConfig(), nil, nil, func(c *gin.Context) {
				c.Request = c.Request.WithContext(core.WithTenant(c.Request.Context(), core.Tenant{ID: "t-ok", Slug: bad}))
			})
		}, nil},
	}
	for _, e := range entries {
		t.Run(e.name, func(t *testing.T) {
			for _, bad := range entryBadTenants {
				h := newHarnessWith(t, func(w *core.Writer) *gin.Engine { return e.build(w, bad) })
				hdr := []string{"Authorization", bearer(e.token)}
				if e.send != nil {
					hdr = append(hdr, e.send(bad)...)
				}
				resp, body := h.do("GET", "/t", nil, hdr...)
				if resp.StatusCode != http.StatusNoContent {
					t.Fatalf("%q: status %d %s", bad, resp.StatusCode, body)
				}
				if strings.Contains(resp.Header.Get("X-Handler-Tenant"), bad) {
					t.Errorf("%q: the handler's context holds the tenant", bad)
				}
				rows := h.rows()
				if len(rows) != 2 {
					t.Fatalf("%q: %d rows", bad, len(rows))
				}
				for _, r := range rows {
					if r.TenantID != "" || r.TenantSlug != "" {
						t.Errorf("%q: %s row stored tenant %q/%q", bad, r.Kind, r.TenantID, r.TenantSlug)
					}
				}
				if rows[0].Metadata["tenant_error"] == nil {
					t.Errorf("%q: the problem is not noted: %v", bad, rows[0].Metadata)
				}
			}
		})
	}
}

// entryEngine serves GET /t with the middleware; outer runs before it, inner after it, handler
// inside the route, which also records an ORM change.
func entryEngine(w *core.Writer, cfg core.Config, outer, inner, handler gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	if outer != nil {
		r.Use(outer)
	}
	r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg, Logger: discardLogger()}))
	if inner != nil {
		r.Use(inner)
	}
	r.GET("/t", func(c *gin.Context) {
		if handler != nil {
			handler(c)
		}
		tn, _ := core.TenantFromContext(c.Request.Context())
		c.Header("X-Handler-Tenant", tn.ID+"/"+tn.Slug)
		_ = core.Dispatch(c.Request.Context(), nil, &core.Record{Kind: core.KindUpdate, ResourceType: "x", ResourceID: "1"})
		c.Status(http.StatusNoContent)
	})
	return r
}

// TestBadTenantAtEveryAPIEntry: the read API refuses tenant ids that core.ValidateTenantID
// refuses in the tenant_id parameter of every endpoint, in tenant registry paths and bodies, and
// in ingest; nothing is stored under them.
func TestBadTenantAtEveryAPIEntry(t *testing.T) {
	env := apiNewEnv(t, nil)
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	for _, bad := range entryBadTenants {
		q := "?tenant_id=" + url.QueryEscape(bad)
		for _, req := range []struct{ method, path, body string }{
			{"GET", "/logs" + q, ""},
			{"GET", "/logs/export" + q, ""},
			{"GET", "/logs/stats" + q, ""},
			{"GET", "/logs/stream" + q, ""},
			{"DELETE", "/logs/cleanup" + q + "&older_than=30d", ""},
			{"POST", "/logs" + q, `{"action":"x.y"}`},
			{"POST", "/logs/bulk" + q, `[{"action":"x.y"}]`},
			{"POST", "/tenants", fmt.Sprintf(`{"id":%q}`, bad)},
			{"POST", "/tenants", fmt.Sprintf(`{"id":"t-new","slug":%q}`, bad)},
		} {
			var body []byte
			if req.body != "" {
				body = []byte(req.body)
			}
			var res apiResp
			if strings.HasPrefix(req.path, "/logs/stream") {
				res = env.doStream(req.path, admin) // an accepted stream would not end
			} else {
				res = env.do(req.method, req.path, admin, body)
			}
			if res.status != http.StatusBadRequest {
				t.Errorf("%s %s with %q: status %d %s, want 400", req.method, req.path, bad, res.status, res.body)
			}
		}
	}
	for _, bad := range pathBadTenants {
		for _, req := range []struct{ method, body string }{{"GET", ""}, {"PATCH", `{"status":"suspended"}`}} {
			var body []byte
			if req.body != "" {
				body = []byte(req.body)
			}
			res := env.do(req.method, "/tenants/"+url.PathEscape(bad), admin, body)
			if res.status != http.StatusBadRequest && res.status != http.StatusNotFound {
				t.Errorf("%s /tenants/%s: status %d %s, want 400 or 404", req.method, bad, res.status, res.body)
			}
		}
	}
	env.flush()
	for _, bad := range entryBadTenants {
		if n := env.count(`tenant_id = $1`, bad); n != 0 {
			t.Errorf("%d records stored under tenant %q", n, bad)
		}
	}
	tenants, _, err := env.st.ListTenants(context.Background(), store.TenantQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		if core.ValidateTenantID(tn.ID) != nil || (tn.Slug != "" && core.ValidateTenantID(tn.Slug) != nil) {
			t.Errorf("tenant %+v was registered", tn)
		}
	}
}

// TestAuthenticationStatesOverHTTP: the handler's context tells no credentials, verified
// credentials and refused credentials apart, and only verified ones yield an actor; the records
// say the same.
func TestAuthenticationStatesOverHTTP(t *testing.T) {
	identify := func(c *gin.Context) (ginaudit.Identity, error) {
		switch c.GetHeader("X-Api-Key") {
		case "":
			return ginaudit.Identity{}, ginaudit.ErrNoToken
		case "good":
			return ginaudit.Identity{Actor: core.Actor{ID: "svc-1", Type: core.ActorService}}, nil
		case "odd-type":
			return ginaudit.Identity{Actor: core.Actor{ID: "svc-2", Type: "root"}}, nil
		}
		return ginaudit.Identity{}, errors.New("unknown api key")
	}
	probe := func(c *gin.Context) {
		ctx := c.Request.Context()
		a, ok := core.ActorFromContext(ctx)
		auth := core.AuthenticationFromContext(ctx)
		c.String(http.StatusOK, "%v|%s|%s|%s", ok, a.ID, auth.Status, auth.Reason)
	}
	cases := []struct {
		name string
		opts ginaudit.Options
		hdr  []string
		want string // what the handler saw
		rec  string // the record's actor id/type/auth and auth_failure; "" for no record
	}{
		{"no token", ginaudit.Options{Config: hsConfig()}, nil, "false||none|", ""},
		{"other scheme", ginaudit.Options{Config: hsConfig()}, []string{"Authorization", "Basic dTpw"}, "false||none|", ""},
		{"verified token", ginaudit.Options{Config: hsConfig()}, []string{"Authorization", bearer(tenantToken(t, "u-1", "t-1"))},
			"true|u-1|verified|", "u-1/tenant_user/jwt:HS256/<nil>"},
		{"forged token", ginaudit.Options{Config: hsConfig()},
			[]string{"Authorization", bearer(tamper(t, tenantToken(t, "u-1", "t-1"), with(claims("admin"), "actor_type", "platform_admin")))},
			"false||refused|JWT refused: signature is invalid", "/anonymous/none/signature"},
		{"Identify: no credentials", ginaudit.Options{Identify: identify}, nil, "false||none|", ""},
		{"Identify: verified", ginaudit.Options{Identify: identify}, []string{"X-Api-Key", "good"}, "true|svc-1|verified|", "svc-1/service/custom/<nil>"},
		{"Identify: refused", ginaudit.Options{Identify: identify}, []string{"X-Api-Key", "bad"}, "false||refused|unknown api key", "/anonymous/none/identify"},
		{"Identify: invalid actor type", ginaudit.Options{Identify: identify}, []string{"X-Api-Key", "odd-type"},
			`false||refused|actor type "root" is not valid; recorded as anonymous`, "svc-2/anonymous/custom/<nil>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Config.LogAnonymous = false
			h := newHarness(t, opts, func(r *gin.Engine, _ *core.Writer) { r.GET("/p", probe) })
			_, body := h.do("GET", "/p", nil, tc.hdr...)
			if body != tc.want {
				t.Errorf("handler saw %q, want %q", body, tc.want)
			}
			rows := h.rows()
			if tc.rec == "" {
				if len(rows) != 0 {
					t.Errorf("recorded %+v", rows)
				}
				return
			}
			r := only(t, rows)
			if got := fmt.Sprintf("%s/%s/%s/%v", r.ActorID, r.ActorType, r.ActorAuth, r.Metadata["auth_failure"]); got != tc.rec {
				t.Errorf("record %s, want %s", got, tc.rec)
			}
		})
	}
}
