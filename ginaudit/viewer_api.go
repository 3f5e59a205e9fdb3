package ginaudit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// viewerTokenKey holds, in the gin context, the ViewerToken of a request authenticated by one.
const viewerTokenKey = "ginaudit.viewerToken"

// viewerBases holds the router group path of each mounted API (*apiServer to string), so that
// routes are matched exactly, never by a suffix that a later route could share.
var viewerBases sync.Map

// viewerRoutes are the routes (relative to the group) a viewer token may use, with the scope each
// needs; only GET routes are listed.
var viewerRoutes = map[string]ViewerScope{
	"/logs":                        ViewerScopeRead,
	"/logs/:id":                    ViewerScopeRead,
	"/logs/stats":                  ViewerScopeRead,
	"/resources/:type/:id/history": ViewerScopeRead,
	"/logs/export":                 ViewerScopeExport,
	"/logs/stream":                 ViewerScopeStream,
	"/logs/verify":                 ViewerScopeVerify,
	"/chain/checkpoints":           ViewerScopeVerify,
	"/chain/public-key":            ViewerScopeVerify,
}

// viewerRouteScope returns the scope a viewer token needs for a route (method and the route's
// full path under the group base), or "" when no viewer token may use it: writes, cleanup,
// erasure, the tenant registry, token minting and any route not listed are never open to one.
func viewerRouteScope(method, base, fullPath string) ViewerScope {
	rel, ok := strings.CutPrefix(fullPath, base)
	if method != http.MethodGet || !ok {
		return ""
	}
	return viewerRoutes[rel]
}

// verifyBearer authenticates raw: a viewer token (IsViewerToken) with APIOptions.ViewerTokens,
// and only with it, for the routes its scopes open; any other token with the Verifier. On
// refusal it answers the request and returns false.
func (a *apiServer) verifyBearer(c *gin.Context, raw string) (Identity, bool) {
	if !IsViewerToken(raw) {
		id, err := a.opts.Verifier.Verify(c.Request.Context(), raw)
		if err != nil {
			c.Header("WWW-Authenticate", `Bearer realm="audit-log", error="invalid_token"`)
			apiFail(c, http.StatusUnauthorized, "invalid_token", "the bearer token was refused: "+err.Error())
			return Identity{}, false
		}
		return id, true
	}
	if a.opts.ViewerTokens == nil {
		c.Header("WWW-Authenticate", `Bearer realm="audit-log", error="invalid_token"`)
		apiFail(c, http.StatusUnauthorized, "invalid_token", "this service does not accept viewer tokens")
		return Identity{}, false
	}
	t, err := a.opts.ViewerTokens.Verify(raw)
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="audit-log", error="invalid_token"`)
		apiFail(c, http.StatusUnauthorized, "invalid_token", "the viewer token was refused: "+err.Error())
		return Identity{}, false
	}
	base, _ := viewerBases.Load(a)
	baseStr, _ := base.(string)
	need := viewerRouteScope(c.Request.Method, baseStr, c.FullPath())
	switch {
	case need == "":
		c.Header("WWW-Authenticate", `Bearer realm="audit-log", error="insufficient_scope"`)
		apiFail(c, http.StatusForbidden, "insufficient_scope", "viewer tokens are read-only: they cannot use this route")
		return Identity{}, false
	case !t.Allows(need):
		c.Header("WWW-Authenticate", `Bearer realm="audit-log", error="insufficient_scope", scope="`+string(need)+`"`)
		apiFail(c, http.StatusForbidden, "insufficient_scope", "the viewer token lacks the scope "+string(need))
		return Identity{}, false
	}
	c.Set(viewerTokenKey, t)
	return viewerIdentity(t), true
}

// Identify returns, for Options.Identify of the Middleware in front of an API that accepts viewer
// tokens, the identity of a request's bearer token: a viewer token's (a tenant user of its
// tenant, recorded with actor_auth "viewer:HS256") or, for any other token, verifier's. Without
// it the Middleware, which knows only verifier's tokens, would record each request made with a
// viewer token as a failed authentication. A request without a token gives ErrNoToken
// (anonymous). Like the API, it takes the token from the access_token parameter only on the
// stream route.
//
//	mw := ginaudit.Middleware(ginaudit.Options{Writer: w, Verifier: v, Identify: vt.Identify(v)})
func (v *ViewerTokens) Identify(verifier *Verifier) func(c *gin.Context) (Identity, error) {
	return func(c *gin.Context) (Identity, error) {
		_, inQuery := c.Request.URL.Query()[apiParamAccessToken]
		if len(c.Request.Header.Values("Authorization")) == 0 && !inQuery {
			return Identity{}, ErrNoToken
		}
		raw, err := apiBearer(c)
		if err != nil {
			return Identity{}, err
		}
		if IsViewerToken(raw) {
			t, err := v.Verify(raw)
			if err != nil {
				return Identity{}, err
			}
			return viewerIdentity(t), nil
		}
		if verifier == nil {
			return Identity{}, errors.New("ginaudit: no Verifier for tokens other than viewer tokens")
		}
		return verifier.Verify(c.Request.Context(), raw)
	}
}

// viewerMintRequest is the body of POST /viewer/tokens.
type viewerMintRequest struct {
	Actor      string        `json:"actor"`
	TTLSeconds int64         `json:"ttl_seconds"`
	Scopes     []ViewerScope `json:"scopes"`
}

// mintViewerToken serves POST /viewer/tokens: a caller of a tenant (or a platform administrator
// naming one with tenant_id) mints a viewer token for that tenant, to hand to a customer.
func (a *apiServer) mintViewerToken(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, apiTenantParam)
	if !ok {
		return
	}
	if p.admin && !v.Has(apiParamTenant) {
		apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "name the tenant the token reads with tenant_id; a viewer token reads one tenant")
		return
	}
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	if a.opts.ViewerTokens == nil {
		apiFail(c, http.StatusNotFound, "viewer_tokens_disabled", "this service mints no viewer tokens (APIOptions.ViewerTokens is not configured)")
		return
	}
	body, ok := a.readJSON(c)
	if !ok {
		return
	}
	var req viewerMintRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		msg := "the body is not a JSON object with actor, ttl_seconds and scopes"
		if err != nil {
			msg += ": " + err.Error()
		}
		apiFail(c, http.StatusBadRequest, "invalid_body", msg)
		return
	}
	maxTTL := a.opts.ViewerTokens.MaxTTL()
	ttl := time.Duration(req.TTLSeconds) * time.Second
	switch {
	case req.TTLSeconds == 0:
		ttl = min(15*time.Minute, maxTTL)
	case req.TTLSeconds < 0 || req.TTLSeconds > int64(maxTTL/time.Second):
		apiFail(c, http.StatusBadRequest, "invalid_body", fmt.Sprintf("ttl_seconds must lie between 1 and %d", int64(maxTTL/time.Second)))
		return
	}
	tok, err := a.opts.ViewerTokens.MintViewerToken(sc.TenantID, req.Actor, ttl, req.Scopes...)
	if err != nil {
		apiFail(c, http.StatusBadRequest, "invalid_body", strings.TrimPrefix(err.Error(), "ginaudit: viewer token: "))
		return
	}
	t, err := a.opts.ViewerTokens.Verify(tok)
	if err != nil {
		a.fail(c, errors.Join(errors.New("a freshly minted viewer token does not verify"), err))
		return
	}
	a.audit(c, p, core.Entry{Action: "auditlog.viewer_token", Tenant: core.Tenant{ID: sc.TenantID}, ResourceType: store.ResourceAuditLogs,
		Metadata: map[string]any{"viewer": t.Actor, "scopes": viewerJoinScopes(t.Scopes), "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339), "token_id": t.ID}})
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, gin.H{"token": tok, "tenant_id": t.Tenant, "actor": t.Actor, "scopes": t.Scopes, "expires_at": t.ExpiresAt.UTC()})
}
