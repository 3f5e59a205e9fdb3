package core_test

import (
	"context"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// stringKeyContext answers string keys from its own map and nothing else, as a *gin.Context does
// without ContextWithFallback.
type stringKeyContext struct {
	context.Context
	keys map[string]any
}

func (c stringKeyContext) Value(key any) any {
	if k, ok := key.(string); ok {
		return c.keys[k]
	}
	return nil
}

// TestLookupsFallBackToRequestContextKey: every lookup answers from the context stored under
// RequestContextKey when the context itself carries nothing, prefers what the context carries,
// and a context with neither answers as before.
func TestLookupsFallBackToRequestContextKey(t *testing.T) {
	col := &core.Collector{}
	inner := core.NewContext(context.Background(), col)
	inner = core.WithActor(inner, core.Actor{ID: "u-1", Type: core.ActorTenantUser})
	inner = core.WithTenant(inner, core.Tenant{ID: "t-1"})
	inner = core.WithRequestID(inner, "req-1")
	inner = core.WithAuthentication(inner, core.Authentication{Status: core.AuthVerified})
	carrier := stringKeyContext{Context: context.Background(), keys: map[string]any{core.RequestContextKey: inner}}

	own := core.WithTenant(core.WithActor(carrier, core.Actor{ID: "u-2", Type: core.ActorService}), core.Tenant{ID: "t-2"})
	refused := stringKeyContext{Context: context.Background(), keys: map[string]any{
		core.RequestContextKey: core.WithAuthentication(inner, core.Authentication{Status: core.AuthRefused}),
	}}
	for _, tc := range []struct {
		name               string
		ctx                context.Context
		actor, tenant, req string
		collector          bool
		auth               core.AuthStatus
	}{
		{"fallback", carrier, "u-1", "t-1", "req-1", true, core.AuthVerified},
		{"own values first", own, "u-2", "t-2", "req-1", true, core.AuthVerified},
		{"refused in fallback", refused, "", "t-1", "req-1", true, core.AuthRefused},
		{"neither", stringKeyContext{Context: context.Background()}, "", "", "", false, core.AuthNone},
		{"not a context under the key", stringKeyContext{Context: context.Background(), keys: map[string]any{core.RequestContextKey: "x"}}, "", "", "", false, core.AuthNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := core.ActorFromContext(tc.ctx)
			tn, _ := core.TenantFromContext(tc.ctx)
			id, _ := core.RequestIDFromContext(tc.ctx)
			if a.ID != tc.actor || tn.ID != tc.tenant || id != tc.req {
				t.Errorf("actor %q tenant %q request %q, want %q %q %q", a.ID, tn.ID, id, tc.actor, tc.tenant, tc.req)
			}
			if got := core.FromContext(tc.ctx) == col; got != tc.collector {
				t.Errorf("collector found %v, want %v", got, tc.collector)
			}
			if got := core.AuthenticationFromContext(tc.ctx).Status; got != tc.auth {
				t.Errorf("authentication %v, want %v", got, tc.auth)
			}
			var r core.Record
			core.StampFromContext(tc.ctx, &r)
			if r.Actor.ID != tc.actor || r.Tenant.ID != tc.tenant || r.RequestID != tc.req {
				t.Errorf("stamped actor %q tenant %q request %q", r.Actor.ID, r.Tenant.ID, r.RequestID)
			}
		})
	}
}
