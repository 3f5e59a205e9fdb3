package ginaudit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// APIOptions configure MountAPI. Verifier, Writer and a Store are required; every other zero value
// is useful.
type APIOptions struct {
	// Verifier authenticates every caller from an "Authorization: Bearer" JWT (the same tokens as
	// the middleware). Platform administrators (actor type platform_admin) may name a tenant with
	// the tenant_id parameter or work across tenants; every other caller is confined to the tenant
	// of its token and refused without one. Anonymous callers are refused. MountAPI refuses a
	// Verifier configured with JWTConfig.UnsafeSkipVerification unless
	// UnsafeAllowUnverifiedTokens is set.
	Verifier *Verifier

	// UnsafeAllowUnverifiedTokens lets MountAPI accept a Verifier that does not check signatures
	// (JWTConfig.UnsafeSkipVerification). Without signatures any client can present a token
	// claiming actor type platform_admin and read, export and delete every tenant's log, so set it
	// only when a gateway in front verifies every token and refuses requests without one.
	// Default false.
	UnsafeAllowUnverifiedTokens bool

	// Writer receives the API's own audit records: who searched, read, exported, streamed or
	// cleaned up which tenant's log with which filters, and every tenant change. When the API runs
	// behind Middleware, the records join the request's records instead.
	Writer *core.Writer

	// RateLimit is the sustained rate of requests per second allowed per tenant (token bucket;
	// platform administrators and callers without a tenant are limited per actor). Zero means 20;
	// a negative value disables rate limiting. Refused requests get 429 with Retry-After.
	RateLimit float64
	// RateBurst is the bucket size. Zero means twice RateLimit (at least 1).
	RateBurst int

	// MaxBulkRecords is the most records one POST /logs/bulk may carry. Zero means 1000.
	MaxBulkRecords int
	// MaxBodyBytes bounds a request body. Zero means 10 MiB.
	MaxBodyBytes int64

	// MinCleanupAge protects recent records: DELETE /logs/cleanup refuses an older_than later than
	// now minus MinCleanupAge. Zero means 24h.
	MinCleanupAge time.Duration

	// MaxStreams is the most live streams open at once per tenant (per actor for platform
	// administrators and callers without a tenant). Zero means 10.
	MaxStreams int
	// StreamHeartbeat is how often an idle stream sends a keep-alive (an SSE comment or a
	// WebSocket ping). Zero means 15s.
	StreamHeartbeat time.Duration
	// WebSocketOrigins are the host patterns (path.Match syntax, as in
	// github.com/coder/websocket's AcceptOptions.OriginPatterns) of other origins whose browser
	// pages may open the WebSocket stream. Nil allows same-origin pages and non-browser clients.
	WebSocketOrigins []string

	// Live is the source of the live stream (GET /logs/stream). Nil means the Store itself,
	// which follows PostgreSQL's notifications of new rows. A natsaudit.Live follows the NATS
	// JetStream subjects the records are published on instead: records then arrive when they are
	// published, and a stream with a full-text search (q) is refused with 400, since only
	// PostgreSQL evaluates it. Tenant scope, filters, formats, suspension and token expiry apply
	// the same with either source.
	Live store.LiveSource

	// WriteTimeout bounds how long one write to a client may block: each chunk of an export and
	// each Server-Sent Event (WebSocket writes have their own 10s bound). A client that stops
	// reading for longer is cut off, which ends the export's database query and frees its
	// connection, or frees the stream's slot. The deadline is reset before every chunk, so a large
	// export read at any steady pace is never cut. Zero means 30s; a negative value disables it.
	WriteTimeout time.Duration

	// MaxExports is the most exports running at once per tenant (per actor for platform
	// administrators and callers without a tenant);
	// one more gets 429 too_many_exports. Each running export holds a database connection until
	// its last row is sent. Zero means 2.
	MaxExports int
	// MaxExportsTotal is the most exports running at once across all tenants; one more gets 503
	// exports_busy. Zero means half the store's connection pool (at least 1), so that exports
	// never take every connection from searches and writes.
	MaxExportsTotal int

	// ChainPublicKey verifies the signed checkpoints, served by GET /chain/public-key
	// (core.Config.ChainPublicKey). Nil means none is configured: that route answers 404.
	ChainPublicKey ed25519.PublicKey

	// Logger receives server-side failures (database errors behind a 500 response). Nil means
	// slog.Default().
	Logger *slog.Logger

	// ViewerTokens, when set, lets the API accept viewer tokens (short-lived, read-only, scoped
	// to one tenant) besides the Verifier's JWTs, and lets POST /viewer/tokens mint them. Nil
	// refuses viewer tokens.
	ViewerTokens *ViewerTokens
	// ViewerPath, when set, serves the log viewer (a web page that reads the API) at this path
	// relative to the group, such as /viewer. Empty serves no page.
	ViewerPath string
}

const (
	apiDefaultRate       = 20
	apiDefaultMaxBulk    = 1000
	apiDefaultMaxBody    = 10 << 20
	apiDefaultMinCleanup = 24 * time.Hour
	apiDefaultMaxStreams = 10
	apiDefaultHeartbeat  = 15 * time.Second
	apiDefaultWriteLimit = 30 * time.Second
	apiDefaultMaxExports = 2
	apiParamTenant       = "tenant_id"
	apiParamAccessToken  = "access_token"
	apiParamOlderThan    = "older_than"
	apiPrincipalKey      = "ginaudit.apiPrincipal"
	apiLimiterIdle       = 10 * time.Minute
)

// apiResourceKey carries, for Middleware, the resource type that marks the http record of a
// request to the API as one of the service's own (store.ServiceResourceTypes).
const apiResourceKey = "ginaudit.apiResource"

// apiServer holds what the API handlers share.
type apiServer struct {
	st      *store.Store
	opts    APIOptions
	log     *slog.Logger
	limits  *apiLimiter
	streams *apiStreamCount
	exports *apiStreamCount // per tenant, and the global count under apiExportsAll
}

// apiExportsAll is the key of the global export count; tenant keys start with "t:" or "a:".
const apiExportsAll = "*"

// MountAPI registers the audit-log API on group: the routes listed in the embedded OpenAPI
// description (GET /openapi.yaml, relative to the group), which is the reference for parameters,
// bodies and errors. Every refusal is a JSON error {"error": {"code", "message", ...}}.
//
// The API records its own use (APIOptions.Writer) and, behind Middleware, marks each request's
// http record with resource type store.ResourceAuditLogs or store.ResourceAuditTenants; searches,
// exports, stats and streams leave both out unless include_meta=true. A platform administrator's
// request is recorded in the tenant it works on (tenant_id, /tenants/{id}, the tenant of the
// record read or created) or, working on no single tenant, without a tenant — never in the tenant
// of the administrator's token. A tenant user's live stream ends when the tenant is suspended.
//
// Paths and methods outside the API are the router's: Gin answers them in plain text unless
// the engine has its own NoRoute and NoMethod handlers (with HandleMethodNotAllowed), as
// examples/auditlog-service sets. MountAPI cannot set them for the group alone, since they
// belong to the whole engine, nor add a catch-all route beside the API's.
//
//	st, _ := store.New(pool, store.Options{Schema: cfg.Schema, CursorKey: key})
//	v, _ := ginaudit.NewVerifier(ctx, cfg.JWT, cfg.ActorTypeAliases)
//	err := ginaudit.MountAPI(r.Group("/api/v1"), st, ginaudit.APIOptions{Verifier: v, Writer: w})
func MountAPI(group *gin.RouterGroup, st *store.Store, opts APIOptions) error {
	switch {
	case group == nil:
		return errors.New("ginaudit: MountAPI needs a router group")
	case st == nil:
		return errors.New("ginaudit: MountAPI needs a store")
	case opts.Verifier == nil:
		return errors.New("ginaudit: APIOptions.Verifier is required: the API authenticates every caller")
	case opts.Verifier.cfg.UnsafeSkipVerification && !opts.UnsafeAllowUnverifiedTokens:
		return errors.New("ginaudit: the Verifier does not check token signatures (UnsafeSkipVerification), so any client could claim to be a platform administrator; " +
			"configure a key, or set APIOptions.UnsafeAllowUnverifiedTokens when a gateway verifies every token")
	case opts.Writer == nil:
		return errors.New("ginaudit: APIOptions.Writer is required: the API records its own use")
	case opts.RateLimit > 0 && math.IsInf(opts.RateLimit, 0), math.IsNaN(opts.RateLimit):
		return errors.New("ginaudit: APIOptions.RateLimit must be a finite number")
	case slices.ContainsFunc(opts.WebSocketOrigins, func(p string) bool { _, err := path.Match(p, ""); return err != nil }):
		return errors.New("ginaudit: APIOptions.WebSocketOrigins holds a malformed pattern (path.Match syntax)")
	case opts.RateBurst < 0, opts.MaxBulkRecords < 0, opts.MaxBodyBytes < 0, opts.MinCleanupAge < 0,
		opts.MaxStreams < 0, opts.StreamHeartbeat < 0, opts.MaxExports < 0, opts.MaxExportsTotal < 0:
		return errors.New("ginaudit: APIOptions limits must not be negative")
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = apiDefaultRate
	}
	if opts.RateBurst == 0 {
		opts.RateBurst = max(1, int(2*opts.RateLimit))
	}
	if opts.MaxBulkRecords == 0 {
		opts.MaxBulkRecords = apiDefaultMaxBulk
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = apiDefaultMaxBody
	}
	if opts.MinCleanupAge == 0 {
		opts.MinCleanupAge = apiDefaultMinCleanup
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = apiDefaultMaxStreams
	}
	if opts.StreamHeartbeat == 0 {
		opts.StreamHeartbeat = apiDefaultHeartbeat
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = apiDefaultWriteLimit
	}
	if opts.MaxExports == 0 {
		opts.MaxExports = apiDefaultMaxExports
	}
	if opts.MaxExportsTotal == 0 {
		opts.MaxExportsTotal = max(1, st.MaxConns()/2)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	a := &apiServer{st: st, opts: opts, log: logger, streams: &apiStreamCount{n: map[string]int{}},
		exports: &apiStreamCount{n: map[string]int{}}}
	if opts.RateLimit > 0 {
		a.limits = &apiLimiter{rate: rate.Limit(opts.RateLimit), burst: opts.RateBurst, m: map[string]*apiBucket{}}
	}

	group.GET("/openapi.yaml", a.openAPI)
	auth := group.Group("", a.authenticate)
	auth.POST("/logs", a.ingest(false))
	auth.POST("/logs/bulk", a.ingest(true))
	auth.GET("/logs", a.list)
	auth.GET("/logs/export", a.export)
	auth.GET("/logs/stats", a.stats)
	auth.GET("/logs/stream", a.stream)
	auth.GET("/logs/verify", a.verifyChain)
	auth.DELETE("/logs/cleanup", a.cleanup)
	auth.POST("/subjects/erase", a.eraseSubject)
	auth.GET("/logs/:id", a.get)
	auth.GET("/resources/:type/:id/history", a.history)
	auth.GET("/tenants", a.listTenants)
	auth.POST("/tenants", a.createTenant)
	auth.GET("/tenants/:id", a.getTenant)
	auth.PATCH("/tenants/:id", a.updateTenant)
	a.retentionRoutes(auth)
	auth.GET("/chain/public-key", a.chainPublicKey)
	auth.GET("/chain/checkpoints", a.chainCheckpoints)
	return a.mountViewer(group, auth)
}

// apiError is the body of every refusal.
type apiError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Param   string            `json:"param,omitempty"`
	Items   []store.ItemError `json:"items,omitempty"`
}

func apiFail(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, gin.H{"error": apiError{Code: code, Message: message}})
}

// apiFailErr maps an error of the store or of parsing to a response. Unexpected errors are
// logged and answered with 500 without detail.
func (a *apiServer) fail(c *gin.Context, err error) {
	var pe *store.ParamError
	var ie *store.InvalidRecordsError
	e := apiError{Message: err.Error()}
	status := http.StatusBadRequest
	switch {
	case errors.As(err, &pe):
		e.Code, e.Param, e.Message = "invalid_parameter", pe.Param, pe.Error()
	case errors.Is(err, store.ErrInvalidCursor):
		e.Code, e.Param = "invalid_cursor", store.ParamCursor
	case errors.As(err, &ie):
		status, e.Code, e.Items = http.StatusUnprocessableEntity, "invalid_records", ie.Items
		if len(ie.Items) > 1 {
			e.Message = fmt.Sprintf("%d of the records are invalid; nothing was written", len(ie.Items))
		} else {
			e.Message += "; nothing was written"
		}
	case errors.Is(err, store.ErrTooManyRecords):
		status, e.Code = http.StatusRequestEntityTooLarge, "too_many_records"
	case errors.Is(err, store.ErrInvalidBody):
		e.Code = "invalid_body"
	case errors.Is(err, store.ErrInvalidIdempotencyKey):
		e.Code = "invalid_idempotency_key"
	case errors.Is(err, store.ErrIdempotencyKeyReused):
		status, e.Code = http.StatusUnprocessableEntity, "idempotency_key_reused"
	case errors.Is(err, store.ErrNotFound):
		status, e.Code, e.Message = http.StatusNotFound, "not_found", "not found"
	case errors.Is(err, store.ErrTenantUnknown):
		status, e.Code, e.Message = http.StatusForbidden, "tenant_unknown", "the tenant is not registered; a platform administrator registers tenants with POST /tenants"
	case errors.Is(err, store.ErrTenantInactive):
		status, e.Code = http.StatusForbidden, "tenant_inactive"
	case errors.Is(err, store.ErrTenantSuspended):
		status, e.Code = http.StatusForbidden, "tenant_suspended"
	case errors.Is(err, store.ErrTenantExists):
		status, e.Code = http.StatusConflict, "tenant_exists"
	case errors.Is(err, store.ErrInvalidTenant):
		e.Code = "invalid_tenant"
	case errors.Is(err, store.ErrLegalHold):
		status, e.Code = http.StatusConflict, "legal_hold"
	case errors.Is(err, store.ErrInvalidScope):
		e.Code = "invalid_tenant"
	case c.Request.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		c.Abort()
		return
	default:
		a.log.Error("ginaudit: audit-log API request failed", "method", c.Request.Method, "path", c.FullPath(), "error", err)
		status, e.Code, e.Message = http.StatusInternalServerError, "internal", "the request failed on the server; it has been logged"
		if errors.Is(err, store.ErrClosed) {
			status, e.Code, e.Message = http.StatusServiceUnavailable, "unavailable", "the service is shutting down"
		}
	}
	c.AbortWithStatusJSON(status, gin.H{"error": e})
}

// apiPrincipal is an authenticated caller.
type apiPrincipal struct {
	id    Identity
	admin bool
}

// limitKey is the rate-limit, stream-count and export-count key: the tenant, or the actor
// without one. Platform administrators are counted per actor: their work on other tenants must
// not use up the quota of the tenant their token names.
func (p *apiPrincipal) limitKey() string {
	if p.id.Tenant.ID != "" && !p.admin {
		return "t:" + p.id.Tenant.ID
	}
	return "a:" + p.id.Actor.ID
}

// authenticate verifies the bearer token, refuses anonymous callers and callers without a tenant
// (unless platform administrators), applies the rate limit, and stores the principal.
func (a *apiServer) authenticate(c *gin.Context) {
	apiMarkRequest(c)
	raw, err := apiBearer(c)
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="audit-log"`)
		apiFail(c, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	id, ok := a.verifyBearer(c, raw) // viewer tokens, or the Verifier's JWTs
	if !ok {
		return
	}
	p := &apiPrincipal{id: id, admin: id.Actor.Type == core.ActorPlatformAdmin}
	if p.admin {
		// Before any refusal: a refused request is recorded where the accepted one would be.
		c.Set(TenantKey, core.Tenant{ID: apiWorkedOn(c)})
	}
	switch {
	case id.Actor.Type == core.ActorAnonymous:
		apiFail(c, http.StatusForbidden, "forbidden", "anonymous callers may not use the audit-log API")
		return
	case !p.admin && id.Tenant.ID == "":
		apiFail(c, http.StatusForbidden, "tenant_required", "the token carries no tenant; only platform administrators work without one")
		return
	}
	if a.limits != nil {
		if wait, ok := a.limits.allow(p.limitKey(), time.Now()); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			c.Header("Retry-After", strconv.Itoa(max(secs, 1)))
			apiFail(c, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many requests for this tenant; retry in %ds", max(secs, 1)))
			return
		}
	}
	c.Set(apiPrincipalKey, p)
	c.Next()
}

// apiBearer returns the bearer token of the request. The stream route also accepts it in the
// access_token parameter, for browsers' EventSource and WebSocket, which cannot set headers.
func apiBearer(c *gin.Context) (string, error) {
	h := c.Request.Header.Values("Authorization")
	q, inQuery := c.Request.URL.Query()[apiParamAccessToken]
	if inQuery && !strings.HasSuffix(c.FullPath(), "/logs/stream") {
		return "", errors.New("access_token is accepted only by GET /logs/stream; send an Authorization: Bearer header")
	}
	switch {
	case len(h) > 1 || len(q) > 1:
		return "", errors.New("give exactly one bearer token")
	case len(h) == 1 && inQuery:
		return "", errors.New("give the token either in the Authorization header or in access_token, not both")
	case inQuery:
		if q[0] == "" {
			return "", errors.New("access_token is empty")
		}
		return q[0], nil
	case len(h) == 0:
		return "", errors.New("a bearer token is required (Authorization: Bearer <JWT>)")
	}
	v := strings.TrimSpace(h[0])
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", errors.New("the Authorization header must be \"Bearer <JWT>\"")
	}
	return strings.TrimSpace(tok), nil
}

// apiMarkRequest marks, for Middleware, the request's http record as one of the service's own:
// store.ResourceAuditTenants for the tenant registry, store.ResourceAuditLogs for the rest. The
// read API leaves such records out unless asked for them (include_meta).
func apiMarkRequest(c *gin.Context) {
	rt := store.ResourceAuditLogs
	if p := c.FullPath(); strings.HasSuffix(p, "/tenants") || strings.HasSuffix(p, "/tenants/:id") {
		rt = store.ResourceAuditTenants
	}
	c.Set(apiResourceKey, rt)
}

// apiWorkedOn returns the tenant a platform administrator's request works on: the one named by
// tenant_id, or the {id} of /tenants/{id}; "" when it names none (work across tenants, or on no
// tenant) or names one that is not a valid tenant id.
//
// This is where the administrator's request is recorded, never the tenant of the token (the
// administrator's home tenant): records about work on tenant B belong to B, whose users may read
// them, and records of work across tenants, which name other tenants' ids and filters, to the
// platform scope (no tenant), which only platform administrators read. Handlers refine it once
// they know more: GET /logs/{id} records in the tenant of the record read, POST /tenants in
// the tenant created.
func apiWorkedOn(c *gin.Context) string {
	if strings.HasSuffix(c.FullPath(), "/tenants/:id") {
		if id := c.Param("id"); store.ValidateTenantID("id", id) == nil {
			return id
		}
		return ""
	}
	v, err := url.ParseQuery(c.Request.URL.RawQuery)
	if vals := v[apiParamTenant]; err == nil && len(vals) == 1 && store.ValidateTenantID(apiParamTenant, vals[0]) == nil {
		return vals[0]
	}
	return ""
}

func apiPrincipalOf(c *gin.Context) *apiPrincipal {
	p, _ := c.Get(apiPrincipalKey)
	return p.(*apiPrincipal)
}

// params checks that the request has only the allowed query parameters and returns them.
func (a *apiServer) params(c *gin.Context, allowed ...[]string) (url.Values, bool) {
	v, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		apiFail(c, http.StatusBadRequest, "invalid_parameter", "the query string is malformed: "+err.Error())
		return nil, false
	}
	delete(v, apiParamAccessToken)
	for p := range v {
		known := false
		for _, list := range allowed {
			if slices.Contains(list, p) {
				known = true
				break
			}
		}
		if !known {
			var all []string
			for _, list := range allowed {
				all = append(all, list...)
			}
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": apiError{
				Code: "unknown_parameter", Param: apiTruncate(p, 64),
				Message: fmt.Sprintf("unknown parameter %q; this request accepts %s", apiTruncate(p, 64), strings.Join(all, ", ")),
			}})
			return nil, false
		}
	}
	return v, true
}

func apiTruncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var apiTenantParam = []string{apiParamTenant}

// scope decides whose records a request covers: a tenant user's own tenant (naming another one is
// refused), or for platform administrators the tenant they name or every tenant. Reads by users
// of a suspended tenant are refused.
func (a *apiServer) scope(c *gin.Context, p *apiPrincipal, v url.Values) (store.Scope, bool) {
	named, hasNamed := "", false
	if vals, ok := v[apiParamTenant]; ok {
		if len(vals) != 1 || vals[0] == "" {
			apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, "tenant_id must be given once, not empty")
			return store.Scope{}, false
		}
		if err := store.ValidateTenantID(apiParamTenant, vals[0]); err != nil {
			apiFailParam(c, http.StatusBadRequest, "invalid_parameter", apiParamTenant, err.Error())
			return store.Scope{}, false
		}
		named, hasNamed = vals[0], true
	}
	if p.admin {
		// authenticate has chosen where the request is recorded (apiWorkedOn): the named tenant,
		// or no tenant for work across tenants.
		if hasNamed {
			return store.TenantScope(named), true
		}
		return store.AllTenantsScope(), true
	}
	if hasNamed && named != p.id.Tenant.ID {
		apiFailParam(c, http.StatusForbidden, "forbidden", apiParamTenant, "tenant users can only use their own tenant")
		return store.Scope{}, false
	}
	status, err := a.st.TenantStatusOf(c.Request.Context(), p.id.Tenant.ID)
	if err != nil && !errors.Is(err, store.ErrTenantUnknown) {
		a.fail(c, err)
		return store.Scope{}, false
	}
	if status == store.TenantSuspended {
		a.fail(c, store.ErrTenantSuspended)
		return store.Scope{}, false
	}
	return store.TenantScope(p.id.Tenant.ID), true
}

func apiFailParam(c *gin.Context, status int, code, param, message string) {
	c.AbortWithStatusJSON(status, gin.H{"error": apiError{Code: code, Param: param, Message: message}})
}

// requireAdmin refuses callers who are not platform administrators.
func requireAdmin(c *gin.Context, p *apiPrincipal) bool {
	if !p.admin {
		apiFail(c, http.StatusForbidden, "forbidden", "only platform administrators may do this")
		return false
	}
	return true
}

// audit records the API's own use through core.Log. Behind Middleware the record joins the
// request's records (and is written when the request ends, with its request id and address);
// immediate records, for requests that last (streams), are written at once.
//
// A record without a tenant (a platform administrator's work across every tenant) is always
// immediate: the request's context and collector would stamp it with the tenant of the
// administrator's token, and that tenant's users would then read the administrator's
// cross-tenant filters. Without a tenant, only platform administrators can read it.
func (a *apiServer) audit(c *gin.Context, p *apiPrincipal, e core.Entry, immediate ...bool) {
	e.Kind = core.KindCustom
	e.Actor = p.id.Actor
	if e.ResourceType == "" {
		e.ResourceType = store.ResourceAuditLogs
	}
	ctx := c.Request.Context()
	if len(immediate) > 0 && immediate[0] || e.Tenant.IsZero() {
		if e.RequestID == "" {
			e.RequestID, _ = core.RequestIDFromContext(ctx)
		}
		if col := core.FromContext(ctx); col != nil {
			e.IP = col.ClientIP()
		}
		ctx = context.Background()
	}
	if _, err := core.Log(ctx, a.opts.Writer, e); err != nil {
		a.log.Error("ginaudit: recording the audit-log API's own use failed", "action", e.Action, "error", err)
	}
}

// scopeMeta describes a scope for audit metadata.
func scopeMeta(sc store.Scope) string {
	if sc.AllTenants {
		return "all_tenants"
	}
	return "tenant"
}

// apiLimiter holds one token bucket per key; buckets idle for apiLimiterIdle are dropped.
type apiLimiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*apiBucket
	sweep time.Time
}

type apiBucket struct {
	lim  *rate.Limiter
	used time.Time
}

// allow takes a token for key, or reports how long until one is available.
func (l *apiLimiter) allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > apiLimiterIdle {
		for k, b := range l.m {
			if now.Sub(b.used) > apiLimiterIdle {
				delete(l.m, k)
			}
		}
		l.sweep = now
	}
	b := l.m[key]
	if b == nil {
		b = &apiBucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.m[key] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// apiStreamCount counts open streams per key.
type apiStreamCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *apiStreamCount) acquire(key string, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] >= limit {
		return false
	}
	s.n[key]++
	return true
}

func (s *apiStreamCount) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key]--; s.n[key] <= 0 {
		delete(s.n, key)
	}
}
