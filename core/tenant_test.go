package core_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// badTenantIDs are refused by core.ValidateTenantID; every entry point is tested with them.
var badTenantIDs = []string{
	"", ".", "..", "...", "a..b", "t-1..", "..t-1", "-t1", "@acme", ":acme", "_acme", ".acme",
	"acme-", "acme.", "acme:", "acme@", "acme_", "t 1", " t-1", "t-1 ", "t\t1", "t\n1", "t/1",
	"../t-2", "t\\1", "t'1", `t"1`, "t;1", "t%2e%2e", "t\x00", "tеnant", // Cyrillic е
	"t\u00a01", "ｔ1", strings.Repeat("a", core.MaxTenantIDBytes+1),
}

var goodTenantIDs = []string{
	"t", "7", "t-1", "T_1", "acme", "org:acme", "user@acme.example", "a.b.c", "a-.-b", "a_b-c:d@e.f",
	"0198f6a2-7c1e-7b4e-9d1a-3c2b1a0f9e8d", "12345", strings.Repeat("a", core.MaxTenantIDBytes),
}

func TestValidateTenantID(t *testing.T) {
	for _, s := range badTenantIDs {
		if err := core.ValidateTenantID(s); !errors.Is(err, core.ErrInvalidTenant) {
			t.Errorf("ValidateTenantID(%q) = %v, want ErrInvalidTenant", s, err)
		}
		if s == "" {
			continue
		}
		if err := core.ValidateTenant(core.Tenant{ID: s}); !errors.Is(err, core.ErrInvalidTenant) {
			t.Errorf("ValidateTenant(id %q) = %v, want ErrInvalidTenant", s, err)
		}
		if err := core.ValidateTenant(core.Tenant{ID: "t-1", Slug: s}); !errors.Is(err, core.ErrInvalidTenant) {
			t.Errorf("ValidateTenant(slug %q) = %v, want ErrInvalidTenant", s, err)
		}
	}
	for _, s := range goodTenantIDs {
		if err := core.ValidateTenantID(s); err != nil {
			t.Errorf("ValidateTenantID(%q) = %v, want nil", s, err)
		}
	}
	if err := core.ValidateTenant(core.Tenant{}); err != nil {
		t.Errorf("zero tenant: %v", err)
	}
	if got := core.ValidateTenantID("..").Error(); got != `invalid tenant id: '.' at byte 0 (it must start and end with a letter or a digit)` {
		t.Errorf("message %q", got)
	}
}
