package auditmw

import "github.com/auditkit/auditkit/core"

// MaxTenantBytes is the longest tenant id or slug CheckTenant accepts (core.MaxTenantIDBytes).
const MaxTenantBytes = core.MaxTenantIDBytes

// CheckTenant reports whether t can be stored as a tenant: its id and slug each follow
// core.ValidateTenantID (1 to MaxTenantBytes ASCII letters, digits and . _ - : @, starting and
// ending with a letter or a digit, without ".."), or are empty. A zero tenant is valid. The error
// wraps ErrInvalidTenant and core.ErrInvalidTenant.
//
// Tenant values arrive from tokens, headers and application code; checking them keeps spaces,
// control characters, quotes, path segments and megabyte-long values out of a column that the
// read side filters and exports by.
func CheckTenant(t core.Tenant) error {
	if err := core.ValidateTenant(t); err != nil {
		return &tenantErr{err: err}
	}
	return nil
}

// tenantErr is CheckTenant's error: core's finding, also matching ErrInvalidTenant.
type tenantErr struct{ err error }

func (e *tenantErr) Error() string   { return e.err.Error() }
func (e *tenantErr) Unwrap() []error { return []error{ErrInvalidTenant, e.err} }
