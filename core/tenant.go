package core

import (
	"errors"
	"fmt"
)

// MaxTenantIDBytes is the longest tenant id (or slug) ValidateTenantID accepts.
const MaxTenantIDBytes = 128

// ErrInvalidTenant is wrapped by every error ValidateTenantID and ValidateTenant return.
var ErrInvalidTenant = errors.New("invalid tenant")

// ValidateTenantID reports whether s may be stored as a tenant id. This is the one definition of
// a tenant id, applied at every entry: token claims, the tenant header, tenants put into a context
// with WithTenant, the read API's tenant_id parameter, tenant administration and ingest. Slugs
// follow the same rule. A tenant id is
//
//   - 1 to MaxTenantIDBytes bytes of ASCII letters, digits and the separators . _ - : @
//     (which covers UUIDs, numeric ids, slugs and prefixed ids such as "org:acme");
//   - starting and ending with a letter or a digit;
//   - without "..".
//
// So a tenant id is never a path segment such as "." or "..", never looks like an option ("-x"),
// an address part ("@acme") or a scheme (":acme"), and carries no spaces, quotes, control
// characters or non-ASCII look-alikes. The error wraps ErrInvalidTenant.
func ValidateTenantID(s string) error { return validateTenantValue("id", s) }

// ValidateTenant checks the id and the slug of t with the rule of ValidateTenantID. Empty fields
// are allowed: the zero tenant means "no tenant".
func ValidateTenant(t Tenant) error {
	if t.ID != "" {
		if err := validateTenantValue("id", t.ID); err != nil {
			return err
		}
	}
	if t.Slug != "" {
		return validateTenantValue("slug", t.Slug)
	}
	return nil
}

func validateTenantValue(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w %s: empty", ErrInvalidTenant, what)
	}
	if len(s) > MaxTenantIDBytes {
		return fmt.Errorf("%w %s: %d bytes long (at most %d)", ErrInvalidTenant, what, len(s), MaxTenantIDBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == '-' || c == ':' || c == '@':
			if i == 0 || i == len(s)-1 {
				return fmt.Errorf("%w %s: %q at byte %d (it must start and end with a letter or a digit)", ErrInvalidTenant, what, c, i)
			}
			if c == '.' && s[i+1] == '.' {
				return fmt.Errorf("%w %s: \"..\" at byte %d", ErrInvalidTenant, what, i)
			}
		default:
			return fmt.Errorf("%w %s: %q at byte %d (allowed: letters, digits, . _ - : @)", ErrInvalidTenant, what, c, i)
		}
	}
	return nil
}
