package core_test

import (
	"context"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// TestActorFromContextMeansAnActorWasEstablished: ok is true only for a non-zero actor in a
// context whose authentication was not refused, so a refused credential is never more than none.
func TestActorFromContextMeansAnActorWasEstablished(t *testing.T) {
	user := core.Actor{ID: "u-1", Type: core.ActorTenantUser, Auth: "jwt:HS256"}
	anon := core.Actor{Type: core.ActorAnonymous, Auth: "none"}
	bg := context.Background()
	refused := core.Authentication{Status: core.AuthRefused, Reason: "JWT refused: signature is invalid"}
	cases := []struct {
		name     string
		ctx      context.Context
		actor    core.Actor
		ok       bool
		status   core.AuthStatus
		reason   string
		statusTx string
	}{
		{"nothing", bg, core.Actor{}, false, core.AuthNone, "", "none"},
		{"actor", core.WithActor(bg, user), user, true, core.AuthVerified, "", "verified"},
		{"zero actor", core.WithActor(bg, core.Actor{}), core.Actor{}, false, core.AuthNone, "", "none"},
		{"verified", core.WithAuthentication(core.WithActor(bg, user), core.Authentication{Status: core.AuthVerified}), user, true, core.AuthVerified, "", "verified"},
		{"refused", core.WithAuthentication(bg, refused), core.Actor{}, false, core.AuthRefused, refused.Reason, "refused"},
		{"refused with an actor stored", core.WithAuthentication(core.WithActor(bg, anon), refused), core.Actor{}, false, core.AuthRefused, refused.Reason, "refused"},
		{"none stated", core.WithAuthentication(bg, core.Authentication{}), core.Actor{}, false, core.AuthNone, "", "none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := core.ActorFromContext(tc.ctx)
			if a != tc.actor || ok != tc.ok {
				t.Errorf("ActorFromContext = %+v, %v; want %+v, %v", a, ok, tc.actor, tc.ok)
			}
			auth := core.AuthenticationFromContext(tc.ctx)
			if auth.Status != tc.status || auth.Reason != tc.reason || auth.Status.String() != tc.statusTx {
				t.Errorf("AuthenticationFromContext = %+v (%s); want %v %q", auth, auth.Status, tc.status, tc.reason)
			}
		})
	}
}

// TestContextTenantIsValidated: a tenant that fails ValidateTenant is never handed out by the
// context, and StampFromContext leaves such a record without a tenant, noting why.
func TestContextTenantIsValidated(t *testing.T) {
	for _, id := range badTenantIDs {
		if id == "" {
			continue
		}
		ctx := core.WithTenant(context.Background(), core.Tenant{ID: id})
		if got, ok := core.TenantFromContext(ctx); ok || !got.IsZero() {
			t.Errorf("TenantFromContext(%q) = %+v, %v", id, got, ok)
		}
		if _, err := core.LookupTenant(ctx); err == nil {
			t.Errorf("LookupTenant(%q): no error", id)
		}
		meta := map[string]any{"k": "v"}
		r := &core.Record{Kind: core.KindCustom, Metadata: meta}
		core.StampFromContext(ctx, r)
		if !r.Tenant.IsZero() || r.Metadata["tenant_error"] == nil || r.Metadata["k"] != "v" {
			t.Errorf("stamped %q: tenant %+v metadata %v", id, r.Tenant, r.Metadata)
		}
		if len(meta) != 1 {
			t.Errorf("the caller's metadata map was changed: %v", meta)
		}
	}
	ctx := core.WithTenant(context.Background(), core.Tenant{ID: "t-1", Slug: "acme"})
	r := &core.Record{Kind: core.KindCustom}
	core.StampFromContext(ctx, r)
	if r.Tenant != (core.Tenant{ID: "t-1", Slug: "acme"}) || r.Metadata != nil {
		t.Errorf("valid tenant stamped as %+v, metadata %v", r.Tenant, r.Metadata)
	}
}

// TestStampFromContextAfterARefusedToken: no actor is stamped from a context whose
// authentication was refused.
func TestStampFromContextAfterARefusedToken(t *testing.T) {
	ctx := core.WithActor(context.Background(), core.Actor{ID: "forged", Type: core.ActorPlatformAdmin})
	ctx = core.WithAuthentication(ctx, core.Authentication{Status: core.AuthRefused, Reason: "JWT refused: signature is invalid"})
	r := &core.Record{Kind: core.KindCustom}
	core.StampFromContext(ctx, r)
	if !r.Actor.IsZero() {
		t.Errorf("stamped actor %+v from a refused context", r.Actor)
	}
}
