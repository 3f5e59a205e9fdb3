package ginaudit

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/auditmw"
)

// DefaultRequestIDHeader is the header that carries the request id in both directions.
const DefaultRequestIDHeader = auditmw.DefaultRequestIDHeader

// Options configure Middleware. Only Writer is required; every other zero value is useful.
type Options struct {
	// Writer receives the records (core.Open or core.NewWriter). Enqueueing never waits: when the
	// writer's queue is full the record is dropped and counted by the writer. Nil discards the
	// records (an error is logged once, when the middleware is built).
	Writer *core.Writer

	// Config supplies LogAnonymous, ExcludePaths, SkipMethods, TenantHeader, TrustedProxies,
	// CaptureRequestBody, CaptureResponseBody, MaxBodySizeBytes, and JWT with ActorTypeAliases
	// (when Verifier is nil). Zero values mean core's documented defaults.
	Config core.Config

	// Verifier checks bearer tokens. Nil means one is built from Config.JWT when it names a key
	// source; for a JWKS URL its refresh goroutine then lives as long as the process (build the
	// Verifier yourself with NewVerifier to Close it). When Config.JWT is invalid, the problem is
	// logged once and every request that carries a token is recorded as a failed verification.
	Verifier *Verifier

	// Identify, when set, replaces the bearer-token path: it is called once per audited request and
	// returns the actor and tenant. An error is recorded like a failed token (anonymous actor,
	// severity warning, the error in the metadata, core.AuthRefused in the handler's context)
	// unless it wraps ErrNoToken, which means "no credentials" (anonymous, not a failure). An
	// empty Actor.Auth is recorded as "custom".
	Identify func(c *gin.Context) (Identity, error)

	// ClientIP, when set, returns the address to record, for example (*gin.Context).ClientIP for
	// an engine configured with TrustedPlatform. Nil applies Config.TrustedProxies: the socket's
	// peer address, unless that peer is a trusted proxy, in which case X-Forwarded-For (then
	// X-Real-IP) is walked from the right and the first address that is not a trusted proxy is
	// recorded — Gin's algorithm, independent of the engine's own setting (which trusts every
	// proxy unless configured; see TrustProxies).
	ClientIP func(c *gin.Context) string

	// RequestIDHeader names the request id header. Default DefaultRequestIDHeader. An incoming
	// value of 1 to 128 letters, digits and . _ - : / + = @ is kept; anything else is replaced
	// by a new UUIDv7. The id is echoed in the response header of the same name.
	RequestIDHeader string

	// Logger receives configuration problems found when the middleware is built. Nil means
	// Config.Logger, then slog.Default(). Nothing is logged per request.
	Logger *slog.Logger
}

// Metadata keys the middleware writes into the http record. Their names avoid the redaction
// patterns (a key containing "token" would be masked).
const (
	MetaAuthError      = auditmw.MetaAuthError      // why the credentials were refused (string)
	MetaAuthFailure    = auditmw.MetaAuthFailure    // a short code: expired, signature, algorithm, issuer, audience, claims, malformed, crit, missing_subject, unknown_actor_type, invalid_tenant, unknown_key, not_yet_valid, verifier, identify
	MetaJWTIssuer      = auditmw.MetaJWTIssuer      // iss of the verified token
	MetaJWTID          = auditmw.MetaJWTID          // jti of the verified token
	MetaJWTKeyID       = auditmw.MetaJWTKeyID       // kid of the verified token
	MetaErrors         = auditmw.MetaErrors         // c.Errors as strings
	MetaPanic          = auditmw.MetaPanic          // the panic value, formatted
	MetaRemoteIP       = auditmw.MetaRemoteIP       // the socket peer, when it differs from the recorded client IP
	MetaTenantError    = auditmw.MetaTenantError    // a tenant value that failed CheckTenant and was ignored
	MetaActorError     = auditmw.MetaActorError     // an application-supplied actor type that is not valid
	MetaRequestIDError = auditmw.MetaRequestIDError // the incoming request id was malformed and replaced
	MetaHijacked       = auditmw.MetaHijacked       // the connection was hijacked (WebSocket); no status was written by Gin
	MetaStreamed       = auditmw.MetaStreamed       // the response was streamed (flushed or SSE) and not captured

	// MetaRequestBodyPartial (true) says that the handler stopped reading the request body before
	// its end, and the record holds the part it read. Bodies of unknown length (chunked) and
	// bodies sent after "100 Continue" are captured as the handler reads them, never ahead of it.
	MetaRequestBodyPartial = auditmw.MetaRequestBodyPartial
)

type middleware struct {
	e        *auditmw.Engine
	identify func(*gin.Context) (Identity, error)
	clientIP func(*gin.Context) string
}

// Middleware returns the audit middleware. Register it after gin.Recovery so that a panic is
// recorded with its value (status 500) and then continues to Recovery:
//
//	r := gin.New()
//	r.Use(gin.Recovery(), ginaudit.Middleware(ginaudit.Options{Writer: w, Config: cfg}))
//
// For each request that is neither excluded (Config.ExcludesPath) nor of a skipped method
// (Config.SkipMethods), it puts a core.Collector, the request id, the actor and the tenant into
// c.Request's context; handlers must pass c.Request.Context() (not c) to the ORM. When the
// handler chain returns (or panics), the ORM records of the request are stamped with its request
// id, actor, tenant and IP and enqueued together with one http record. Records that arrive later
// (a transaction committed by a goroutine that outlives the request) are stamped and enqueued as
// they arrive.
//
// Requests without an actor are recorded only when Config.LogAnonymous is set, when credentials
// were presented and refused, or when they changed data through the ORM.
//
// The tenant is taken, in this order, from the application (core.WithTenant in the request
// context, or c.Set(TenantKey, ...)), from the token's tenant claims, and from Config.TenantHeader
// (off by default: clients can forge headers). Every value is checked with core.ValidateTenant:
// a token whose tenant claims fail is refused; any other value that fails is ignored and noted in
// the metadata (tenant_error), and an application's value that fails leaves the request without a
// tenant rather than falling back to a source the application overrode.
//
// The handler's context carries a core.Authentication: AuthVerified with the actor
// (core.ActorFromContext ok), AuthRefused with the reason and no actor, or AuthNone.
//
// Under core.FailClosed (the request context's policy, set by an earlier middleware with
// core.WithFailurePolicy or FailurePolicy, else the Writer's), room for the request's record is
// reserved before the handler runs, and a request for which there is none is answered 503 with
// Retry-After and is not recorded; see FailurePolicy. Under core.FailOpen a record the Writer
// cannot accept is dropped and counted by it, and the request is served.
func Middleware(opts Options) gin.HandlerFunc {
	var inner *auditmw.Verifier
	if opts.Verifier != nil {
		inner = opts.Verifier.Verifier
	}
	m := &middleware{
		e: auditmw.NewEngine(auditmw.Settings{
			Name:            "ginaudit",
			Writer:          opts.Writer,
			Config:          opts.Config,
			Verifier:        inner,
			CustomIdentity:  opts.Identify != nil,
			RequestIDHeader: opts.RequestIDHeader,
			Logger:          opts.Logger,
		}),
		identify: opts.Identify,
		clientIP: opts.ClientIP,
	}
	return m.handle
}

// reqState is everything one audited request needs, allocated once: the shared state, the copy
// of the request that carries the audit context, and the response writer's wrapper.
type reqState struct {
	auditmw.State
	m    *middleware
	c    *gin.Context
	req  http.Request
	body *bodyWriter
}

// identify calls Options.Identify with the request's gin.Context.
func (st *reqState) identify() (Identity, error) { return st.m.identify(st.c) }

func (m *middleware) handle(c *gin.Context) {
	req := c.Request
	e := m.e
	if e.Skips(req) {
		c.Next()
		return
	}
	// Under FailClosed, room for the http record is reserved before anything else is done, and a
	// request whose record could not be kept is refused before its handler runs. Under FailOpen
	// Admit returns at once without reserving.
	res, err := core.Admit(req.Context(), e.Writer, 1)
	if err != nil {
		m.refuse(c, err)
		return
	}
	st := &reqState{m: m, c: c}
	e.Begin(&st.State, req, c.Writer.Header(), res)
	if m.clientIP != nil {
		st.IP = auditmw.ParseClientIP(m.clientIP(c))
	} else {
		st.IP = e.ClientAddr(&st.State, req)
	}
	var custom func() (Identity, error)
	if m.identify != nil {
		custom = st.identify
	}
	ctx := e.Identify(&st.State, req, custom)
	// The request copy lives in the state: WithContext's own copy stays on the stack.
	st.req = *req.WithContext(ctx)
	c.Request = &st.req
	// For ORM calls given c itself: without the engine's ContextWithFallback, gin.Context.Value
	// answers only string keys, and core's lookups consult this one. With it, c answers core's
	// keys through c.Request's context, and nothing needs to be stored in c.Keys.
	if auditmw.StateFrom(c) == nil {
		c.Set(core.RequestContextKey, ctx)
	}

	if e.CaptureReq {
		st.Rec.RequestBody, st.ReqBody = auditmw.CaptureRequest(c.Request, e.Limit)
	}
	if e.CaptureResp || req.Header["Upgrade"] != nil {
		limit := 0
		if e.CaptureResp {
			limit = e.Limit
		}
		st.body = &bodyWriter{ResponseWriter: c.Writer, cap: auditmw.NewCapture(limit, c.Writer.Header())}
		c.Writer = st.body
	}

	completed := false
	defer func() {
		if completed {
			return
		}
		// The chain panicked (or called runtime.Goexit): record it, then let the panic continue to
		// an outer gin.Recovery or to net/http.
		p := recover()
		m.finish(c, st, true, p)
		if p != nil {
			panic(p)
		}
	}()
	c.Next()
	completed = true
	m.finish(c, st, false, nil)
}

// finish reports what the chain did to the shared engine, which writes the records.
func (m *middleware) finish(c *gin.Context, st *reqState, panicked bool, p any) {
	o := auditmw.Outcome{Panicked: panicked, Panic: p, Upgrade: c.Request.Header["Upgrade"] != nil}
	if st.body != nil {
		c.Writer = st.body.ResponseWriter // later writes (Gin's 404 body) go straight out
		o.Body = &st.body.cap
	}
	o.Route = c.FullPath()
	o.Status = c.Writer.Status()
	o.Written = c.Writer.Written()
	o.Size = c.Writer.Size()
	if len(c.Errors) > 0 {
		o.Errors = c.Errors.Errors()
	}
	o.Actor, o.HasActor = c.Get(ActorKey)
	o.Tenant, o.HasTenant = c.Get(TenantKey)
	if !o.HasTenant && c.Request != &st.req {
		o.Ctx = c.Request.Context() // a request the chain replaced may carry another tenant
	}
	o.ResourceType = c.GetString(apiResourceKey) // the read API marks its own requests (MountAPI)
	m.e.Finish(&st.State, &o)
}
