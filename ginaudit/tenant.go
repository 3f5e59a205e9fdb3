package ginaudit

import (
	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/auditmw"
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

// MaxTenantBytes is the longest tenant id or slug CheckTenant accepts (core.MaxTenantIDBytes).
const MaxTenantBytes = auditmw.MaxTenantBytes

// CheckTenant reports whether t can be stored as a tenant: its id and slug each follow
// core.ValidateTenantID (1 to MaxTenantBytes ASCII letters, digits and . _ - : @, starting and
// ending with a letter or a digit, without ".."), or are empty. A zero tenant is valid. The error
// wraps ErrInvalidTenant and core.ErrInvalidTenant. It is httpaudit.CheckTenant.
//
// Tenant values arrive from tokens, headers and application code; checking them keeps spaces,
// control characters, quotes, path segments and megabyte-long values out of a column that the
// read side filters and exports by.
func CheckTenant(t core.Tenant) error { return auditmw.CheckTenant(t) }
