package core

import (
	"context"
	"fmt"
	"maps"
)

type ctxKey int

const (
	actorKey ctxKey = iota
	tenantKey
	requestIDKey
	collectorKey
	authKey
	policyKey
)

// RequestContextKey is the string key under which an HTTP integration stores the request's audit
// context (the context.Context carrying its Collector, actor, tenant, request id and
// authentication) in a web framework's own request object, when that object is itself a
// context.Context whose Value answers only string keys. ginaudit.Middleware does this with
// c.Set(core.RequestContextKey, ctx), so that ORM calls given the *gin.Context (db.WithContext(c),
// ent's Save(c)) are recorded exactly as calls given c.Request.Context(). Every lookup of this
// package (FromContext, ActorFromContext, LookupTenant, TenantFromContext, RequestIDFromContext,
// AuthenticationFromContext, StampFromContext, Dispatch) consults the context under this key for a
// value the context itself does not carry. Applications do not set it.
const RequestContextKey = "auditkit.context"

// value returns ctx.Value(key), or, when ctx does not carry key, the value the context stored
// under RequestContextKey carries (one level only).
func value(ctx context.Context, key ctxKey) any {
	if v := ctx.Value(key); v != nil {
		return v
	}
	if inner, ok := ctx.Value(RequestContextKey).(context.Context); ok && inner != nil && inner != ctx {
		return inner.Value(key)
	}
	return nil
}

// AuthStatus is the outcome of authenticating a request: no credentials, credentials that
// established an actor, or credentials that were refused.
type AuthStatus int

// The authentication outcomes. The zero value is AuthNone.
const (
	// AuthNone: no credentials were presented (or nothing authenticated the context). No actor.
	AuthNone AuthStatus = iota
	// AuthVerified: an actor was established, by a verified token, the application's own
	// Identify function, or WithActor (with JWTConfig.UnsafeSkipVerification, by a token that
	// only a gateway in front verified). ActorFromContext returns it with ok true; its Auth
	// field says how it was established ("jwt:HS256", "unverified", "custom", "context").
	AuthVerified
	// AuthRefused: credentials were presented and refused (a forged, expired or malformed token,
	// an Identify error). No actor: a refused credential is never more than no credential.
	AuthRefused
)

// String returns "none", "verified" or "refused".
func (s AuthStatus) String() string {
	switch s {
	case AuthNone:
		return "none"
	case AuthVerified:
		return "verified"
	case AuthRefused:
		return "refused"
	}
	return fmt.Sprintf("AuthStatus(%d)", int(s))
}

// Authentication says how the request of a context was authenticated. The HTTP middleware stores
// one in every request context it audits; read it with AuthenticationFromContext.
type Authentication struct {
	// Status is the outcome.
	Status AuthStatus
	// Reason says why credentials were refused, as recorded in the audit record's metadata
	// ("JWT refused: signature is invalid"); empty unless Status is AuthRefused.
	Reason string
}

// WithAuthentication returns a context carrying the outcome of authenticating its request. A
// context whose Authentication is AuthRefused yields no actor from ActorFromContext, whatever
// WithActor stored.
func WithAuthentication(ctx context.Context, a Authentication) context.Context {
	return context.WithValue(ctx, authKey, a)
}

// AuthenticationFromContext returns the outcome stored by WithAuthentication. A context without
// one reports AuthVerified when it carries an actor (WithActor, for example in a job or a
// consumer) and AuthNone otherwise. Handlers that must tell "no credentials" from "refused
// credentials" (to answer 401 with a reason, or to rate-limit forgeries) read this; handlers that
// only need the actor read ActorFromContext.
func AuthenticationFromContext(ctx context.Context) Authentication {
	if a, ok := value(ctx, authKey).(Authentication); ok {
		return a
	}
	if _, ok := ActorFromContext(ctx); ok {
		return Authentication{Status: AuthVerified}
	}
	return Authentication{}
}

// WithActor returns a context carrying the actor. Records made with the context (ORM changes,
// Log) that name no actor of their own take this one.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey, a)
}

// ActorFromContext returns the actor of the context. ok is true only when an actor was
// established: WithActor stored a non-zero actor and the context's Authentication (if any) is
// not AuthRefused. A request whose token was refused therefore yields ok false, exactly like a
// request without a token; AuthenticationFromContext tells the two apart.
func ActorFromContext(ctx context.Context) (Actor, bool) {
	a, ok := value(ctx, actorKey).(Actor)
	if !ok || a.IsZero() {
		return Actor{}, false
	}
	if auth, ok := value(ctx, authKey).(Authentication); ok && auth.Status == AuthRefused {
		return Actor{}, false
	}
	return a, true
}

// WithTenant returns a context carrying the tenant.
func WithTenant(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, tenantKey, t)
}

// TenantFromContext returns the tenant stored by WithTenant. ok is false when no tenant, the zero
// tenant or a tenant that fails ValidateTenant was stored: a context never hands out a tenant id
// that could not be stored.
func TenantFromContext(ctx context.Context) (Tenant, bool) {
	t, err := LookupTenant(ctx)
	return t, err == nil && !t.IsZero()
}

// LookupTenant returns the tenant stored by WithTenant, or the zero tenant when there is none. A
// stored tenant that fails ValidateTenant is not returned: the error (wrapping ErrInvalidTenant)
// says why, so that a caller such as the HTTP middleware can record the problem instead of
// silently falling back to another tenant source.
func LookupTenant(ctx context.Context) (Tenant, error) {
	t, _ := value(ctx, tenantKey).(Tenant)
	if err := ValidateTenant(t); err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// WithRequestID returns a context carrying a correlation id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the id stored by WithRequestID.
func RequestIDFromContext(ctx context.Context) (string, bool) {
	id, ok := value(ctx, requestIDKey).(string)
	return id, ok
}

// NewContext returns a context carrying the request-scoped collector c.
func NewContext(ctx context.Context, c *Collector) context.Context {
	return context.WithValue(ctx, collectorKey, c)
}

// FromContext returns the collector stored by NewContext, or nil.
func FromContext(ctx context.Context) *Collector {
	c, _ := value(ctx, collectorKey).(*Collector)
	return c
}

// metaTenantError is the metadata key under which a tenant that failed ValidateTenant is noted.
const metaTenantError = "tenant_error"

// StampFromContext fills the identity fields of r that are empty (actor, tenant, request id, the
// client address of the request's collector, and the trace and span ids of the OpenTelemetry span
// in ctx: TraceFromContext) from the context. Only what ActorFromContext and
// TenantFromContext return with ok is stamped: no actor after a refused token, no tenant that
// fails ValidateTenant (the record keeps no tenant and notes the problem under the metadata key
// "tenant_error").
func StampFromContext(ctx context.Context, r *Record) {
	stampMetadata(ctx, r)
	stampTrace(ctx, r)
	if !r.IP.IsValid() {
		if c := FromContext(ctx); c != nil {
			r.IP = c.ip
		}
	}
	if r.Actor.IsZero() {
		if a, ok := ActorFromContext(ctx); ok {
			r.Actor = a
		}
	}
	if r.Tenant.IsZero() {
		switch t, err := LookupTenant(ctx); {
		case err != nil:
			// Recorded without a tenant (visible to platform admins only), and says why.
			m := make(map[string]any, len(r.Metadata)+1) // the caller's map stays as it was
			maps.Copy(m, r.Metadata)
			m[metaTenantError] = err.Error()
			r.Metadata = m
		default:
			r.Tenant = t
		}
	}
	if r.RequestID == "" {
		if id, ok := RequestIDFromContext(ctx); ok {
			r.RequestID = id
		}
	}
}

// Dispatch delivers records produced while serving ctx. When ctx carries a Collector the records
// join it (the HTTP middleware stamps and writes them when the request ends); otherwise they take
// their identity from the context and are enqueued on w. ORM integrations call it once a change is
// known to be durable (after commit).
func Dispatch(ctx context.Context, w *Writer, recs ...*Record) error {
	return DispatchReserved(ctx, w, nil, recs...)
}

// DispatchReserved is Dispatch for records whose room was reserved before their change committed
// (Admit, Writer.Reserve): the reservation travels with them to the request's Collector, or is
// used to enqueue them on w, and what is left of it is released. res may be nil.
func DispatchReserved(ctx context.Context, w *Writer, res *Reservation, recs ...*Record) error {
	if c := FromContext(ctx); c != nil {
		for _, r := range recs {
			stampMetadata(ctx, r)
		}
		// The request's identity is stamped when it ends; the span is the one of the change.
		for _, r := range recs {
			stampTrace(ctx, r)
		}
		c.AddReserved(res, recs...)
		return nil
	}
	defer res.Release()
	if w == nil {
		return ErrNoWriter
	}
	var first error
	for _, r := range recs {
		StampFromContext(ctx, r)
		if err := w.EnqueueReserved(res, r); err != nil && first == nil {
			first = err
		}
	}
	return first
}
