package ginaudit_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// viewerKey is the viewer-token key of the tests: the same bytes as the API's JWT secret, so
// that the tests show that one kind of token is never taken for the other even then.
var viewerKey = []byte(apiSecret)

func viewerEnv(t *testing.T) (*apiEnv, *ginaudit.ViewerTokens) {
	t.Helper()
	vt, err := ginaudit.NewViewerTokens(viewerKey)
	if err != nil {
		t.Fatal(err)
	}
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.ViewerTokens = vt; o.ViewerPath = "/viewer" })
	return e, vt
}

func viewerMint(t *testing.T, vt *ginaudit.ViewerTokens, tenant string, ttl time.Duration, scopes ...ginaudit.ViewerScope) string {
	t.Helper()
	tok, err := vt.MintViewerToken(tenant, "customer-7", ttl, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// viewerForge signs a header and claims set the way viewer tokens are signed (the key derived
// from viewerKey), or with signKey itself when it is set.
func viewerForge(t *testing.T, header, claims map[string]any, signKey []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	key := signKey
	if key == nil {
		m := hmac.New(sha256.New, viewerKey)
		m.Write([]byte("auditkit viewer token v1"))
		key = m.Sum(nil)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

func viewerClaims(mutate func(map[string]any)) map[string]any {
	now := time.Now().Unix()
	c := map[string]any{"iss": "auditkit", "aud": "auditkit-viewer", "sub": "customer-7", "tid": "acme",
		"scope": "logs:read", "iat": now, "exp": now + 600, "jti": "x"}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func TestViewerTokensMintAndVerify(t *testing.T) {
	vt, err := ginaudit.NewViewerTokens(viewerKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := vt.MintViewerToken("acme", "customer-7", 10*time.Minute, ginaudit.ViewerScopeExport, ginaudit.ViewerScopeRead, ginaudit.ViewerScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if !ginaudit.IsViewerToken(tok) {
		t.Fatal("a minted token is not recognised as a viewer token")
	}
	got, err := vt.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tenant != "acme" || got.Actor != "customer-7" || len(got.Scopes) != 2 || !got.Allows(ginaudit.ViewerScopeExport) ||
		got.Allows(ginaudit.ViewerScopeStream) || got.ExpiresAt.Sub(got.IssuedAt) != 10*time.Minute || got.ID == "" {
		t.Fatalf("verified %+v", got)
	}
	// Default scope: read alone.
	got, err = vt.Verify(viewerMint(t, vt, "acme", time.Minute))
	if err != nil || len(got.Scopes) != 1 || got.Scopes[0] != ginaudit.ViewerScopeRead {
		t.Fatalf("default scopes %v, %v", got.Scopes, err)
	}

	for name, f := range map[string]func() error{
		"short key": func() error { _, err := ginaudit.NewViewerTokens(viewerKey[:31]); return err },
		"limit too long": func() error {
			_, err := ginaudit.NewViewerTokens(viewerKey, ginaudit.WithViewerMaxTTL(25*time.Hour))
			return err
		},
		"ttl over limit": func() error { _, err := vt.MintViewerToken("acme", "c", 61*time.Minute); return err },
		"zero ttl":       func() error { _, err := vt.MintViewerToken("acme", "c", 0); return err },
		"unknown scope":  func() error { _, err := vt.MintViewerToken("acme", "c", time.Minute, "logs:write"); return err },
		"admin scope":    func() error { _, err := vt.MintViewerToken("acme", "c", time.Minute, "admin"); return err },
		"no tenant":      func() error { _, err := vt.MintViewerToken("", "c", time.Minute); return err },
		"bad tenant":     func() error { _, err := vt.MintViewerToken("a b", "c", time.Minute); return err },
		"no actor":       func() error { _, err := vt.MintViewerToken("acme", "", time.Minute); return err },
		"control actor":  func() error { _, err := vt.MintViewerToken("acme", "a\nb", time.Minute); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	other, _ := ginaudit.NewViewerTokens([]byte("another-key-0123456789abcdef-0123456"))
	apiJWT := apiToken(t, "user-a", core.ActorTenantUser, "acme")
	refused := map[string]string{
		"other key": viewerMint(t, other, "acme", time.Minute),
		"tampered":  tok[:len(tok)-2] + "AA",
		"API token": apiJWT,
		"raw key":   viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(nil), viewerKey),
		"expired": viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) {
			c["iat"] = time.Now().Add(-40 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-5 * time.Minute).Unix()
		}), nil),
		"lifetime over cap": viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["exp"] = time.Now().Add(2 * time.Hour).Unix() }), nil),
		"future iat":        viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["iat"] = time.Now().Add(10 * time.Minute).Unix() }), nil),
		"API audience":      viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["aud"] = "api" }), nil),
		"typ JWT":           viewerForge(t, map[string]any{"alg": "HS256", "typ": "JWT"}, viewerClaims(nil), nil),
		"alg none":          viewerForge(t, map[string]any{"alg": "none", "typ": ginaudit.ViewerTokenType}, viewerClaims(nil), nil),
		"extra header":      viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType, "kid": "k"}, viewerClaims(nil), nil),
		"unknown claim":     viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["admin"] = true }), nil),
		"unknown scope":     viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["scope"] = "logs:read logs:write" }), nil),
		"no scope":          viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["scope"] = "" }), nil),
		"bad tenant":        viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(func(c map[string]any) { c["tid"] = "" }), nil),
		"two segments":      strings.Join(strings.Split(tok, ".")[:2], "."),
	}
	for name, raw := range refused {
		if _, err := vt.Verify(raw); !errors.Is(err, ginaudit.ErrViewerToken) {
			t.Errorf("%s: Verify = %v, want ErrViewerToken", name, err)
		}
	}
	// The forging helper itself is right: the same claims with a sound header verify.
	if _, err := vt.Verify(viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(nil), nil)); err != nil {
		t.Fatalf("a well-formed token signed like a viewer token: %v", err)
	}
	// Nor does the API's Verifier take a viewer token, though its secret is the viewer key.
	v, err := ginaudit.NewVerifier(t.Context(), core.JWTConfig{Secret: apiSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), tok); err == nil {
		t.Fatal("the API's Verifier accepts a viewer token")
	}
}

// A viewer token reads its tenant's records through the routes its scopes open, and nothing
// else: not another tenant (by parameter or by record id), not writes, not administration, not
// minting, not a scope it lacks.
func TestViewerTokenScope(t *testing.T) {
	e, vt := viewerEnv(t)
	e.registerTenants("acme", "globex")
	mine := &core.Record{Kind: core.KindCustom, Action: "invoice.paid", Tenant: core.Tenant{ID: "acme"}}
	theirs := &core.Record{Kind: core.KindCustom, Action: "secret.globex", Tenant: core.Tenant{ID: "globex"}}
	e.write(mine, theirs)
	read := viewerMint(t, vt, "acme", 5*time.Minute)
	all := viewerMint(t, vt, "acme", 5*time.Minute, ginaudit.ViewerScopes...)

	r := e.do(http.MethodGet, "/logs", read, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "invoice.paid") || strings.Contains(string(r.body), "secret.globex") {
		t.Fatalf("GET /logs with a viewer token: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/logs/"+mine.ID.String(), read, nil); r.status != http.StatusOK {
		t.Fatalf("own record: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/logs/stats", read, nil); r.status != http.StatusOK {
		t.Fatalf("stats: %d %s", r.status, r.body)
	}
	cases := []struct {
		method, path, token string
		body                string
		status              int
		code                string
	}{
		{"GET", "/resources/customers/cus-1/history", read, "", 200, ""},
		{"GET", "/resources/customers/cus-1/history?tenant_id=globex", read, "", 403, "forbidden"},
		{"GET", "/tenants/acme/retention", all, "", 403, "insufficient_scope"},
		{"GET", "/logs?tenant_id=globex", all, "", 403, "forbidden"},
		{"GET", "/logs/" + theirs.ID.String(), all, "", 404, "not_found"},
		{"GET", "/logs/" + theirs.ID.String() + "?tenant_id=globex", all, "", 403, "forbidden"},
		{"GET", "/logs/export?format=csv&tenant_id=globex", all, "", 403, "forbidden"},
		{"GET", "/logs/export?format=csv", read, "", 403, "insufficient_scope"},
		{"GET", "/logs/verify", read, "", 403, "insufficient_scope"},
		{"GET", "/chain/checkpoints", read, "", 403, "insufficient_scope"},
		{"POST", "/logs", all, `{"action":"forged"}`, 403, "insufficient_scope"},
		{"POST", "/logs/bulk", all, `{"logs":[{"action":"forged"}]}`, 403, "insufficient_scope"},
		{"DELETE", "/logs/cleanup?tenant_id=acme&older_than=30d", all, "", 403, "insufficient_scope"},
		{"POST", "/subjects/erase", all, `{"subject":"actor:x"}`, 403, "insufficient_scope"},
		{"GET", "/tenants", all, "", 403, "insufficient_scope"},
		{"GET", "/tenants/acme", all, "", 403, "insufficient_scope"},
		{"PATCH", "/tenants/acme", all, `{"name":"x"}`, 403, "insufficient_scope"},
		{"POST", "/viewer/tokens", all, `{"actor":"x","scopes":["logs:read"]}`, 403, "insufficient_scope"},
	}
	for _, c := range cases {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		r := e.do(c.method, c.path, c.token, body)
		if r.status != c.status || r.errCode() != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.status, r.errCode(), c.status, c.code)
		}
	}
	if r := e.doStream("/logs/stream", read); r.status != 403 || r.errCode() != "insufficient_scope" {
		t.Errorf("stream without logs:stream: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/logs/export?format=ndjson", "/logs/verify", "/chain/checkpoints"} {
		if r := e.do(http.MethodGet, p, all, nil); r.status != http.StatusOK {
			t.Errorf("%s with every scope: %d %s", p, r.status, r.body)
		} else if strings.Contains(string(r.body), "secret.globex") {
			t.Errorf("%s shows another tenant's record", p)
		}
	}
	// Nothing was written by the refused writes.
	if n := e.count("action = 'forged'"); n != 0 {
		t.Fatalf("%d records written with a viewer token", n)
	}
	// The viewer's use is recorded with the viewer as actor, in its tenant.
	e.flush()
	if n := e.count("action = 'auditlog.search' AND tenant_id = 'acme' AND actor_id = 'customer-7' AND actor_auth = 'viewer:HS256'"); n == 0 {
		t.Fatal("the viewer's search is not recorded with the viewer as actor")
	}
}

// The stream follows new records of the viewer's tenant alone and ends when the token expires.
func TestViewerTokenStream(t *testing.T) {
	e, vt := viewerEnv(t)
	tok := viewerMint(t, vt, "acme", 3*time.Second, ginaudit.ViewerScopeStream)
	s := e.openSSE(tok, url.Values{})
	defer s.close()
	e.write(&core.Record{Kind: core.KindCustom, Action: "other.tenant", Tenant: core.Tenant{ID: "globex"}},
		&core.Record{Kind: core.KindCustom, Action: "live.one", Tenant: core.Tenant{ID: "acme"}})
	ev := s.next(t)
	if ev.name != "log" || !strings.Contains(ev.data, "live.one") {
		t.Fatalf("first event %+v", ev)
	}
	ev = s.nextAny(t)
	if ev.name != "error" || !strings.Contains(ev.data, "token_expired") {
		t.Fatalf("after expiry: %+v", ev)
	}
}

// API tokens and viewer tokens are never confused: a token of either kind dressed as the other
// is refused, and a service without ViewerTokens refuses viewer tokens.
func TestViewerTokenNotConfusedWithAPIToken(t *testing.T) {
	e, vt := viewerEnv(t)
	// An API JWT claiming the viewer type, signed with the API's secret.
	claims := jwt.MapClaims{"sub": "user-a", "tenant_id": "acme", "exp": time.Now().Add(time.Hour).Unix()}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["typ"] = ginaudit.ViewerTokenType
	dressed, err := tok.SignedString([]byte(apiSecret))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodGet, "/logs", dressed, nil); r.status != http.StatusUnauthorized || r.errCode() != "invalid_token" {
		t.Fatalf("an API token dressed as a viewer token: %d %s", r.status, r.body)
	}
	// A viewer token signed with the raw key, which the API's Verifier would check.
	raw := viewerForge(t, map[string]any{"alg": "HS256", "typ": ginaudit.ViewerTokenType}, viewerClaims(nil), viewerKey)
	if r := e.do(http.MethodGet, "/logs", raw, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("a viewer token signed with the raw key: %d %s", r.status, r.body)
	}
	// A service that does not accept viewer tokens.
	plain := apiNewEnv(t, nil)
	if r := plain.do(http.MethodGet, "/logs", viewerMint(t, vt, "acme", time.Minute), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("a service without ViewerTokens: %d %s", r.status, r.body)
	}
}

func TestViewerTokenMintRoute(t *testing.T) {
	e, vt := viewerEnv(t)
	user := apiToken(t, "app-backend", core.ActorService, "acme")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	r := e.do(http.MethodPost, "/viewer/tokens", user, []byte(`{"actor":"customer-9","ttl_seconds":120,"scopes":["logs:read","logs:export"]}`))
	if r.status != http.StatusCreated || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	var out struct {
		Token     string    `json:"token"`
		Tenant    string    `json:"tenant_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	r.decode(t, &out)
	got, err := vt.Verify(out.Token)
	if err != nil || got.Tenant != "acme" || got.Actor != "customer-9" || len(got.Scopes) != 2 || time.Until(got.ExpiresAt) > 2*time.Minute {
		t.Fatalf("minted %+v %v", got, err)
	}
	if r := e.do(http.MethodGet, "/logs/export?format=csv", out.Token, nil); r.status != http.StatusOK {
		t.Fatalf("the minted token: %d %s", r.status, r.body)
	}
	e.flush()
	if n := e.count("action = 'auditlog.viewer_token' AND tenant_id = 'acme' AND actor_id = 'app-backend' AND metadata->>'viewer' = 'customer-9'"); n != 1 {
		t.Fatalf("%d records of the minting", n)
	}
	if r := e.do(http.MethodPost, "/viewer/tokens?tenant_id=globex", admin, []byte(`{"actor":"auditor"}`)); r.status != http.StatusCreated {
		t.Fatalf("an administrator naming a tenant: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		token, query, body string
		status             int
		code               string
	}{
		{admin, "", `{"actor":"auditor"}`, 400, "invalid_parameter"},
		{user, "?tenant_id=globex", `{"actor":"c"}`, 403, "forbidden"},
		{user, "", `{"actor":"c","ttl_seconds":3601}`, 400, "invalid_body"},
		{user, "", `{"actor":"c","ttl_seconds":-1}`, 400, "invalid_body"},
		{user, "", `{"actor":"c","scopes":["logs:write"]}`, 400, "invalid_body"},
		{user, "", `{"actor":"c","tenant":"globex"}`, 400, "invalid_body"},
		{user, "", `{"actor":""}`, 400, "invalid_body"},
		{user, "", `{"actor":"c"} {}`, 400, "invalid_body"},
		{user, "?bogus=1", `{"actor":"c"}`, 400, "unknown_parameter"},
	} {
		r := e.do(http.MethodPost, "/viewer/tokens"+c.query, c.token, []byte(c.body))
		if r.status != c.status || r.errCode() != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.query, c.body, r.status, r.body, c.status, c.code)
		}
	}
	plain := apiNewEnv(t, nil)
	if r := plain.do(http.MethodPost, "/viewer/tokens", user, []byte(`{"actor":"c"}`)); r.status != 404 || r.errCode() != "viewer_tokens_disabled" {
		t.Fatalf("without ViewerTokens: %d %s", r.status, r.body)
	}
}

func TestViewerPage(t *testing.T) {
	e, _ := viewerEnv(t)
	r := e.do(http.MethodGet, "/viewer/", "", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `<meta name="auditkit-api" content="/api/v1">`) ||
		!strings.Contains(string(r.body), `src="/api/v1/viewer/viewer.js"`) {
		t.Fatalf("page: %d %s", r.status, r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	for name, ct := range map[string]string{"viewer.js": "text/javascript", "api.js": "text/javascript", "record.js": "text/javascript", "viewer.css": "text/css"} {
		r := e.do(http.MethodGet, "/viewer/"+name, "", nil)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), ct) || len(r.body) < 100 {
			t.Errorf("%s: %d %s", name, r.status, r.header.Get("Content-Type"))
		}
	}
	for _, p := range []string{"/viewer/nothing.js", "/viewer/sub/viewer.js", "/viewer/index"} {
		if r := e.do(http.MethodGet, p, "", nil); r.status != http.StatusNotFound {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(e.base + "/viewer")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/api/v1/viewer/" {
		t.Fatalf("/viewer: %d %s", res.StatusCode, res.Header.Get("Location"))
	}

	for _, bad := range []string{"viewer", "/", "/logs", "/tenants/ui", "/a b", "/x/"} {
		g := gin.New()
		err := ginaudit.MountAPI(g.Group("/api"), e.st, ginaudit.APIOptions{Verifier: apiVerifier(t), Writer: e.w, ViewerPath: bad})
		if err == nil {
			t.Errorf("ViewerPath %q accepted", bad)
		}
	}
	h, err := ginaudit.ViewerIndex("/api/v1", "/viewer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ginaudit.ViewerIndex("/api/v1", "/logs"); err == nil {
		t.Fatal("ViewerIndex accepts a path of the API")
	}
	if _, err := ginaudit.ViewerIndex("api", "/viewer"); err == nil {
		t.Fatal("ViewerIndex accepts a base that is not a path")
	}
	g := gin.New()
	g.GET("/", gin.WrapH(h))
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `src="/api/v1/viewer/viewer.js"`) {
		t.Fatalf("ViewerIndex: %d %s", rec.Code, rec.Body)
	}
}

// Behind Middleware with ViewerTokens.Identify, a viewer's requests are recorded with the viewer
// as actor, not as failed authentications, and API tokens are identified as before.
func TestViewerTokensIdentify(t *testing.T) {
	e := apiNewEnv(t, nil)
	vt, err := ginaudit.NewViewerTokens(viewerKey)
	if err != nil {
		t.Fatal(err)
	}
	v := apiVerifier(t)
	r := gin.New()
	api := r.Group("/api/v1")
	api.Use(ginaudit.Middleware(ginaudit.Options{Writer: e.w, Verifier: v, Identify: vt.Identify(v)}))
	if err := ginaudit.MountAPI(api, e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, RateLimit: -1, ViewerTokens: vt}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	audited := *e
	audited.srv, audited.base = srv, srv.URL+"/api/v1"
	viewer := viewerMint(t, vt, "acme", time.Minute)
	for i, tok := range []string{viewer, apiToken(t, "user-a", core.ActorTenantUser, "acme")} {
		if r := audited.do(http.MethodGet, "/logs", tok, nil, "X-Request-ID", "identify-"+string(rune('a'+i))); r.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	poll(t, "the http records", func() bool { e.flush(); return e.count("kind = 'http' AND request_id LIKE 'identify-%'") == 2 })
	for id, where := range map[string]string{
		"identify-a": "actor_id = 'customer-7' AND actor_auth = 'viewer:HS256' AND tenant_id = 'acme' AND NOT coalesce(metadata ? 'auth_failure', false)",
		"identify-b": "actor_id = 'user-a' AND actor_auth = 'jwt:HS256' AND tenant_id = 'acme' AND NOT coalesce(metadata ? 'auth_failure', false)",
	} {
		if n := e.count("kind = 'http' AND request_id = $1 AND "+where, id); n != 1 {
			t.Errorf("%s: the http record does not match %s", id, where)
		}
	}
}
