package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// TestValidateTenantIDIsCores: the read side accepts exactly the tenant ids core accepts, and
// names the field in its error.
func TestValidateTenantIDIsCores(t *testing.T) {
	for _, s := range []string{
		"", ".", "..", "a..b", "../t", "-acme", "@acme", ":acme", "_acme", "acme.", "acme-", "t 1", "t\x00",
		"tеnant", strings.Repeat("a", 129),
		"t", "t-1", "org:acme", "user@acme.example", "0198f6a2-7c1e-7b4e-9d1a-3c2b1a0f9e8d", strings.Repeat("a", 128),
	} {
		err := store.ValidateTenantID("tenant_id", s)
		if want := core.ValidateTenantID(s) == nil; (err == nil) != want {
			t.Errorf("ValidateTenantID(%q) = %v, core says valid=%v", s, err, want)
		}
		if err != nil && (!errors.Is(err, store.ErrInvalidTenant) || !strings.Contains(err.Error(), "tenant_id: ")) {
			t.Errorf("ValidateTenantID(%q) = %v, want ErrInvalidTenant naming the field", s, err)
		}
	}
}

// TestScopeValidateFollowsTenantRule: a tenant scope accepts exactly the tenant ids core accepts,
// so no read can be scoped to an id that no record can carry.
func TestScopeValidateFollowsTenantRule(t *testing.T) {
	for _, s := range []string{
		".", "..", "a..b", "../t", "-acme", "@acme", ":acme", "_acme", "acme.", "acme-", "t 1", "t\x00",
		"a/b", "a%b", "tеnant", strings.Repeat("a", 129),
		"t", "t-1", "org:acme", "user@acme.example", "0198f6a2-7c1e-7b4e-9d1a-3c2b1a0f9e8d", strings.Repeat("a", 128),
	} {
		err := store.TenantScope(s).Validate()
		if want := core.ValidateTenantID(s) == nil; (err == nil) != want {
			t.Errorf("TenantScope(%q).Validate() = %v, core says valid=%v", s, err, want)
		}
		if err != nil && !(errors.Is(err, store.ErrInvalidScope) && errors.Is(err, store.ErrInvalidTenant) && errors.Is(err, core.ErrInvalidTenant)) {
			t.Errorf("TenantScope(%q).Validate() = %v, want ErrInvalidScope, store.ErrInvalidTenant and core.ErrInvalidTenant", s, err)
		}
	}
	for _, sc := range []store.Scope{{}, {TenantID: "acme", AllTenants: true}} {
		if err := sc.Validate(); !errors.Is(err, store.ErrInvalidScope) {
			t.Errorf("%+v.Validate() = %v, want ErrInvalidScope", sc, err)
		}
	}
	if err := store.AllTenantsScope().Validate(); err != nil {
		t.Errorf("AllTenantsScope().Validate() = %v", err)
	}
}
