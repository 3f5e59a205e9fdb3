package ginaudit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func hsConfig() core.Config {
	return core.Config{
		JWT:              core.JWTConfig{Secret: testSecret, Issuer: "https://idp.test", Audience: []string{"api"}},
		ActorTypeAliases: testAliases,
	}
}

// tenantToken is a valid HS256 token for hsConfig.
func tenantToken(t testing.TB, sub, tenant string, kv ...any) string {
	c := with(claims(sub), "iss", "https://idp.test", "aud", "api", "email", sub+"@example.com",
		"tenant_id", tenant, "tenant_slug", "slug-"+tenant, "jti", "jti-"+sub)
	return hs256(t, with(c, kv...))
}

func TestRecordsRequest(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: hsConfig()}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/customers/:id", func(c *gin.Context) {
			time.Sleep(5 * time.Millisecond) // the handler's work: the recorded duration covers it
			a, _ := core.ActorFromContext(c.Request.Context())
			tn, _ := core.TenantFromContext(c.Request.Context())
			id, _ := core.RequestIDFromContext(c.Request.Context())
			c.JSON(http.StatusOK, gin.H{"actor": a.ID, "tenant": tn.ID, "request_id": id,
				"collector": core.FromContext(c.Request.Context()) != nil})
		})
	})
	resp, body := h.do("GET", "/customers/42?expand=orders&password=hunter2", nil,
		"Authorization", bearer(tenantToken(t, "u-1", "t-1")), "User-Agent", "audit-test/1.0")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqID := resp.Header.Get("X-Request-ID")
	if !uuidPattern.MatchString(reqID) {
		t.Fatalf("X-Request-ID = %q, want a generated UUIDv7", reqID)
	}
	// The handler saw the identity, the request id and the collector in c.Request.Context().
	want := fmt.Sprintf(`{"actor":"u-1","collector":true,"request_id":%q,"tenant":"t-1"}`, reqID)
	if body != want {
		t.Errorf("handler saw %s, want %s", body, want)
	}

	r := only(t, h.rows())
	check := []struct{ name, got, want string }{
		{"kind", r.Kind, "http"}, {"action", r.Action, "http.request"}, {"severity", r.Severity, "info"},
		{"method", r.Method, "GET"}, {"route", r.Route, "/customers/:id"}, {"path", r.Path, "/customers/42"},
		{"ip", r.IP, "127.0.0.1"}, {"user agent", r.UserAgent, "audit-test/1.0"}, {"request id", r.RequestID, reqID},
		{"actor id", r.ActorID, "u-1"}, {"actor type", r.ActorType, "tenant_user"},
		{"actor email", r.ActorEmail, "u-1@example.com"}, {"actor auth", r.ActorAuth, "jwt:HS256"},
		{"tenant id", r.TenantID, "t-1"}, {"tenant slug", r.TenantSlug, "slug-t-1"},
	}
	for _, c := range check {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if r.Status != 200 || r.DurationUS < 5000 {
		t.Errorf("status %d, duration %dµs; want 200 and at least the handler's 5000µs", r.Status, r.DurationUS)
	}
	if got := r.Query["expand"]; len(got) != 1 || got[0] != "orders" {
		t.Errorf("query expand = %v", got)
	}
	if got := r.Query["password"]; len(got) != 1 || got[0] != core.Redacted {
		t.Errorf("query password = %v, want redacted", got)
	}
	// iss is fixed by the configuration, so only jti is worth storing.
	if _, hasIss := r.Metadata["jwt_iss"]; hasIss || r.Metadata["jwt_jti"] != "jti-u-1" {
		t.Errorf("metadata = %v", r.Metadata)
	}
	if r.RequestBody != nil || r.ResponseBody != nil {
		t.Errorf("bodies captured without being asked: %v %v", r.RequestBody, r.ResponseBody)
	}
}

func TestLogAnonymous(t *testing.T) {
	for _, logAnon := range []bool{false, true} {
		t.Run(fmt.Sprint("LogAnonymous=", logAnon), func(t *testing.T) {
			cfg := hsConfig()
			cfg.LogAnonymous = logAnon
			h := newHarness(t, ginaudit.Options{Config: cfg}, func(r *gin.Engine, _ *core.Writer) {
				r.GET("/public", func(c *gin.Context) { c.String(200, "ok") })
			})
			h.do("GET", "/public", nil)
			h.do("GET", "/public", nil, "Authorization", "Basic dXNlcjpwYXNz") // not a bearer token
			h.do("GET", "/public", nil, "Authorization", bearer(tenantToken(t, "u-1", "t-1")))
			rows := h.rows()
			want := 1
			if logAnon {
				want = 3
			}
			if len(rows) != want {
				t.Fatalf("%d rows, want %d: %+v", len(rows), want, rows)
			}
			for _, r := range rows {
				if r.ActorID == "" && (r.ActorType != "anonymous" || r.Severity != "info" || r.ActorAuth != "") {
					t.Errorf("anonymous row %+v", r)
				}
			}
		})
	}
}

func TestFailedVerificationIsRecordedAnonymous(t *testing.T) {
	rsaPEM := pemOf(t, &rsaKey().PublicKey)
	hsCfg := hsConfig()
	rsCfg := core.Config{JWT: core.JWTConfig{PublicKeyPEM: rsaPEM}, ActorTypeAliases: testAliases}
	okClaims := with(claims("admin"), "iss", "https://idp.test", "aud", "api", "actor_type", "platform_admin", "tenant_id", "t-1")
	cases := []struct {
		name   string
		cfg    core.Config
		token  string
		code   string
		errSub string
	}{
		{"expired", hsCfg, hs256(t, with(okClaims, "exp", time.Now().Add(-time.Hour).Unix())), "expired", "expired"},
		{"forged signature", hsCfg, sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), okClaims, ""), "signature", "signature"},
		{"alg none", hsCfg, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, okClaims, ""), "algorithm", "none"},
		{"alg confusion", rsCfg, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), okClaims, ""), "algorithm", "HS256"},
		{"wrong issuer", hsCfg, hs256(t, with(okClaims, "iss", "https://evil.test")), "issuer", "issuer"},
		{"wrong audience", hsCfg, hs256(t, with(okClaims, "aud", "other")), "audience", "audience"},
		{"missing subject", hsCfg, hs256(t, with(okClaims, "sub", nil)), "missing_subject", "sub"},
		{"unknown actor type", hsCfg, hs256(t, with(okClaims, "actor_type", "superuser")), "unknown_actor_type", "superuser"},
		{"invalid tenant", hsCfg, hs256(t, with(okClaims, "tenant_id", "t 1; drop")), "invalid_tenant", "invalid tenant: id"},
		{"malformed", hsCfg, "garbage", "malformed", "not three dot-separated segments"},
		{"empty bearer", hsCfg, "", "malformed", "no credentials"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var sawActor bool
			h := newHarness(t, ginaudit.Options{Config: tc.cfg}, func(r *gin.Engine, _ *core.Writer) {
				r.GET("/orders", func(c *gin.Context) {
					a, _ := core.ActorFromContext(c.Request.Context())
					_, hasTenant := core.TenantFromContext(c.Request.Context())
					sawActor = a.ID != "" || hasTenant
					c.String(200, "listed")
				})
			})
			resp, body := h.do("GET", "/orders", nil, "Authorization", bearer(tc.token))
			// The middleware audits; it does not authenticate: the request proceeds.
			if resp.StatusCode != 200 || body != "listed" {
				t.Fatalf("response %d %q", resp.StatusCode, body)
			}
			if sawActor {
				t.Error("the handler saw an actor or tenant from a refused token")
			}
			r := only(t, h.rows())
			if r.ActorID != "" || r.ActorType != "anonymous" || r.ActorAuth != "none" || r.TenantID != "" {
				t.Errorf("actor %q/%q/%q tenant %q: a refused token became an identity", r.ActorID, r.ActorType, r.ActorAuth, r.TenantID)
			}
			if r.Severity != "warning" {
				t.Errorf("severity %q, want warning", r.Severity)
			}
			if msg := fmt.Sprint(r.Metadata["auth_error"]); r.Metadata["auth_failure"] != tc.code ||
				!strings.Contains(msg, tc.errSub) || strings.Contains(msg, core.Redacted) {
				t.Errorf("metadata %v, want failure %q mentioning %q", r.Metadata, tc.code, tc.errSub)
			}
		})
	}
}

// TestTokenCasesOverHTTP sends tokens through a real server with the middleware: refused tokens
// leave the request anonymous with a warning and its reason, accepted ones become the actor, and
// every request proceeds to the handler either way.
func TestTokenCasesOverHTTP(t *testing.T) {
	now := time.Now()
	hsCfg := hsConfig()
	ok := with(claims("u-1"), "iss", "https://idp.test", "aud", "api", "tenant_id", "t-1")
	jwks := newJWKSServer(t, jwkOf("rsa-1", "RS256", &rsaKey().PublicKey))
	jwksVerifier := func(t *testing.T) *ginaudit.Verifier {
		v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: jwks.URL}, nil,
			ginaudit.WithJWKSRefresh(0, time.Hour), ginaudit.WithLogger(discardLogger()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		return v
	}
	renamed := core.Config{ActorTypeAliases: testAliases, JWT: core.JWTConfig{Secret: testSecret,
		Claims: core.ClaimNames{ActorID: "uid", ActorType: "kind", Email: "mail", TenantID: "org"}}}
	cases := []struct {
		name     string
		cfg      core.Config
		verifier func(t *testing.T) *ginaudit.Verifier
		token    string
		// an accepted token: the recorded actor as id/type/email/auth and the tenant
		actor, tenant string
		failure       string // a refused token: auth_failure
	}{
		{name: "nbf in the future", cfg: hsCfg, token: hs256(t, with(ok, "nbf", now.Add(5*time.Minute).Unix())), failure: "not_yet_valid"},
		{name: "iat in the future beyond the leeway", cfg: hsCfg, token: hs256(t, with(ok, "iat", now.Add(5*time.Minute).Unix())), failure: "not_yet_valid"},
		{name: "missing exp", cfg: hsCfg, token: hs256(t, with(ok, "exp", nil)), failure: "claims"},
		{name: "HS384 when only HS256 is allowed", cfg: hsCfg,
			token: sign(t, jwt.SigningMethodHS384, []byte(testSecret+testSecret), with(ok, "actor_type", "platform_admin"), ""), failure: "algorithm"},
		{name: "tampered payload", cfg: hsCfg, token: tamper(t, hs256(t, ok), with(ok, "sub", "admin", "actor_type", "platform_admin")), failure: "signature"},
		{name: "JWKS with an unknown kid", verifier: jwksVerifier,
			token: sign(t, jwt.SigningMethodRS256, rsaKey(), with(ok, "sub", "u-1"), "rsa-9"), failure: "unknown_key"},
		{name: "ES256", cfg: core.Config{JWT: core.JWTConfig{PublicKeyPEM: pemOf(t, &ecKey().PublicKey)}},
			token: sign(t, jwt.SigningMethodES256, ecKey(), with(ok, "email", "u-1@example.com"), ""),
			actor: "u-1/tenant_user/u-1@example.com/jwt:ES256", tenant: "t-1"},
		{name: "EdDSA", cfg: core.Config{JWT: core.JWTConfig{PublicKeyPEM: pemOf(t, edKey().Public())}},
			token: sign(t, jwt.SigningMethodEdDSA, edKey(), with(ok, "actor_type", "service"), ""),
			actor: "u-1/service//jwt:EdDSA", tenant: "t-1"},
		{name: "JWKS with a known kid", verifier: jwksVerifier,
			token: sign(t, jwt.SigningMethodRS256, rsaKey(), ok, "rsa-1"), actor: "u-1/tenant_user//jwks:RS256", tenant: "t-1"},
		{name: "renamed claims", cfg: renamed,
			token: hs256(t, with(claims("not-the-actor"), "uid", "u-77", "kind", "bot", "mail", "bot@example.com",
				"email", "other@example.com", "actor_type", "platform_admin", "org", "t-9", "tenant_id", "t-1")),
			actor: "u-77/service/bot@example.com/jwt:HS256", tenant: "t-9"},
		{name: "renamed claims: the actor id claim is missing", cfg: renamed,
			token: hs256(t, with(claims("sub-only"), "kind", "bot")), failure: "missing_subject"},
		{name: "unsafe: signature not verified", cfg: core.Config{JWT: core.JWTConfig{UnsafeSkipVerification: true, Issuer: "gw"}},
			token: sign(t, jwt.SigningMethodRS256, rsaKey2(), with(claims("u-5"), "iss", "gw", "tenant_id", "t-5"), ""),
			actor: "u-5/tenant_user//unverified", tenant: "t-5"},
		{name: "unsafe: claims still checked", cfg: core.Config{JWT: core.JWTConfig{UnsafeSkipVerification: true, Issuer: "gw"}},
			token:   sign(t, jwt.SigningMethodRS256, rsaKey2(), with(claims("u-5"), "iss", "gw", "exp", now.Add(-time.Hour).Unix()), ""),
			failure: "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := ginaudit.Options{Config: tc.cfg}
			if tc.verifier != nil {
				opts.Verifier = tc.verifier(t)
			}
			var handlerActor string
			h := newHarness(t, opts, func(r *gin.Engine, _ *core.Writer) {
				r.POST("/orders", func(c *gin.Context) {
					a, _ := core.ActorFromContext(c.Request.Context())
					handlerActor = a.ID
					c.String(http.StatusAccepted, "queued")
				})
			})
			resp, body := h.do("POST", "/orders", nil, "Authorization", bearer(tc.token))
			if resp.StatusCode != http.StatusAccepted || body != "queued" {
				t.Fatalf("response %d %q: the request did not proceed to the handler", resp.StatusCode, body)
			}
			r := only(t, h.rows())
			if r.Status != http.StatusAccepted {
				t.Errorf("recorded status %d, want the handler's 202", r.Status)
			}
			got := fmt.Sprintf("%s/%s/%s/%s", r.ActorID, r.ActorType, r.ActorEmail, r.ActorAuth)
			if tc.failure != "" {
				if got != "/anonymous//none" || r.TenantID != "" || handlerActor != "" {
					t.Errorf("refused token became actor %s tenant %q (handler saw %q)", got, r.TenantID, handlerActor)
				}
				if r.Severity != "warning" || r.Metadata["auth_failure"] != tc.failure || r.Metadata["auth_error"] == nil {
					t.Errorf("severity %q metadata %v; want warning and failure %q with its reason", r.Severity, r.Metadata, tc.failure)
				}
				return
			}
			if got != tc.actor || r.TenantID != tc.tenant || r.Severity != "info" || r.Metadata["auth_failure"] != nil {
				t.Errorf("actor %s tenant %q severity %q metadata %v; want %s tenant %q, info", got, r.TenantID, r.Severity, r.Metadata, tc.actor, tc.tenant)
			}
			if want, _, _ := strings.Cut(tc.actor, "/"); handlerActor != want {
				t.Errorf("handler saw actor %q, want %q", handlerActor, want)
			}
		})
	}
}

func TestAliasedActorType(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: hsConfig()}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/x", func(c *gin.Context) { c.Status(204) })
	})
	h.do("GET", "/x", nil, "Authorization", bearer(tenantToken(t, "ops-1", "t-1", "actor_type", "ops")))
	h.do("GET", "/x", nil, "Authorization", bearer(tenantToken(t, "bot-1", "t-1", "actor_type", "bot")))
	rows := h.rows()
	if len(rows) != 2 || rows[0].ActorType != "platform_admin" || rows[1].ActorType != "service" {
		t.Fatalf("rows %+v", rows)
	}
}

func TestSeverityAndStatus(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: hsConfig()}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/status/:code", func(c *gin.Context) {
			var code int
			fmt.Sscan(c.Param("code"), &code)
			if code >= 400 {
				_ = c.Error(fmt.Errorf("failed with %d", code))
			}
			c.String(code, "s")
		})
	})
	tok := tenantToken(t, "u-1", "t-1")
	want := map[int]string{200: "info", 201: "info", 302: "info", 400: "info", 401: "warning", 403: "warning", 404: "info", 500: "error", 503: "error"}
	for code := range want {
		h.do("GET", fmt.Sprintf("/status/%d", code), nil, "Authorization", bearer(tok))
	}
	h.do("GET", "/no/such/route", nil, "Authorization", bearer(tok))
	rows := h.rows()
	if len(rows) != len(want)+1 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Path == "/no/such/route" {
			if r.Status != 404 || r.Route != "" {
				t.Errorf("unknown route recorded as %d %q", r.Status, r.Route)
			}
			continue
		}
		if w := want[r.Status]; r.Severity != w {
			t.Errorf("status %d: severity %q, want %q", r.Status, r.Severity, w)
		}
		if r.Status >= 400 {
			errs, _ := r.Metadata["errors"].([]any)
			if len(errs) != 1 || errs[0] != fmt.Sprintf("failed with %d", r.Status) {
				t.Errorf("status %d: metadata errors %v", r.Status, r.Metadata["errors"])
			}
		}
	}
}

func TestPanicIsRecordedAndPropagates(t *testing.T) {
	for _, order := range []string{"recovery outside", "recovery inside"} {
		t.Run(order, func(t *testing.T) {
			var recovered any
			db := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
				mw := ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}, Logger: discardLogger()})
				rec := gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, err any) {
					recovered = err
					c.AbortWithStatus(500)
				})
				r := gin.New()
				if order == "recovery outside" {
					r.Use(rec, mw)
				} else {
					r.Use(mw, rec)
				}
				r.POST("/boom", func(c *gin.Context) {
					_ = core.Dispatch(c.Request.Context(), nil, &core.Record{Kind: core.KindInsert, ResourceType: "orders", ResourceID: "1"})
					panic("boom")
				})
				return r
			})
			resp, _ := db.do("POST", "/boom", nil)
			if resp.StatusCode != 500 || recovered != "boom" {
				t.Fatalf("status %d, recovered %v: the panic did not reach Recovery", resp.StatusCode, recovered)
			}
			rows := db.rows()
			if len(rows) != 2 {
				t.Fatalf("%d rows: %+v", len(rows), rows)
			}
			httpRow, orm := rows[0], rows[1]
			if httpRow.Status != 500 || httpRow.Severity != "error" {
				t.Errorf("http row status %d severity %q", httpRow.Status, httpRow.Severity)
			}
			if order == "recovery outside" && httpRow.Metadata["panic"] != "boom" {
				t.Errorf("metadata %v, want the panic value", httpRow.Metadata)
			}
			if orm.Kind != "insert" || orm.RequestID != httpRow.RequestID {
				t.Errorf("ORM row %+v not linked to %s", orm, httpRow.RequestID)
			}
		})
	}
}

func TestPanicAfterWritingIsAnError(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: core.Config{LogAnonymous: true}}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/half", func(c *gin.Context) {
			c.String(200, "partial")
			c.Writer.Flush() // the status line and the first bytes are on the wire
			panic("after the status")
		})
	})
	resp, err := h.srv.Client().Get(h.srv.URL + "/half")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body) // the connection is cut after "partial"
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("client got %d, want the 200 written before the panic", resp.StatusCode)
	}
	r := only(t, waitRows(t, h.w, h.db, 1, ""))
	if r.Status != 200 || r.Severity != "error" || r.Metadata["panic"] != "after the status" {
		t.Fatalf("row status %d severity %q metadata %v; want 200, error and the panic", r.Status, r.Severity, r.Metadata)
	}
}

func TestExcludedPathsAndSkippedMethods(t *testing.T) {
	cfg := core.Config{LogAnonymous: true, ExcludePaths: append([]string{"/internal/*"}, core.DefaultExcludePaths...), SkipMethods: []string{"OPTIONS", "HEAD"}}
	h := newHarness(t, ginaudit.Options{Config: cfg}, func(r *gin.Engine, _ *core.Writer) {
		ok := func(c *gin.Context) { c.String(200, "ok") }
		r.GET("/health", ok)
		r.GET("/healthz", ok)
		r.GET("/internal/jobs", ok)
		r.GET("/internalx", ok)
		r.GET("/api", ok)
		r.HEAD("/api", ok)
		r.OPTIONS("/api", ok)
	})
	for _, req := range []struct{ method, path string }{
		{"GET", "/health"}, {"GET", "/internal/jobs"}, {"HEAD", "/api"}, {"OPTIONS", "/api"},
		{"GET", "/healthz"}, {"GET", "/internalx"}, {"GET", "/api"},
	} {
		resp, _ := h.do(req.method, req.path, nil)
		excluded := req.path == "/health" || req.path == "/internal/jobs" || req.method != "GET"
		if got := resp.Header.Get("X-Request-ID") != ""; got == excluded {
			t.Errorf("%s %s: request id header present = %v", req.method, req.path, got)
		}
	}
	var got []string
	for _, r := range h.rows() {
		got = append(got, r.Method+" "+r.Path)
	}
	if strings.Join(got, ",") != "GET /healthz,GET /internalx,GET /api" {
		t.Errorf("recorded %v", got)
	}
}

func TestRequestIDHeader(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: core.Config{LogAnonymous: true}, RequestIDHeader: "x-correlation-id"}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/x", func(c *gin.Context) { c.Status(204) })
	})
	cases := []struct {
		in       string
		kept     bool
		rejected bool
	}{
		{"req-abc.123:xyz/+=@", true, false},
		{strings.Repeat("a", 128), true, false},
		{strings.Repeat("a", 129), false, true},
		{"has space", false, true},
		{"quote\"", false, true},
		{"", false, false},
	}
	var sent []string
	for _, tc := range cases {
		var hdr []string
		if tc.in != "" {
			hdr = []string{"X-Correlation-ID", tc.in}
		}
		resp, _ := h.do("GET", "/x", nil, hdr...)
		out := resp.Header.Get("X-Correlation-Id")
		if tc.kept && out != tc.in || !tc.kept && !uuidPattern.MatchString(out) {
			t.Errorf("incoming %q: echoed %q", tc.in, out)
		}
		sent = append(sent, out)
	}
	rows := h.rows()
	if len(rows) != len(cases) {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		if r.RequestID != sent[i] {
			t.Errorf("row %d request id %q, echoed %q", i, r.RequestID, sent[i])
		}
		if _, has := r.Metadata["request_id_error"]; has != cases[i].rejected {
			t.Errorf("incoming %q: metadata %v", cases[i].in, r.Metadata)
		}
	}
}

func TestClientIPAndTrustedProxies(t *testing.T) {
	cases := []struct {
		name    string
		proxies []string
		xff     []string
		wantIP  string
		remote  string // metadata remote_ip
	}{
		{"no proxies trusted: spoofed header ignored", nil, []string{"1.2.3.4"}, "127.0.0.1", ""},
		{"loopback proxy: nearest untrusted hop", []string{"127.0.0.1"}, []string{"1.2.3.4, 10.0.0.5"}, "10.0.0.5", "127.0.0.1"},
		{"proxy chain trusted", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"1.2.3.4, 10.0.0.5"}, "1.2.3.4", "127.0.0.1"},
		{"several header lines", []string{"127.0.0.1", "10.0.0.0/8"}, []string{"1.2.3.4", "10.0.0.5"}, "1.2.3.4", "127.0.0.1"},
		{"garbage hop falls back to the peer", []string{"127.0.0.1"}, []string{"1.2.3.4, nonsense"}, "127.0.0.1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := core.Config{LogAnonymous: true, TrustedProxies: tc.proxies}
			h := newHarness(t, ginaudit.Options{Config: cfg}, func(r *gin.Engine, _ *core.Writer) {
				if err := ginaudit.TrustProxies(r, cfg); err != nil {
					t.Fatal(err)
				}
				r.GET("/ip", func(c *gin.Context) { c.String(200, c.ClientIP()) })
			})
			var hdr []string
			for _, v := range tc.xff {
				hdr = append(hdr, "X-Forwarded-For", v)
			}
			_, body := h.do("GET", "/ip", nil, hdr...)
			r := only(t, h.rows())
			if r.IP != tc.wantIP {
				t.Errorf("recorded ip %q, want %q", r.IP, tc.wantIP)
			}
			// With TrustProxies, the application's c.ClientIP() agrees with the record.
			if body != tc.wantIP {
				t.Errorf("c.ClientIP() = %q, want %q", body, tc.wantIP)
			}
			if got, _ := r.Metadata["remote_ip"].(string); got != tc.remote {
				t.Errorf("remote_ip %q, want %q", got, tc.remote)
			}
		})
	}
}

func TestTenantSources(t *testing.T) {
	tok := tenantToken(t, "u-1", "from-token")
	noTenantTok := hs256(t, with(claims("u-2"), "iss", "https://idp.test", "aud", "api"))
	cases := []struct {
		name       string
		header     string // Config.TenantHeader
		appSet     any    // c.Set(TenantKey, ...)
		outerCtx   string // core.WithTenant by an outer middleware
		token      string
		sendHeader string
		want       string
		wantError  bool
	}{
		{"token claim", "", nil, "", tok, "", "from-token", false},
		{"header off by default", "", nil, "", noTenantTok, "from-header", "", false},
		{"header when configured", "X-Tenant-ID", nil, "", noTenantTok, "from-header", "from-header", false},
		{"token beats header", "X-Tenant-ID", nil, "", tok, "from-header", "from-token", false},
		{"c.Set beats token", "", "from-app", "", tok, "", "from-app", false},
		{"c.Set with a core.Tenant", "", core.Tenant{ID: "app-id", Slug: "app"}, "", tok, "", "app-id", false},
		{"outer core.WithTenant beats token", "", nil, "from-ctx", tok, "", "from-ctx", false},
		{"invalid header ignored", "X-Tenant-ID", nil, "", noTenantTok, "bad tenant!", "", true},
		{"invalid c.Set ignored", "", strings.Repeat("x", 200), "", noTenantTok, "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hsConfig()
			cfg.TenantHeader = tc.header
			db := newHarnessWith(t, func(w *core.Writer) *gin.Engine {
				r := gin.New()
				if tc.outerCtx != "" {
					r.Use(func(c *gin.Context) {
						c.Request = c.Request.WithContext(core.WithTenant(c.Request.Context(), core.Tenant{ID: tc.outerCtx}))
					})
				}
				r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg, Logger: discardLogger()}))
				if tc.appSet != nil {
					r.Use(func(c *gin.Context) { c.Set(ginaudit.TenantKey, tc.appSet) })
				}
				r.GET("/t", func(c *gin.Context) {
					_ = core.Dispatch(c.Request.Context(), nil, &core.Record{Kind: core.KindUpdate, ResourceType: "x", ResourceID: "1"})
					c.Status(204)
				})
				return r
			})
			hdr := []string{"Authorization", bearer(tc.token)}
			if tc.sendHeader != "" {
				hdr = append(hdr, "X-Tenant-ID", tc.sendHeader)
			}
			db.do("GET", "/t", nil, hdr...)
			rows := db.rows()
			if len(rows) != 2 {
				t.Fatalf("%d rows", len(rows))
			}
			for _, row := range rows {
				if row.TenantID != tc.want {
					t.Errorf("%s row tenant %q, want %q", row.Kind, row.TenantID, tc.want)
				}
			}
			if _, has := rows[0].Metadata["tenant_error"]; has != tc.wantError {
				t.Errorf("metadata %v", rows[0].Metadata)
			}
		})
	}
}

func TestCustomIdentifyAndActorKey(t *testing.T) {
	identify := func(c *gin.Context) (ginaudit.Identity, error) {
		switch key := c.GetHeader("X-Api-Key"); key {
		case "":
			return ginaudit.Identity{}, ginaudit.ErrNoToken
		case "good":
			return ginaudit.Identity{Actor: core.Actor{ID: "svc-1", Type: core.ActorService}, Tenant: core.Tenant{ID: "t-9"}}, nil
		case "odd-type":
			return ginaudit.Identity{Actor: core.Actor{ID: "svc-2", Type: "root"}}, nil
		default:
			return ginaudit.Identity{}, errors.New("unknown api key")
		}
	}
	h := newHarness(t, ginaudit.Options{Identify: identify}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/x", func(c *gin.Context) { c.Status(200) })
		r.GET("/session", func(c *gin.Context) {
			c.Set(ginaudit.ActorKey, core.Actor{ID: "sess-user", Type: core.ActorTenantUser})
			c.Status(200)
		})
	})
	h.do("GET", "/x", nil, "X-Api-Key", "good")
	h.do("GET", "/x", nil, "X-Api-Key", "bad")
	h.do("GET", "/x", nil, "X-Api-Key", "odd-type")
	h.do("GET", "/x", nil) // no credentials, not recorded
	h.do("GET", "/session", nil)
	rows := h.rows()
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	got := func(r row) string {
		return fmt.Sprintf("%s/%s/%s/%s/%s/%v", r.ActorID, r.ActorType, r.ActorAuth, r.TenantID, r.Severity, r.Metadata["auth_failure"])
	}
	want := []string{
		"svc-1/service/custom/t-9/info/<nil>",
		"/anonymous/none//warning/identify",
		"svc-2/anonymous/custom//warning/<nil>",
		"sess-user/tenant_user/context//info/<nil>",
	}
	for i, r := range rows {
		if got(r) != want[i] {
			t.Errorf("row %d = %s, want %s", i, got(r), want[i])
		}
	}
	if rows[2].Metadata["actor_error"] == nil {
		t.Errorf("invalid actor type not noted: %v", rows[2].Metadata)
	}
}

func TestORMRecordsJoinTheRequest(t *testing.T) {
	release := make(chan struct{})
	lateDone := make(chan struct{})
	h := newHarness(t, ginaudit.Options{Config: hsConfig()}, func(r *gin.Engine, w *core.Writer) {
		r.POST("/customers", func(c *gin.Context) {
			ctx := c.Request.Context()
			_ = core.Dispatch(ctx, w, &core.Record{Kind: core.KindInsert, ResourceType: "customers", ResourceID: "c-1",
				After: map[string]any{"name": "Ada", "password": "x"}})
			_ = core.Dispatch(ctx, w, &core.Record{Kind: core.KindUpdate, ResourceType: "accounts", ResourceID: "a-1",
				Actor: core.Actor{ID: "system-job", Type: core.ActorSystem}}) // keeps its own actor
			go func() { // work that outlives the request
				<-release
				_ = core.Dispatch(ctx, w, &core.Record{Kind: core.KindInsert, ResourceType: "emails", ResourceID: "e-1"})
				close(lateDone)
			}()
			c.JSON(201, gin.H{"id": "c-1"})
		})
		r.POST("/signup", func(c *gin.Context) {
			_ = core.Dispatch(c.Request.Context(), w, &core.Record{Kind: core.KindInsert, ResourceType: "users", ResourceID: "u-new"})
			c.Status(201)
		})
	})
	resp, _ := h.do("POST", "/customers", nil, "Authorization", bearer(tenantToken(t, "u-1", "t-1")))
	close(release)
	<-lateDone
	h.do("POST", "/signup", nil) // anonymous, but it changed data: recorded with its change
	reqID := resp.Header.Get("X-Request-ID")

	rows := h.rows()
	if len(rows) != 6 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	byRes := map[string]row{}
	for _, r := range rows {
		byRes[r.Kind+":"+r.ResourceType+":"+r.Path] = r
	}
	httpRow := byRes["http::/customers"]
	for _, key := range []string{"insert:customers:", "update:accounts:", "insert:emails:"} {
		r, ok := byRes[key]
		if !ok {
			t.Fatalf("no %s row in %+v", key, rows)
		}
		if r.RequestID != reqID || r.TenantID != "t-1" || r.IP != httpRow.IP || r.IP == "" {
			t.Errorf("%s: request %q tenant %q ip %q; want %q t-1 %q", key, r.RequestID, r.TenantID, r.IP, reqID, httpRow.IP)
		}
		wantActor := "u-1"
		if key == "update:accounts:" {
			wantActor = "system-job"
		}
		if r.ActorID != wantActor {
			t.Errorf("%s: actor %q, want %q", key, r.ActorID, wantActor)
		}
	}
	signup, ok := byRes["http::/signup"]
	if !ok || signup.ActorType != "anonymous" {
		t.Errorf("anonymous request with a change not recorded: %+v", rows)
	}
	if u := byRes["insert:users:"]; u.RequestID != signup.RequestID || u.RequestID == "" {
		t.Errorf("signup change not linked: %+v", u)
	}
}

func TestConcurrentRequests(t *testing.T) {
	h := newHarness(t, ginaudit.Options{Config: hsConfig()}, func(r *gin.Engine, w *core.Writer) {
		r.PUT("/items/:id", func(c *gin.Context) {
			_ = core.Dispatch(c.Request.Context(), w, &core.Record{Kind: core.KindUpdate, ResourceType: "items", ResourceID: c.Param("id")})
			c.Status(200)
		})
	})
	const workers, perWorker = 8, 25
	tokens := make([]string, workers)
	for i := range tokens {
		tokens[i] = tenantToken(t, fmt.Sprintf("user-%d", i), fmt.Sprintf("tenant-%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perWorker; j++ {
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/items/%d-%d", h.srv.URL, w, j), nil)
				req.Header.Set("Authorization", bearer(tokens[w]))
				resp, err := h.srv.Client().Do(req)
				if err != nil {
					errs <- err
					continue
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rows := h.rows()
	if len(rows) != 2*workers*perWorker {
		t.Fatalf("%d rows, want %d", len(rows), 2*workers*perWorker)
	}
	httpByID := map[string]row{}
	for _, r := range rows {
		if r.Kind == "http" {
			if _, dup := httpByID[r.RequestID]; dup {
				t.Fatalf("request id %s used twice", r.RequestID)
			}
			httpByID[r.RequestID] = r
		}
	}
	for _, r := range rows {
		if r.Kind != "update" {
			continue
		}
		hr, ok := httpByID[r.RequestID]
		if !ok {
			t.Fatalf("update %s has no http row", r.ResourceID)
		}
		// Each change carries the identity of its own request, never another one's.
		var w, j int
		fmt.Sscanf(r.ResourceID, "%d-%d", &w, &j)
		if hr.Path != "/items/"+r.ResourceID || r.ActorID != fmt.Sprintf("user-%d", w) || r.TenantID != fmt.Sprintf("tenant-%d", w) || hr.ActorID != r.ActorID {
			t.Errorf("update %s: actor %s tenant %s, http row %s %s", r.ResourceID, r.ActorID, r.TenantID, hr.Path, hr.ActorID)
		}
	}
}

func TestJWKSMiddleware(t *testing.T) {
	srv := newJWKSServer(t, jwkOf("rsa-1", "RS256", &rsaKey().PublicKey))
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: srv.URL, Audience: []string{"api"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	h := newHarness(t, ginaudit.Options{Verifier: v}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/x", func(c *gin.Context) { c.Status(200) })
	})
	good := sign(t, jwt.SigningMethodRS256, rsaKey(), with(claims("u-1"), "aud", "api", "iss", "https://idp-a.test"), "rsa-1")
	forged := sign(t, jwt.SigningMethodRS256, rsaKey2(), with(claims("admin"), "aud", "api"), "rsa-1")
	h.do("GET", "/x", nil, "Authorization", bearer(good))
	h.do("GET", "/x", nil, "Authorization", bearer(forged))
	rows := h.rows()
	if len(rows) != 2 || rows[0].ActorAuth != "jwks:RS256" || rows[0].ActorID != "u-1" ||
		rows[1].ActorID != "" || rows[1].Metadata["auth_failure"] != "signature" || rows[0].Metadata["jwt_kid"] != "rsa-1" ||
		rows[0].Metadata["jwt_iss"] != "https://idp-a.test" {
		t.Fatalf("rows %+v", rows)
	}
}

func TestInvalidJWTConfigFailsClosed(t *testing.T) {
	cfg := core.Config{JWT: core.JWTConfig{Secret: "too-short"}}
	h := newHarness(t, ginaudit.Options{Config: cfg}, func(r *gin.Engine, _ *core.Writer) {
		r.GET("/x", func(c *gin.Context) { c.Status(200) })
	})
	// Even a token signed with the configured secret is not believed.
	tok := sign(t, jwt.SigningMethodHS256, []byte("too-short"), claims("u-1"), "")
	resp, _ := h.do("GET", "/x", nil, "Authorization", bearer(tok))
	r := only(t, h.rows())
	if resp.StatusCode != 200 || r.ActorID != "" || r.Metadata["auth_failure"] != "verifier" {
		t.Fatalf("status %d row %+v", resp.StatusCode, r)
	}
}

func TestNilWriter(t *testing.T) {
	r := gin.New()
	r.Use(ginaudit.Middleware(ginaudit.Options{Logger: discardLogger()}))
	r.GET("/x", func(c *gin.Context) {
		_ = core.Dispatch(c.Request.Context(), nil, &core.Record{Kind: core.KindInsert})
		c.String(200, "ok")
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
}
