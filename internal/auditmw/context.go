package auditmw

import (
	"context"

	"github.com/auditkit/auditkit/core"
)

// auditContext is the request's audit context in one node: it answers core's keys for the
// collector, the request id, the authentication, and the actor and tenant the middleware
// established, exactly as the chain core.NewContext, WithRequestID, WithAuthentication,
// WithActor and WithTenant would, and asks its parent for everything else. It lives inside the
// request's State, so building it allocates nothing; a value is boxed only when it is looked up.
type auditContext struct {
	context.Context
	st *State
}

func (c *auditContext) init(parent context.Context, st *State) {
	c.Context = parent
	c.st = st
}

// stateKey is the key under which the audit context answers its State.
type stateKey struct{}

// StateFrom returns the State of the audited request whose context ctx is or derives from, or
// nil.
func StateFrom(ctx context.Context) *State {
	if ctx == nil {
		return nil
	}
	st, _ := ctx.Value(stateKey{}).(*State)
	return st
}

// Value answers core's keys from the state and delegates any other key to the parent.
func (c *auditContext) Value(key any) any {
	if _, ok := key.(string); !ok && key != nil {
		st := c.st
		switch key {
		case stateKey{}:
			return st
		case coreKeys.collector:
			return &st.Col
		case coreKeys.requestID:
			return st.RequestID
		case coreKeys.auth:
			if st.auth == (core.Authentication{}) {
				return authNone
			}
			return st.auth
		case coreKeys.actor:
			if st.auth.Status == core.AuthVerified {
				return st.ctxActor
			}
		case coreKeys.tenant:
			if !st.ctxTenant.IsZero() {
				return st.ctxTenant
			}
		}
	}
	return c.Context.Value(key)
}

func (c *auditContext) String() string { return "auditkit request context" }

// authNone is the boxed zero Authentication, returned without an allocation.
var authNone any = core.Authentication{}

// coreKeys are the keys under which core's context functions store and look up their values.
// They are learnt by asking core's own lookups which key they read (keyRecorder), so that the
// audit context answers exactly what core.FromContext, RequestIDFromContext,
// AuthenticationFromContext, ActorFromContext and LookupTenant ask.
var coreKeys = func() (k struct{ collector, requestID, auth, actor, tenant any }) {
	r := &keyRecorder{Context: context.Background()}
	_ = core.FromContext(r)
	k.collector = r.take()
	_, _ = core.RequestIDFromContext(r)
	k.requestID = r.take()
	_ = core.AuthenticationFromContext(r)
	k.auth = r.take()
	_, _ = core.ActorFromContext(r)
	k.actor = r.take()
	_, _ = core.LookupTenant(r)
	k.tenant = r.take()
	return k
}()

// keyRecorder is a context that remembers the first key other than a string it is asked for.
type keyRecorder struct {
	context.Context
	key any
}

func (r *keyRecorder) Value(key any) any {
	if _, ok := key.(string); !ok && r.key == nil {
		r.key = key
	}
	return nil
}

func (r *keyRecorder) take() any {
	k := r.key
	if k == nil {
		panic("auditmw: a core context lookup asked for no key")
	}
	r.key = nil
	return k
}
