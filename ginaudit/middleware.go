package ginaudit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

// DefaultRequestIDHeader is the header that carries the request id in both directions.
const DefaultRequestIDHeader = "X-Request-ID"

// maxRequestIDBytes bounds an incoming request id; a longer one is replaced.
const maxRequestIDBytes = 128

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
	MetaAuthError      = "auth_error"        // why the credentials were refused (string)
	MetaAuthFailure    = "auth_failure"      // a short code: expired, signature, algorithm, issuer, audience, claims, malformed, crit, missing_subject, unknown_actor_type, invalid_tenant, unknown_key, not_yet_valid, verifier, identify
	MetaJWTIssuer      = "jwt_iss"           // iss of the verified token
	MetaJWTID          = "jwt_jti"           // jti of the verified token
	MetaJWTKeyID       = "jwt_kid"           // kid of the verified token
	MetaErrors         = "errors"            // c.Errors as strings
	MetaPanic          = "panic"             // the panic value, formatted
	MetaRemoteIP       = "remote_ip"         // the socket peer, when it differs from the recorded client IP
	MetaTenantError    = "tenant_error"      // a tenant value that failed CheckTenant and was ignored
	MetaActorError     = "actor_error"       // an application-supplied actor type that is not valid
	MetaRequestIDError = "request_id_error"  // the incoming request id was malformed and replaced
	MetaHijacked       = "hijacked"          // the connection was hijacked (WebSocket); no status was written by Gin
	MetaStreamed       = "response_streamed" // the response was streamed (flushed or SSE) and not captured

	// MetaRequestBodyPartial (true) says that the handler stopped reading the request body before
	// its end, and the record holds the part it read. Bodies of unknown length (chunked) and
	// bodies sent after "100 Continue" are captured as the handler reads them, never ahead of it.
	MetaRequestBodyPartial = "request_body_partial"
)

type middleware struct {
	w           *core.Writer
	cfg         core.Config
	verifier    *Verifier
	verifierErr error
	identify    func(*gin.Context) (Identity, error)
	clientIP    func(*gin.Context) string
	proxies     []netip.Prefix
	idHeader    string
	tenantHdr   string
	captureReq  bool
	captureResp bool
	limit       int
	refusals    refusalLog // requests refused under FailClosed, reported at most once a second
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
	cfg := opts.Config.WithDefaults()
	logger := opts.Logger
	if logger == nil {
		logger = cfg.Logger
	}
	m := &middleware{
		w:           opts.Writer,
		cfg:         cfg,
		verifier:    opts.Verifier,
		identify:    opts.Identify,
		clientIP:    opts.ClientIP,
		idHeader:    textproto.CanonicalMIMEHeaderKey(opts.RequestIDHeader),
		captureReq:  cfg.CaptureRequestBody,
		captureResp: cfg.CaptureResponseBody,
		limit:       cfg.MaxBodySizeBytes,
	}
	m.refusals.logger = logger
	if m.idHeader == "" {
		m.idHeader = textproto.CanonicalMIMEHeaderKey(DefaultRequestIDHeader)
	}
	if cfg.TenantHeader != "" {
		m.tenantHdr = textproto.CanonicalMIMEHeaderKey(cfg.TenantHeader)
	}
	if err := opts.Config.Validate(); err != nil {
		logger.Error("ginaudit: invalid audit configuration", "error", err)
	}
	if m.w == nil {
		logger.Error("ginaudit: Options.Writer is nil; audit records are discarded")
	}
	for _, p := range cfg.TrustedProxies {
		if pfx, err := parseProxy(p); err == nil {
			m.proxies = append(m.proxies, pfx)
		}
	}
	if m.verifier == nil && m.identify == nil && cfg.JWT.Enabled() {
		v, err := NewVerifier(context.Background(), cfg.JWT, cfg.ActorTypeAliases, WithLogger(logger))
		if err != nil {
			logger.Error("ginaudit: cannot verify JWTs; requests with a token are recorded as failed verifications", "error", err)
			m.verifierErr = fmt.Errorf("verifier unavailable: %w", err)
		}
		m.verifier = v
	}
	if cfg.JWT.UnsafeSkipVerification && m.identify == nil {
		logger.Warn("ginaudit: JWT signatures are not verified (UnsafeSkipVerification); any client can claim any identity unless a gateway in front verifies every token")
	}
	return m.handle
}

// reqState is everything one audited request needs, allocated once.
type reqState struct {
	rec core.Record
	col core.Collector
	w   *core.Writer
	m   *middleware

	// res is the room reserved for the http record under FailClosed (nil under FailOpen). The
	// records of the request are enqueued in it and in the room the ORM integrations reserved
	// through the collector, and what is left is released when the request ends.
	res *core.Reservation
	// refused is set when the request was answered 503 because its record could not be admitted
	// (FailurePolicy after the middleware): its http record is not written.
	refused bool

	// Identity stamped on the request's ORM records, final once the collector is finished.
	requestID string
	actor     core.Actor
	tenant    core.Tenant
	ip        netip.Addr

	ctxTenant core.Tenant // the tenant put into the context, to notice an application's change
	idHeader  [1]string   // the response header's value slice, without an allocation of its own
	authErr   error
	reqBody   *teeBody // a request body captured as the handler reads it
	body      *bodyWriter
	meta      map[string]any

	auth core.Authentication // what the handler's context says about authentication
}

func (st *reqState) setMeta(k string, v any) {
	if st.meta == nil {
		st.meta = make(map[string]any, 4)
	}
	st.meta[k] = v
}

// stamp fills the identity fields of an ORM record that it does not set itself.
func (st *reqState) stamp(r *core.Record) {
	if r.RequestID == "" {
		r.RequestID = st.requestID
	}
	if r.Actor.IsZero() {
		r.Actor = st.actor
	}
	if r.Tenant.IsZero() {
		r.Tenant = st.tenant
	}
	if !r.IP.IsValid() {
		r.IP = st.ip
	}
}

// late handles records added to the collector after the request ended.
func (st *reqState) late(res *core.Reservation, r *core.Record) {
	st.stamp(r)
	if st.w != nil {
		_ = st.w.EnqueueReserved(res, r) // a refusal is counted and reported by the Writer
	}
}

func (m *middleware) handle(c *gin.Context) {
	req := c.Request
	if len(m.cfg.SkipMethods) > 0 && slices.Contains(m.cfg.SkipMethods, req.Method) || m.cfg.ExcludesPath(req.URL.Path) {
		c.Next()
		return
	}
	// Under FailClosed, room for the http record is reserved before anything else is done, and a
	// request whose record could not be kept is refused before its handler runs. Under FailOpen
	// Admit returns at once without reserving.
	res, err := core.Admit(req.Context(), m.w, 1)
	if err != nil {
		m.refuse(c, err)
		return
	}
	st := &reqState{w: m.w, m: m, res: res}
	rec := &st.rec
	rec.OccurredAt = time.Now()
	rec.Kind = core.KindHTTP
	rec.Method = req.Method
	rec.Path = req.URL.Path
	if req.URL.RawQuery != "" {
		rec.Query, _ = url.ParseQuery(req.URL.RawQuery) // what parses of a malformed query is kept
	}
	rec.UserAgent = req.UserAgent()
	st.requestID = m.requestID(st, req)
	st.idHeader[0] = st.requestID
	c.Writer.Header()[m.idHeader] = st.idHeader[:]
	st.ip = m.addr(st, c)

	ctx := req.Context()
	m.resolveIdentity(st, c, ctx)
	st.col.SetClientIP(st.ip)
	ctx = core.NewContext(ctx, &st.col)
	ctx = core.WithRequestID(ctx, st.requestID)
	ctx = core.WithAuthentication(ctx, st.auth)
	if st.auth.Status == core.AuthVerified {
		ctx = core.WithActor(ctx, st.actor)
	}
	if !st.tenant.IsZero() {
		ctx = core.WithTenant(ctx, st.tenant)
		st.ctxTenant = st.tenant
	}
	c.Request = req.WithContext(ctx)
	// For ORM calls given c itself: gin.Context.Value answers only string keys (without
	// ContextWithFallback), and core's lookups consult this one.
	c.Set(core.RequestContextKey, ctx)
	c.Set(stateKey, st) // for FailurePolicy registered after the middleware

	if m.captureReq {
		rec.RequestBody, st.reqBody = captureRequest(c.Request, m.limit)
	}
	if m.captureResp || req.Header["Upgrade"] != nil {
		limit := 0
		if m.captureResp {
			limit = m.limit
		}
		st.body = &bodyWriter{ResponseWriter: c.Writer, limit: limit, outerEnc: contentEncoding(c.Writer.Header())}
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

// resolveIdentity establishes the actor and the tenant at the start of the request.
func (m *middleware) resolveIdentity(st *reqState, c *gin.Context, ctx context.Context) {
	var id Identity
	var err error
	if a, ok := core.ActorFromContext(ctx); ok && !a.IsZero() {
		id.Actor = a // an outer middleware of the application established it
		if id.Actor.Auth == "" {
			id.Actor.Auth = "context"
		}
	} else if m.identify != nil {
		id, err = m.identify(c)
		if err == nil && !id.Actor.IsZero() && id.Actor.Auth == "" {
			id.Actor.Auth = "custom"
		}
		if errors.Is(err, ErrNoToken) {
			id, err = Identity{}, nil
		}
		if err != nil {
			id = Identity{}
			st.authFailure("identify", err)
		}
	} else if m.verifier != nil || m.verifierErr != nil {
		if raw, ok := bearerToken(c.Request); ok {
			switch {
			case m.verifierErr != nil:
				err = m.verifierErr
			case raw == "":
				err = tokenError(ErrMalformed, "no credentials after the scheme", nil)
			default:
				id, err = m.verifier.Verify(ctx, raw)
			}
			if err != nil {
				st.authFailure(failureCode(err), err)
			}
		}
	}
	if err == nil {
		st.actor = st.checkActor(id.Actor)
		if id.Issuer != "" && (m.verifier == nil || m.verifier.cfg.Issuer == "") {
			st.setMeta(MetaJWTIssuer, id.Issuer) // with JWTConfig.Issuer set it is always that
		}
		if id.TokenID != "" {
			st.setMeta(MetaJWTID, id.TokenID)
		}
		if id.KeyID != "" {
			st.setMeta(MetaJWTKeyID, id.KeyID)
		}
	} else {
		st.actor = core.Actor{Type: core.ActorAnonymous, Auth: "none"}
	}
	// What the handler's context says: a refused credential is never more than none.
	switch {
	case st.authErr != nil:
		st.auth = core.Authentication{Status: core.AuthRefused, Reason: st.authErr.Error()}
	case !st.actor.IsZero():
		st.auth = core.Authentication{Status: core.AuthVerified}
	}

	switch t, terr := core.LookupTenant(ctx); {
	case terr != nil:
		// The application named a tenant that cannot be stored: no tenant, rather than falling
		// back to another source the application did not choose.
		st.setMeta(MetaTenantError, terr.Error())
	case !t.IsZero():
		st.tenant = t
	case !id.Tenant.IsZero():
		st.tenant = id.Tenant // checked by Verify; a custom Identify is checked here
		if m.identify != nil {
			st.tenant = st.checkTenant(id.Tenant)
		}
	case m.tenantHdr != "":
		if v := c.Request.Header[m.tenantHdr]; len(v) > 0 && v[0] != "" {
			st.tenant = st.checkTenant(core.Tenant{ID: v[0]})
		}
	}
}

func (st *reqState) authFailure(code string, err error) {
	st.authErr = err
	st.setMeta(MetaAuthFailure, code)
	st.setMeta(MetaAuthError, err.Error())
}

// checkTenant returns t, or the zero tenant with a note when t fails core.ValidateTenant.
func (st *reqState) checkTenant(t core.Tenant) core.Tenant {
	if err := core.ValidateTenant(t); err != nil {
		st.setMeta(MetaTenantError, err.Error())
		return core.Tenant{}
	}
	return t
}

// checkActor returns a, with an actor type that is not valid replaced by anonymous (a record
// with an invalid type would be refused by the Writer, and guessing could grant privileges); such
// a request is recorded like a failed verification.
func (st *reqState) checkActor(a core.Actor) core.Actor {
	if a.Type != "" && !a.Type.Valid() {
		st.authErr = fmt.Errorf("actor type %q is not valid; recorded as anonymous", a.Type)
		st.setMeta(MetaActorError, st.authErr.Error())
		a.Type = core.ActorAnonymous
	}
	return a
}

// finish completes the http record, stamps the ORM records and enqueues everything.
func (m *middleware) finish(c *gin.Context, st *reqState, panicked bool, p any) {
	rec := &st.rec
	if st.body != nil {
		c.Writer = st.body.ResponseWriter // later writes (Gin's 404 body) go straight out
	}
	rec.Duration = time.Since(rec.OccurredAt)
	rec.Route = c.FullPath()
	rec.Status = c.Writer.Status()
	if panicked {
		if !c.Writer.Written() {
			rec.Status = http.StatusInternalServerError
		}
		if p != nil {
			st.setMeta(MetaPanic, fmt.Sprint(p))
		} else {
			st.setMeta(MetaPanic, "handler exited without returning (runtime.Goexit)")
		}
	}
	if b := st.body; b != nil {
		switch {
		case b.hijacked:
			st.setMeta(MetaHijacked, true)
			if c.Request.Header["Upgrade"] != nil {
				rec.Status = http.StatusSwitchingProtocols
			}
			if m.captureResp {
				rec.ResponseBody = b.notCaptured(-1, notCapturedHijacked)
			}
		case b.streamed:
			st.setMeta(MetaStreamed, true)
			if m.captureResp {
				rec.ResponseBody = b.notCaptured(int64(max(c.Writer.Size(), 0)), notCapturedStreamed)
			}
		case m.captureResp && c.Writer.Size() > 0:
			rec.ResponseBody = b.captured(int64(c.Writer.Size()))
		}
	}
	if st.reqBody != nil {
		var partial bool
		if rec.RequestBody, partial = st.reqBody.captured(); partial {
			st.setMeta(MetaRequestBodyPartial, true)
		}
	}
	if len(c.Errors) > 0 {
		st.setMeta(MetaErrors, c.Errors.Errors())
	}

	// Identity the application supplied while the chain ran takes precedence.
	if v, ok := c.Get(ActorKey); ok {
		switch a := v.(type) {
		case core.Actor:
			st.actor = st.appActor(a)
		case *core.Actor:
			if a != nil {
				st.actor = st.appActor(*a)
			}
		}
	}
	if v, ok := c.Get(TenantKey); ok {
		switch t := v.(type) {
		case core.Tenant:
			st.tenant = st.checkTenant(t)
		case *core.Tenant:
			if t != nil {
				st.tenant = st.checkTenant(*t)
			}
		case string:
			st.tenant = st.checkTenant(core.Tenant{ID: t})
		}
	} else if t, err := core.LookupTenant(c.Request.Context()); err != nil {
		st.setMeta(MetaTenantError, err.Error())
		st.tenant = core.Tenant{}
	} else if t != st.ctxTenant {
		st.tenant = t
	}

	rec.RequestID = st.requestID
	rec.Actor = st.actor
	rec.Tenant = st.tenant
	rec.IP = st.ip
	if rt := c.GetString(apiResourceKey); rt != "" {
		rec.ResourceType = rt // the read API marks its own requests (MountAPI)
	}
	switch {
	case panicked || rec.Status >= 500:
		// A handler that wrote its status and then panicked still failed: the client got a
		// response that may be cut short, and the status alone would hide that.
		rec.Severity = core.SeverityError
	case rec.Status == http.StatusUnauthorized || rec.Status == http.StatusForbidden || st.authErr != nil:
		rec.Severity = core.SeverityWarning
	default:
		rec.Severity = core.SeverityInfo
	}
	rec.Metadata = st.meta

	recs := st.col.FinishReserved(st.late)
	// The room reserved for the http record and the room the ORM integrations reserved for their
	// records (FailClosed) is used by the records enqueued below; the rest is given back. Both are
	// nil under FailOpen, and EnqueueReserved is then Enqueue.
	res := st.res
	st.res = nil
	if cres := st.col.TakeReservation(); cres != nil {
		if res == nil {
			res = cres
		} else {
			res.Join(cres)
		}
	}
	anonymous := rec.Actor.ID == "" || rec.Actor.Type == core.ActorAnonymous
	if m.w == nil {
		res.Release()
		return
	}
	if !st.refused && (!anonymous || m.cfg.LogAnonymous || st.authErr != nil || len(recs) > 0) {
		_ = m.w.EnqueueReserved(res, rec) // a refusal is counted and reported by the Writer
	}
	for _, r := range recs {
		st.stamp(r)
		_ = m.w.EnqueueReserved(res, r)
	}
	res.Release()
}

func (st *reqState) appActor(a core.Actor) core.Actor {
	if a.IsZero() {
		return st.actor
	}
	if a.Auth == "" {
		a.Auth = "context"
	}
	return st.checkActor(a)
}

// requestID returns the incoming request id when it is well formed, else a new one.
func (m *middleware) requestID(st *reqState, req *http.Request) string {
	if v := req.Header[m.idHeader]; len(v) > 0 && v[0] != "" {
		if validRequestID(v[0]) {
			return v[0]
		}
		st.setMeta(MetaRequestIDError, "malformed incoming request id replaced")
	}
	return core.NewID().String()
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("._-:/+=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// bearerToken returns the token of an "Authorization: Bearer" header. ok is false when there is
// no such header (other schemes are not this middleware's business).
func bearerToken(req *http.Request) (string, bool) {
	v := req.Header["Authorization"]
	if len(v) == 0 {
		return "", false
	}
	h := strings.TrimSpace(v[0])
	if len(h) < 6 || !strings.EqualFold(h[:6], "bearer") || (len(h) > 6 && h[6] != ' ' && h[6] != '\t') {
		return "", false
	}
	return strings.TrimSpace(h[6:]), true
}

// failureCode is the short code stored in MetaAuthFailure.
func failureCode(err error) string {
	for _, k := range []struct {
		err  error
		code string
	}{
		{ErrExpired, "expired"}, {ErrSignature, "signature"}, {ErrAlgorithm, "algorithm"},
		{ErrIssuer, "issuer"}, {ErrAudience, "audience"}, {ErrMalformed, "malformed"},
		{ErrMissingSubject, "missing_subject"}, {ErrUnknownActorType, "unknown_actor_type"},
		{ErrInvalidTenant, "invalid_tenant"}, {ErrUnknownKey, "unknown_key"},
		{ErrNotYetValid, "not_yet_valid"}, {ErrClaims, "claims"}, {ErrCritical, "crit"},
	} {
		if errors.Is(err, k.err) {
			return k.code
		}
	}
	return "verifier"
}
