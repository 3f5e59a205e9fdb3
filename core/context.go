package core

import "context"

type ctxKey int

const (
	actorKey ctxKey = iota
	tenantKey
	requestIDKey
	collectorKey
)

// WithActor returns a context carrying the actor. Records made with the context (ORM changes,
// Log) that name no actor of their own take this one.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey, a)
}

// ActorFromContext returns the actor stored by WithActor.
func ActorFromContext(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey).(Actor)
	return a, ok
}

// WithTenant returns a context carrying the tenant.
func WithTenant(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, tenantKey, t)
}

// TenantFromContext returns the tenant stored by WithTenant.
func TenantFromContext(ctx context.Context) (Tenant, bool) {
	t, ok := ctx.Value(tenantKey).(Tenant)
	return t, ok
}

// WithRequestID returns a context carrying a correlation id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the id stored by WithRequestID.
func RequestIDFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey).(string)
	return id, ok
}

// NewContext returns a context carrying the request-scoped collector c.
func NewContext(ctx context.Context, c *Collector) context.Context {
	return context.WithValue(ctx, collectorKey, c)
}

// FromContext returns the collector stored by NewContext, or nil.
func FromContext(ctx context.Context) *Collector {
	c, _ := ctx.Value(collectorKey).(*Collector)
	return c
}

// StampFromContext fills the identity fields of r that are empty (actor, tenant, request id, and
// the client address of the request's collector) from the context.
func StampFromContext(ctx context.Context, r *Record) {
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
		if t, ok := TenantFromContext(ctx); ok {
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
	if c := FromContext(ctx); c != nil {
		c.Add(recs...)
		return nil
	}
	if w == nil {
		return ErrNoWriter
	}
	var first error
	for _, r := range recs {
		StampFromContext(ctx, r)
		if err := w.Enqueue(r); err != nil && first == nil {
			first = err
		}
	}
	return first
}
