package ginaudit

import (
	"fmt"

	"github.com/auditkit/auditkit/core"
)

// Keys under which an application's own middleware can hand identity to the audit middleware with
// c.Set, for example after resolving the tenant from a subdomain or authenticating a session:
//
//	c.Set(ginaudit.TenantKey, core.Tenant{ID: "t-42", Slug: "acme"}) // or a string: the tenant id
//	c.Set(ginaudit.ActorKey, core.Actor{ID: "u-7", Type: core.ActorTenantUser, Auth: "session"})
//
// The middleware reads them when the handler chain returns, so the setting middleware may run
// before or after it. They take precedence over the token and the tenant header, and apply to the
// request's HTTP record and to every ORM record of the request that has no identity of its own.
// Because they are read at the end, they do not change what core.TenantFromContext and
// core.ActorFromContext return inside the handler (the identity from the token); an application
// that needs its own identity there too puts it in the request context with core.WithTenant or
// core.WithActor before the audit middleware runs.
const (
	TenantKey = "auditkit.tenant"
	ActorKey  = "auditkit.actor"
)

// MaxTenantBytes is the longest tenant id or slug CheckTenant accepts.
const MaxTenantBytes = 128

// CheckTenant reports whether t can be stored as a tenant: its id and slug are each at most
// MaxTenantBytes long and consist of ASCII letters, digits and the characters . _ - : @ only (which
// covers UUIDs, numeric ids, slugs and prefixed ids such as "org:acme"). A zero tenant is valid.
// The error wraps ErrInvalidTenant.
//
// Tenant values arrive from tokens, headers and application code; checking them keeps spaces,
// control characters, quotes and megabyte-long values out of a column that the read side filters
// and exports by.
func CheckTenant(t core.Tenant) error {
	if err := tenantProblem(t); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTenant, err)
	}
	return nil
}

// tenantProblem is CheckTenant's finding, not yet wrapped.
func tenantProblem(t core.Tenant) error {
	if err := checkTenantValue("id", t.ID); err != nil {
		return err
	}
	return checkTenantValue("slug", t.Slug)
}

func checkTenantValue(what, s string) error {
	if len(s) > MaxTenantBytes {
		return fmt.Errorf("tenant %s is %d bytes long (at most %d)", what, len(s), MaxTenantBytes)
	}
	for i := 0; i < len(s); i++ {
		if !tenantByte(s[i]) {
			return fmt.Errorf("tenant %s contains %q at byte %d (allowed: letters, digits, . _ - : @)", what, s[i], i)
		}
	}
	return nil
}

func tenantByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '-', c == ':', c == '@':
		return true
	}
	return false
}
