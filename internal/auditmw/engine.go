// Package auditmw is the HTTP audit middleware that httpaudit (net/http) and ginaudit (Gin) share:
// the token Verifier, client address and tenant resolution, body capture, the request's audit
// context and the record written when a request ends. Each framework package supplies only what
// differs between frameworks: how the response writer is wrapped, where the route template, the
// status and the application's own identity values come from, and how a refusal is answered.
package auditmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/auditkit/auditkit/core"
)

// DefaultRequestIDHeader is the header that carries the request id in both directions.
const DefaultRequestIDHeader = "X-Request-ID"

// maxRequestIDBytes bounds an incoming request id; a longer one is replaced.
const maxRequestIDBytes = 128

// Metadata keys the middleware writes into the http record. Their names avoid the redaction
// patterns (a key containing "token" would be masked).
const (
	MetaAuthError          = "auth_error"
	MetaAuthFailure        = "auth_failure"
	MetaJWTIssuer          = "jwt_iss"
	MetaJWTID              = "jwt_jti"
	MetaJWTKeyID           = "jwt_kid"
	MetaErrors             = "errors"
	MetaPanic              = "panic"
	MetaRemoteIP           = "remote_ip"
	MetaTenantError        = "tenant_error"
	MetaActorError         = "actor_error"
	MetaRequestIDError     = "request_id_error"
	MetaHijacked           = "hijacked"
	MetaStreamed           = "response_streamed"
	MetaRequestBodyPartial = "request_body_partial"
)

// Settings configure an Engine.
type Settings struct {
	Name            string // the integration's package name, which prefixes its log messages
	Writer          *core.Writer
	Config          core.Config
	Verifier        *Verifier
	CustomIdentity  bool // the integration resolves identity itself (its Identify option)
	RequestIDHeader string
	Logger          *slog.Logger
}

// Engine is the framework-independent part of an audit middleware, built once.
type Engine struct {
	Writer      *core.Writer // receives the records; nil discards them
	Cfg         core.Config  // the configuration with its defaults
	Verifier    *Verifier    // checks bearer tokens; nil without a key source or with a custom identity
	Logger      *slog.Logger // receives configuration problems and refusals
	Refusals    RefusalLog   // requests refused under FailClosed, reported at most once a second
	CaptureReq  bool         // request bodies are captured (Config.CaptureRequestBody)
	CaptureResp bool         // response bodies are captured (Config.CaptureResponseBody)
	Limit       int          // the most bytes of a body kept (Config.MaxBodySizeBytes)

	name        string
	verifierErr error
	custom      bool
	proxies     []netip.Prefix
	idHeader    string
	tenantHdr   string
}

// NewEngine builds an Engine, logging the configuration problems it finds (a request never fails
// because of them).
func NewEngine(s Settings) *Engine {
	cfg := s.Config.WithDefaults()
	logger := s.Logger
	if logger == nil {
		logger = cfg.Logger
	}
	e := &Engine{
		Writer:      s.Writer,
		Cfg:         cfg,
		Verifier:    s.Verifier,
		Logger:      logger,
		CaptureReq:  cfg.CaptureRequestBody,
		CaptureResp: cfg.CaptureResponseBody,
		Limit:       cfg.MaxBodySizeBytes,
		name:        s.Name,
		custom:      s.CustomIdentity,
		idHeader:    textproto.CanonicalMIMEHeaderKey(s.RequestIDHeader),
	}
	e.Refusals.logger = logger
	e.Refusals.name = s.Name
	if e.idHeader == "" {
		e.idHeader = textproto.CanonicalMIMEHeaderKey(DefaultRequestIDHeader)
	}
	if cfg.TenantHeader != "" {
		e.tenantHdr = textproto.CanonicalMIMEHeaderKey(cfg.TenantHeader)
	}
	if err := s.Config.Validate(); err != nil {
		logger.Error(s.Name+": invalid audit configuration", "error", err)
	}
	if e.Writer == nil {
		logger.Error(s.Name + ": Options.Writer is nil; audit records are discarded")
	}
	for _, p := range cfg.TrustedProxies {
		if pfx, err := ParseProxy(p); err == nil {
			e.proxies = append(e.proxies, pfx)
		}
	}
	if e.Verifier == nil && !e.custom && cfg.JWT.Enabled() {
		v, err := NewVerifier(context.Background(), cfg.JWT, cfg.ActorTypeAliases, WithLogger(logger))
		if err != nil {
			logger.Error(s.Name+": cannot verify JWTs; requests with a token are recorded as failed verifications", "error", err)
			e.verifierErr = fmt.Errorf("verifier unavailable: %w", err)
		}
		e.Verifier = v
	}
	if cfg.JWT.UnsafeSkipVerification && !e.custom {
		logger.Warn(s.Name + ": JWT signatures are not verified (UnsafeSkipVerification); any client can claim any identity unless a gateway in front verifies every token")
	}
	return e
}

// Skips reports whether req is not audited (Config.SkipMethods, Config.ExcludePaths).
func (e *Engine) Skips(req *http.Request) bool {
	return len(e.Cfg.SkipMethods) > 0 && slices.Contains(e.Cfg.SkipMethods, req.Method) || e.Cfg.ExcludesPath(req.URL.Path)
}

// State is everything one audited request needs. Integrations embed it in their own per-request
// state, so that a request allocates it once.
type State struct {
	Rec core.Record    // the request's http record
	Col core.Collector // the records the ORM integrations add through the request's context
	E   *Engine        // the engine the request runs under

	// Res is the room reserved for the http record under FailClosed (nil under FailOpen). The
	// records of the request are enqueued in it and in the room the ORM integrations reserved
	// through the collector, and what is left is released when the request ends.
	Res *core.Reservation
	// Refused is set when the request was answered 503 because its record could not be admitted
	// (a failure policy set after the middleware): its http record is not written.
	Refused bool

	// Identity stamped on the request's ORM records, final once the collector is finished.
	RequestID string
	Actor     core.Actor
	Tenant    core.Tenant
	IP        netip.Addr

	ReqBody *TeeBody // a request body captured as the handler reads it
	AuthErr error
	Owner   any // the integration's own per-request state, which embeds this one

	// What the audit context answers, fixed when it is built: goroutines of the handler may read
	// them while Finish updates Actor and Tenant.
	ctx       auditContext
	ctxActor  core.Actor
	ctxTenant core.Tenant // also to notice an application's change
	idHeader  [1]string   // the response header's value slice, without an allocation of its own
	idBuf     [36]byte    // the bytes of a generated request id (RequestID points into it)
	meta      map[string]any
	auth      core.Authentication // what the handler's context says about authentication
}

// SetMeta sets a metadata key of the http record.
func (st *State) SetMeta(k string, v any) {
	if st.meta == nil {
		st.meta = make(map[string]any, 4)
	}
	st.meta[k] = v
}

// stamp fills the identity fields of an ORM record that it does not set itself.
func (st *State) stamp(r *core.Record) {
	if r.RequestID == "" {
		r.RequestID = st.RequestID
	}
	if r.Actor.IsZero() {
		r.Actor = st.Actor
	}
	if r.Tenant.IsZero() {
		r.Tenant = st.Tenant
	}
	if !r.IP.IsValid() {
		r.IP = st.IP
	}
}

// LateRecord handles a record added to the collector after the request ended: it is stamped with
// the request's identity and enqueued in the room reserved for it (core.LateRecords).
func (st *State) LateRecord(res *core.Reservation, r *core.Record) {
	st.stamp(r)
	if st.E.Writer != nil {
		_ = st.E.Writer.EnqueueReserved(res, r) // a refusal is counted and reported by the Writer
	}
}

// Begin starts the request's record: time, method, path, query, user agent, the trace context of
// the request's span, and request id (also set in the response headers h). res is the room Admit
// reserved (nil under FailOpen).
func (e *Engine) Begin(st *State, req *http.Request, h http.Header, res *core.Reservation) {
	st.E = e
	st.Res = res
	rec := &st.Rec
	rec.OccurredAt = time.Now()
	rec.Kind = core.KindHTTP
	rec.Method = req.Method
	rec.Path = req.URL.Path
	// The query is parsed when the Writer encodes the record, off the request path.
	rec.SetRawQuery(req.URL.RawQuery)
	rec.UserAgent = req.UserAgent()
	// The span the application's OpenTelemetry instrumentation, running before the middleware,
	// started for the request: the record links to its trace.
	rec.TraceID, rec.SpanID = core.TraceFromContext(req.Context())
	st.RequestID = e.requestID(st, req)
	st.idHeader[0] = st.RequestID
	h[e.idHeader] = st.idHeader[:]
}

// Identify establishes the actor and the tenant at the start of the request, puts the client
// address into the collector, and returns the request's audit context. custom is the
// integration's Identify option bound to the request (nil: the bearer token).
func (e *Engine) Identify(st *State, req *http.Request, custom func() (Identity, error)) context.Context {
	ctx := req.Context()
	e.resolveIdentity(st, req, ctx, custom)
	st.Col.SetClientIP(st.IP)
	st.ctxTenant = st.Tenant
	st.ctxActor = st.Actor
	st.ctx.init(ctx, st)
	return &st.ctx
}

// resolveIdentity establishes the actor and the tenant at the start of the request.
func (e *Engine) resolveIdentity(st *State, req *http.Request, ctx context.Context, custom func() (Identity, error)) {
	var id Identity
	var err error
	if a, ok := core.ActorFromContext(ctx); ok && !a.IsZero() {
		id.Actor = a // an outer middleware of the application established it
		if id.Actor.Auth == "" {
			id.Actor.Auth = "context"
		}
	} else if custom != nil {
		id, err = custom()
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
	} else if !e.custom && (e.Verifier != nil || e.verifierErr != nil) {
		if raw, ok := BearerToken(req); ok {
			switch {
			case e.verifierErr != nil:
				err = e.verifierErr
			case raw == "":
				err = tokenError(ErrMalformed, "no credentials after the scheme", nil)
			default:
				id, err = e.Verifier.Verify(ctx, raw)
			}
			if err != nil {
				st.authFailure(FailureCode(err), err)
			}
		}
	}
	if err == nil {
		st.Actor = st.checkActor(id.Actor)
		if id.Issuer != "" && (e.Verifier == nil || e.Verifier.cfg.Issuer == "") {
			st.SetMeta(MetaJWTIssuer, id.Issuer) // with JWTConfig.Issuer set it is always that
		}
		if id.TokenID != "" {
			st.SetMeta(MetaJWTID, id.TokenID)
		}
		if id.KeyID != "" {
			st.SetMeta(MetaJWTKeyID, id.KeyID)
		}
	} else {
		st.Actor = core.Actor{Type: core.ActorAnonymous, Auth: "none"}
	}
	// What the handler's context says: a refused credential is never more than none.
	switch {
	case st.AuthErr != nil:
		st.auth = core.Authentication{Status: core.AuthRefused, Reason: st.AuthErr.Error()}
	case !st.Actor.IsZero():
		st.auth = core.Authentication{Status: core.AuthVerified}
	}

	switch t, terr := core.LookupTenant(ctx); {
	case terr != nil:
		// The application named a tenant that cannot be stored: no tenant, rather than falling
		// back to another source the application did not choose.
		st.SetMeta(MetaTenantError, terr.Error())
	case !t.IsZero():
		st.Tenant = t
	case !id.Tenant.IsZero():
		st.Tenant = id.Tenant // checked by Verify; a custom Identify is checked here
		if custom != nil {
			st.Tenant = st.CheckTenant(id.Tenant)
		}
	case e.tenantHdr != "":
		if v := req.Header[e.tenantHdr]; len(v) > 0 && v[0] != "" {
			st.Tenant = st.CheckTenant(core.Tenant{ID: v[0]})
		}
	}
}

func (st *State) authFailure(code string, err error) {
	st.AuthErr = err
	st.SetMeta(MetaAuthFailure, code)
	st.SetMeta(MetaAuthError, err.Error())
}

// CheckTenant returns t, or the zero tenant with a note when t fails core.ValidateTenant.
func (st *State) CheckTenant(t core.Tenant) core.Tenant {
	if err := core.ValidateTenant(t); err != nil {
		st.SetMeta(MetaTenantError, err.Error())
		return core.Tenant{}
	}
	return t
}

// checkActor returns a, with an actor type that is not valid replaced by anonymous (a record
// with an invalid type would be refused by the Writer, and guessing could grant privileges); such
// a request is recorded like a failed verification.
func (st *State) checkActor(a core.Actor) core.Actor {
	if a.Type != "" && !a.Type.Valid() {
		st.AuthErr = fmt.Errorf("actor type %q is not valid; recorded as anonymous", a.Type)
		st.SetMeta(MetaActorError, st.AuthErr.Error())
		a.Type = core.ActorAnonymous
	}
	return a
}

// AppActor returns the actor an application supplied while the chain ran (a core.Actor or a
// *core.Actor), checked; any other value leaves the actor as it was.
func (st *State) AppActor(v any) core.Actor {
	var a core.Actor
	switch x := v.(type) {
	case core.Actor:
		a = x
	case *core.Actor:
		if x == nil {
			return st.Actor
		}
		a = *x
	default:
		return st.Actor
	}
	if a.IsZero() {
		return st.Actor
	}
	if a.Auth == "" {
		a.Auth = "context"
	}
	return st.checkActor(a)
}

// AppTenant returns the tenant an application supplied while the chain ran (a core.Tenant, a
// *core.Tenant or a tenant id), checked; any other value leaves the tenant as it was.
func (st *State) AppTenant(v any) core.Tenant {
	switch t := v.(type) {
	case core.Tenant:
		return st.CheckTenant(t)
	case *core.Tenant:
		if t != nil {
			return st.CheckTenant(*t)
		}
	case string:
		return st.CheckTenant(core.Tenant{ID: t})
	}
	return st.Tenant
}

// Outcome is what the integration reports when the handler chain has returned or panicked.
type Outcome struct {
	Ctx          context.Context // the request's context as the chain left it (an application's tenant change)
	Upgrade      bool            // the request asked for a protocol upgrade
	Route        string          // the route template, "" when none matched
	Status       int             // the status written (200 when the handler wrote none)
	Written      bool            // the status line was written
	Size         int             // response body bytes written
	Body         *Capture        // the response capture, nil when the writer was not wrapped
	Panicked     bool            // the chain panicked or called runtime.Goexit
	Panic        any             // the panic value
	Errors       []string        // errors the framework collected
	Actor        any             // an actor the application supplied, when HasActor
	HasActor     bool            //
	Tenant       any             // a tenant the application supplied, when HasTenant
	HasTenant    bool            //
	ResourceType string          // the record's resource type, when the integration sets one
}

// Finish completes the http record, stamps the ORM records and enqueues everything.
func (e *Engine) Finish(st *State, o *Outcome) {
	rec := &st.Rec
	rec.Duration = time.Since(rec.OccurredAt)
	rec.Route = o.Route
	rec.Status = o.Status
	if o.Panicked {
		if !o.Written {
			rec.Status = http.StatusInternalServerError
		}
		if o.Panic != nil {
			st.SetMeta(MetaPanic, fmt.Sprint(o.Panic))
		} else {
			st.SetMeta(MetaPanic, "handler exited without returning (runtime.Goexit)")
		}
	}
	if b := o.Body; b != nil {
		switch {
		case b.Hijacked:
			st.SetMeta(MetaHijacked, true)
			if o.Upgrade {
				rec.Status = http.StatusSwitchingProtocols
			}
			if e.CaptureResp {
				rec.ResponseBody = b.NotCaptured(-1, notCapturedHijacked)
			}
		case b.Streamed:
			st.SetMeta(MetaStreamed, true)
			if e.CaptureResp {
				rec.ResponseBody = b.NotCaptured(int64(max(o.Size, 0)), notCapturedStreamed)
			}
		case e.CaptureResp && o.Size > 0:
			rec.ResponseBody = b.Captured(int64(o.Size))
		}
	}
	if st.ReqBody != nil {
		var partial bool
		if rec.RequestBody, partial = st.ReqBody.captured(); partial {
			st.SetMeta(MetaRequestBodyPartial, true)
		}
	}
	if len(o.Errors) > 0 {
		st.SetMeta(MetaErrors, o.Errors)
	}

	// Identity the application supplied while the chain ran takes precedence.
	if o.HasActor {
		st.Actor = st.AppActor(o.Actor)
	}
	if o.HasTenant {
		st.Tenant = st.AppTenant(o.Tenant)
	} else if o.Ctx != nil {
		if t, err := core.LookupTenant(o.Ctx); err != nil {
			st.SetMeta(MetaTenantError, err.Error())
			st.Tenant = core.Tenant{}
		} else if t != st.ctxTenant {
			st.Tenant = t
		}
	}

	rec.RequestID = st.RequestID
	rec.Actor = st.Actor
	rec.Tenant = st.Tenant
	rec.IP = st.IP
	if o.ResourceType != "" {
		rec.ResourceType = o.ResourceType
	}
	switch {
	case o.Panicked || rec.Status >= 500:
		// A handler that wrote its status and then panicked still failed: the client got a
		// response that may be cut short, and the status alone would hide that.
		rec.Severity = core.SeverityError
	case rec.Status == http.StatusUnauthorized || rec.Status == http.StatusForbidden || st.AuthErr != nil:
		rec.Severity = core.SeverityWarning
	default:
		rec.Severity = core.SeverityInfo
	}
	rec.Metadata = st.meta

	recs := st.Col.FinishTo(st) // an interface holding st: no function value to allocate
	// The room reserved for the http record and the room the ORM integrations reserved for their
	// records (FailClosed) is used by the records enqueued below; the rest is given back. Both are
	// nil under FailOpen, and EnqueueReserved is then Enqueue.
	res := st.Res
	st.Res = nil
	if cres := st.Col.TakeReservation(); cres != nil {
		if res == nil {
			res = cres
		} else {
			res.Join(cres)
		}
	}
	anonymous := rec.Actor.ID == "" || rec.Actor.Type == core.ActorAnonymous
	if e.Writer == nil {
		res.Release()
		return
	}
	if !st.Refused && (!anonymous || e.Cfg.LogAnonymous || st.AuthErr != nil || len(recs) > 0) {
		_ = e.Writer.EnqueueReserved(res, rec) // a refusal is counted and reported by the Writer
	}
	for _, r := range recs {
		st.stamp(r)
		_ = e.Writer.EnqueueReserved(res, r)
	}
	res.Release()
}

// requestID returns the incoming request id when it is well formed, else a new one.
func (e *Engine) requestID(st *State, req *http.Request) string {
	if v := req.Header[e.idHeader]; len(v) > 0 && v[0] != "" {
		if validRequestID(v[0]) {
			return v[0]
		}
		st.SetMeta(MetaRequestIDError, "malformed incoming request id replaced")
	}
	// The text of a new id lives in the state, which outlives every holder of the string (the
	// record, the header, the context all keep the state reachable): no allocation of its own.
	id := core.NewID()
	encodeUUID(&st.idBuf, id)
	return unsafe.String(&st.idBuf[0], len(st.idBuf))
}

// encodeUUID writes the canonical text form of id (8-4-4-4-12 lowercase hexadecimal digits).
func encodeUUID(dst *[36]byte, id [16]byte) {
	const hex = "0123456789abcdef"
	j := 0
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hex[b>>4], hex[b&0x0f]
		j += 2
	}
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

// BearerToken returns the token of an "Authorization: Bearer" header. ok is false when there is
// no such header (other schemes are not the middleware's business).
func BearerToken(req *http.Request) (string, bool) {
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

// failureCodes map verification errors to the short codes stored in MetaAuthFailure.
var failureCodes = []struct {
	err  error
	code string
}{
	{ErrExpired, "expired"}, {ErrSignature, "signature"}, {ErrAlgorithm, "algorithm"},
	{ErrIssuer, "issuer"}, {ErrAudience, "audience"}, {ErrMalformed, "malformed"},
	{ErrMissingSubject, "missing_subject"}, {ErrUnknownActorType, "unknown_actor_type"},
	{ErrInvalidTenant, "invalid_tenant"}, {ErrUnknownKey, "unknown_key"},
	{ErrNotYetValid, "not_yet_valid"}, {ErrClaims, "claims"}, {ErrCritical, "crit"},
}

// FailureCode is the short code stored in MetaAuthFailure.
func FailureCode(err error) string {
	for _, k := range failureCodes {
		if errors.Is(err, k.err) {
			return k.code
		}
	}
	return "verifier"
}
