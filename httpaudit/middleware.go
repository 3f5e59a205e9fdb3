package httpaudit

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/auditmw"
)

// DefaultRequestIDHeader is the header that carries the request id in both directions.
const DefaultRequestIDHeader = auditmw.DefaultRequestIDHeader

// Metadata keys the middleware writes into the http record. Their names avoid the redaction
// patterns (a key containing "token" would be masked).
const (
	MetaAuthError          = auditmw.MetaAuthError          // why the credentials were refused (string)
	MetaAuthFailure        = auditmw.MetaAuthFailure        // a short code: expired, signature, algorithm, issuer, audience, claims, malformed, crit, missing_subject, unknown_actor_type, invalid_tenant, unknown_key, not_yet_valid, verifier, identify
	MetaJWTIssuer          = auditmw.MetaJWTIssuer          // iss of the verified token
	MetaJWTID              = auditmw.MetaJWTID              // jti of the verified token
	MetaJWTKeyID           = auditmw.MetaJWTKeyID           // kid of the verified token
	MetaErrors             = auditmw.MetaErrors             // errors noted with AddError, as strings
	MetaPanic              = auditmw.MetaPanic              // the panic value, formatted
	MetaRemoteIP           = auditmw.MetaRemoteIP           // the socket peer, when it differs from the recorded client IP
	MetaTenantError        = auditmw.MetaTenantError        // a tenant value that failed CheckTenant and was ignored
	MetaActorError         = auditmw.MetaActorError         // an application-supplied actor type that is not valid
	MetaRequestIDError     = auditmw.MetaRequestIDError     // the incoming request id was malformed and replaced
	MetaHijacked           = auditmw.MetaHijacked           // the connection was hijacked (WebSocket)
	MetaStreamed           = auditmw.MetaStreamed           // the response was streamed (flushed or SSE) and not captured
	MetaRequestBodyPartial = auditmw.MetaRequestBodyPartial // the handler stopped reading the request body before its end
)

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
	Identify func(r *http.Request) (Identity, error)

	// ClientIP, when set, returns the address to record. Nil applies Config.TrustedProxies: the
	// socket's peer address (r.RemoteAddr), unless that peer is a trusted proxy, in which case
	// X-Forwarded-For (then X-Real-IP) is walked from the right and the first address that is not
	// a trusted proxy is recorded.
	ClientIP func(r *http.Request) string

	// Route, when set, returns the route template of the request once the handler returned, for
	// routers that keep it elsewhere than r.Pattern; it is given the request the middleware passed
	// on. For chi, with the middleware registered by the router's Use:
	//
	//	Route: func(r *http.Request) string { return chi.RouteContext(r.Context()).RoutePattern() }
	//
	// Nil means r.Pattern, which http.ServeMux (Go 1.22 patterns) sets when the middleware wraps
	// the mux. A route set with SetRoute takes precedence.
	Route func(r *http.Request) string

	// RequestIDHeader names the request id header. Default DefaultRequestIDHeader. An incoming
	// value of 1 to 128 letters, digits and . _ - : / + = @ is kept; anything else is replaced
	// by a new UUIDv7. The id is echoed in the response header of the same name.
	RequestIDHeader string

	// Logger receives configuration problems found when the middleware is built. Nil means
	// Config.Logger, then slog.Default(). Nothing is logged per request.
	Logger *slog.Logger
}

type middleware struct {
	e        *auditmw.Engine
	identify func(*http.Request) (Identity, error)
	clientIP func(*http.Request) string
	route    func(*http.Request) string
	next     http.Handler
}

// Middleware returns the audit middleware, a standard net/http middleware for http.ServeMux,
// chi, gorilla/mux, echo (echo.WrapMiddleware) and any router that takes a
// func(http.Handler) http.Handler:
//
//	mux := http.NewServeMux()
//	mux.HandleFunc("POST /orders", createOrder)
//	srv := &http.Server{Addr: ":8080", Handler: httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg})(mux)}
//
// For each request that is neither excluded (Config.ExcludesPath) nor of a skipped method
// (Config.SkipMethods), it puts a core.Collector, the request id, the actor and the tenant into
// the request's context; handlers pass r.Context() to the ORM. When the handler returns (or
// panics), the ORM records of the request are stamped with its request id, actor, tenant and IP
// and enqueued together with one http record (method, route template, path, query, status,
// duration, client IP, user agent, request id). Records that arrive later (a transaction
// committed by a goroutine that outlives the request) are stamped and enqueued as they arrive.
// A panic is recorded (status 500 unless one was written) and continues to the server or an
// outer recovery middleware.
//
// Requests without an actor are recorded only when Config.LogAnonymous is set, when credentials
// were presented and refused, or when they changed data through the ORM.
//
// The tenant is taken, in this order, from the application (core.WithTenant in the request
// context before the middleware, or SetTenant while the handler runs), from the token's tenant
// claims, and from Config.TenantHeader (off by default: clients can forge headers). Every value
// is checked with core.ValidateTenant: a token whose tenant claims fail is refused; any other
// value that fails is ignored and noted in the metadata (tenant_error).
//
// The handler's context carries a core.Authentication: AuthVerified with the actor
// (core.ActorFromContext ok), AuthRefused with the reason and no actor, or AuthNone.
//
// Under core.FailClosed (the request context's policy, set by an earlier middleware with
// core.WithFailurePolicy or FailurePolicy, else the Writer's), room for the request's record is
// reserved before the handler runs, and a request for which there is none is answered 503 with
// Retry-After and is not recorded; see FailurePolicy. Under core.FailOpen a record the Writer
// cannot accept is dropped and counted by it, and the request is served.
//
// The response writer the handler gets supports http.Flusher, http.Hijacker and
// http.NewResponseController (Unwrap).
func Middleware(opts Options) func(http.Handler) http.Handler {
	e := auditmw.NewEngine(auditmw.Settings{
		Name:            "httpaudit",
		Writer:          opts.Writer,
		Config:          opts.Config,
		Verifier:        opts.Verifier,
		CustomIdentity:  opts.Identify != nil,
		RequestIDHeader: opts.RequestIDHeader,
		Logger:          opts.Logger,
	})
	return func(next http.Handler) http.Handler {
		return &middleware{e: e, identify: opts.Identify, clientIP: opts.ClientIP, route: opts.Route, next: next}
	}
}

// reqState is everything one audited request needs, allocated once: the shared state, the copy
// of the request that carries the audit context, and the response writer the handler gets.
type reqState struct {
	auditmw.State
	m   *middleware
	in  *http.Request // the request as the middleware received it
	req http.Request
	rw  responseWriter

	mu        sync.Mutex // guards the values below, which handlers may set from goroutines
	actor     core.Actor
	hasActor  bool
	tenant    core.Tenant
	hasTenant bool
	route     string
	errs      []string
}

func (st *reqState) identify() (Identity, error) { return st.m.identify(st.in) }

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := m.e
	if e.Skips(r) {
		m.next.ServeHTTP(w, r)
		return
	}
	// Under FailClosed, room for the http record is reserved before anything else is done, and a
	// request whose record could not be kept is refused before its handler runs.
	res, err := core.Admit(r.Context(), e.Writer, 1)
	if err != nil {
		refuse(w, r, e, err)
		return
	}
	st := &reqState{m: m, in: r}
	st.Owner = st
	e.Begin(&st.State, r, w.Header(), res)
	if m.clientIP != nil {
		st.IP = auditmw.ParseClientIP(m.clientIP(r))
	} else {
		st.IP = e.ClientAddr(&st.State, r)
	}
	var custom func() (Identity, error)
	if m.identify != nil {
		custom = st.identify
	}
	ctx := e.Identify(&st.State, r, custom)
	// The request copy lives in the state: WithContext's own copy stays on the stack.
	st.req = *r.WithContext(ctx)
	st.rw.ResponseWriter = w
	if e.CaptureReq {
		st.Rec.RequestBody, st.ReqBody = auditmw.CaptureRequest(&st.req, e.Limit)
	}
	limit := 0
	if e.CaptureResp {
		limit = e.Limit
	}
	st.rw.cap = auditmw.NewCapture(limit, w.Header())
	st.rw.noted = e.CaptureResp || r.Header["Upgrade"] != nil

	completed := false
	defer func() {
		if completed {
			return
		}
		// The handler panicked (or called runtime.Goexit): record it, then let the panic continue
		// to an outer recovery middleware or to the server.
		p := recover()
		m.finish(st, true, p)
		if p != nil {
			panic(p)
		}
	}()
	m.next.ServeHTTP(&st.rw, &st.req)
	completed = true
	m.finish(st, false, nil)
}

// finish reports what the handler did to the shared engine, which writes the records.
func (m *middleware) finish(st *reqState, panicked bool, p any) {
	rw := &st.rw
	o := auditmw.Outcome{Panicked: panicked, Panic: p, Upgrade: st.in.Header["Upgrade"] != nil,
		Status: rw.status, Written: rw.wrote, Size: rw.size}
	if !rw.wrote {
		o.Status = http.StatusOK // what the server sends for a handler that wrote nothing
	}
	if rw.noted {
		o.Body = &rw.cap
	}
	st.mu.Lock()
	o.Route = st.route
	o.Errors = st.errs
	if st.hasActor {
		o.Actor, o.HasActor = st.actor, true
	}
	if st.hasTenant {
		o.Tenant, o.HasTenant = st.tenant, true
	}
	st.mu.Unlock()
	if o.Route == "" {
		if m.route != nil {
			o.Route = m.route(&st.req)
		} else {
			o.Route = st.req.Pattern
		}
	}
	m.e.Finish(&st.State, &o)
}

// state returns the state of the audited request whose context ctx is or derives from.
func state(ctx context.Context) *reqState {
	if s := auditmw.StateFrom(ctx); s != nil {
		st, _ := s.Owner.(*reqState)
		return st
	}
	return nil
}

// SetActor sets the actor of the audited request whose context ctx is (r.Context() in a handler
// or a middleware after Middleware), for example after the application authenticated a session.
// It is read when the handler returns and takes precedence over the token, for the request's
// http record and every ORM record of the request without an identity of its own; it does not
// change what core.ActorFromContext returns inside the handler. An empty Auth is recorded as
// "context"; an actor type that is not valid is recorded as anonymous with actor_error. It
// reports false when ctx belongs to no audited request.
func SetActor(ctx context.Context, a core.Actor) bool {
	st := state(ctx)
	if st == nil {
		return false
	}
	st.mu.Lock()
	st.actor, st.hasActor = a, true
	st.mu.Unlock()
	return true
}

// SetTenant sets the tenant of the audited request whose context ctx is, like SetActor: it takes
// precedence over the token's claims and the tenant header, and is checked with
// core.ValidateTenant (a value that fails leaves the request without a tenant, noted as
// tenant_error). It reports false when ctx belongs to no audited request.
func SetTenant(ctx context.Context, t core.Tenant) bool {
	st := state(ctx)
	if st == nil {
		return false
	}
	st.mu.Lock()
	st.tenant, st.hasTenant = t, true
	st.mu.Unlock()
	return true
}

// SetRoute sets the route template recorded for the audited request whose context ctx is, for a
// router that keeps it where Options.Route cannot read it (echo: SetRoute(c.Request().Context(),
// c.Path()) in a middleware after the audit one). It reports false when ctx belongs to no
// audited request.
func SetRoute(ctx context.Context, route string) bool {
	st := state(ctx)
	if st == nil {
		return false
	}
	st.mu.Lock()
	st.route = route
	st.mu.Unlock()
	return true
}

// AddError notes err in the record of the audited request whose context ctx is (metadata
// "errors", a list of strings, as Gin's c.Error does for ginaudit), for an error the handler
// answered without failing the request's status, or to keep the cause of a 500. It reports false
// when ctx belongs to no audited request or err is nil.
func AddError(ctx context.Context, err error) bool {
	st := state(ctx)
	if st == nil || err == nil {
		return false
	}
	st.mu.Lock()
	st.errs = append(st.errs, err.Error())
	st.mu.Unlock()
	return true
}

// refuse answers 503 with Retry-After to a request whose audit record could not be admitted under
// FailClosed; the handler never runs. The refusal is logged (at most once a second, with counts).
func refuse(w http.ResponseWriter, r *http.Request, e *auditmw.Engine, err error) {
	body := e.Refuse(r, err)
	h := w.Header()
	h.Set("Retry-After", auditmw.RetryAfter)
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(body)
}

// FailurePolicy returns a middleware that sets p as the failure policy of the request's context
// (core.WithFailurePolicy), for the handlers it wraps: the request's http record (when the audit
// middleware runs before it) and the ORM changes its handler makes follow p instead of the
// Writer's policy.
//
// Under core.FailClosed a request whose audit record cannot be kept (the writer's queue or spool
// is full, the writer is closed, the database refuses it) is answered 503 Service Unavailable
// with a Retry-After header and {"error": "audit trail unavailable", "reason": "..."}, and its
// handler never runs. For example, an application that is fail-open except for its
// administration routes:
//
//	mux.Handle("POST /admin/users/{id}/roles", httpaudit.FailurePolicy(core.FailClosed)(grantRole))
//	handler := httpaudit.Middleware(httpaudit.Options{Writer: w, Config: cfg})(mux)
//
// Inside the audit middleware, FailurePolicy(core.FailClosed) reserves the room for the
// request's record itself. Requests the middleware does not audit (Config.ExcludePaths,
// Config.SkipMethods) are never refused.
func FailurePolicy(p core.FailurePolicy) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := core.WithFailurePolicy(r.Context(), p)
			if st := auditmw.StateFrom(ctx); st != nil && p == core.FailClosed && st.Res == nil {
				res, err := core.Admit(ctx, st.E.Writer, 1)
				if err != nil {
					st.Refused = true
					refuse(w, r, st.E, err)
					return
				}
				st.Res = res
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
