package httpaudit

import (
	"context"
	"net/http"
	"time"

	"log/slog"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/auditmw"
)

// Errors returned by Verify. Every verification failure wraps ErrInvalidToken and exactly one of
// the more specific errors below, and keeps golang-jwt's own error (when there is one) in its
// chain, so callers can test with errors.Is at the level they need. Its text is one reason,
// "JWT refused: " followed by the specific error's text and, where it helps, one detail
// ("JWT refused: signing algorithm not allowed: none"). ginaudit's errors are the same values.
var (
	// ErrNoToken means there was no bearer token to verify. It does not wrap ErrInvalidToken.
	// An Options.Identify function returns it (wrapped or not) for a request without credentials.
	ErrNoToken = auditmw.ErrNoToken
	// ErrInvalidToken is wrapped by every verification failure.
	ErrInvalidToken = auditmw.ErrInvalidToken
	// ErrMalformed: the token is not a JWS in compact form with strict base64url segments (no
	// padding, no non-canonical trailing bits, no characters outside the URL-safe alphabet), its
	// header or claims are not a JSON object or repeat a member name, it is a nested JWT, or it
	// is too large.
	ErrMalformed = auditmw.ErrMalformed
	// ErrAlgorithm: the header names "none", an unknown algorithm, or one outside the allow-list
	// (which is how algorithm-confusion attempts fail).
	ErrAlgorithm = auditmw.ErrAlgorithm
	// ErrCritical: the header has a "crit" parameter. The verifier understands no header
	// extension, so RFC 7515 §4.1.11 requires refusing every token that marks one critical.
	ErrCritical = auditmw.ErrCritical
	// ErrSignature: the signature does not verify with the configured key (forged or tampered).
	ErrSignature = auditmw.ErrSignature
	// ErrUnknownKey: no key fits the token: an unknown kid, a kid whose key is not a signing
	// key for the token's algorithm (see Verifier), an unreachable JWKS, or an extra fetch that
	// was not allowed yet.
	ErrUnknownKey = auditmw.ErrUnknownKey
	// ErrExpired: exp has passed, beyond the leeway.
	ErrExpired = auditmw.ErrExpired
	// ErrNotYetValid: nbf or iat lies in the future, beyond the leeway.
	ErrNotYetValid = auditmw.ErrNotYetValid
	// ErrIssuer: iss differs from JWTConfig.Issuer.
	ErrIssuer = auditmw.ErrIssuer
	// ErrAudience: no aud value is in JWTConfig.Audience.
	ErrAudience = auditmw.ErrAudience
	// ErrClaims: a required registered claim (exp; aud and iss when configured) is missing, or an
	// identity claim (actor id, actor type, email, tenant id and slug) is not a JSON string.
	ErrClaims = auditmw.ErrClaims
	// ErrMissingSubject: the actor id claim (default sub) is missing or empty.
	ErrMissingSubject = auditmw.ErrMissingSubject
	// ErrUnknownActorType: the actor type claim is neither a defined type nor an alias, compared
	// exactly. The error also wraps core.ErrUnknownActorType.
	ErrUnknownActorType = auditmw.ErrUnknownActorType
	// ErrInvalidTenant: a tenant value fails core.ValidateTenant. It also wraps
	// core.ErrInvalidTenant.
	ErrInvalidTenant = auditmw.ErrInvalidTenant
	// ErrNoKey is returned by NewVerifier for a configuration without a key source.
	ErrNoKey = auditmw.ErrNoKey
)

// Identity is what a verified token says about its bearer: Actor (ID from the actor id claim,
// Type from the actor type claim mapped through the aliases, tenant_user when absent, Email, and
// Auth saying how it was verified: "jwt:HS256", "jwks:RS256", or "unverified"), Tenant (from the
// tenant claims, checked by core.ValidateTenant), Issuer, TokenID and KeyID (iss, jti, kid),
// Algorithm, ExpiresAt, and Claims (every claim of the verified token; read-only).
type Identity = auditmw.Identity

// Verifier verifies bearer tokens against a core.JWTConfig. It is safe for concurrent use. A
// Verifier built for a JWKS URL runs a goroutine that refreshes the key set; Close stops it.
// Verify(ctx, rawToken) returns the Identity of a token, or an error wrapping ErrInvalidToken and
// one specific error; JWTConfig returns the configuration with its defaults.
//
// A token must be a JWS in compact form of at most 16 KiB whose segments are strict base64url
// (one spelling per token), whose header and claims are JSON objects naming no member twice,
// without "crit" and not nested; signed with an algorithm of the allow-list by the configured
// key; with exp, nbf and iat checked (with the leeway) and iss and aud when configured. Identity
// claims are JSON strings taken exactly as they are; a present actor type must equal a defined
// type or an alias byte for byte (a missing one is tenant_user); tenant values must pass
// core.ValidateTenant. From a JWKS only signing keys verify (use "sig", key_ops with "verify",
// never "oct"; a key's alg, RSA of at least 2048 bits, the EC curve of the algorithm), and a
// token with a kid only by that key.
type Verifier = auditmw.Verifier

// VerifierOption adjusts how NewVerifier builds a Verifier.
type VerifierOption = auditmw.VerifierOption

// Defaults of the verified-token cache (WithTokenCache).
const (
	DefaultTokenCacheTTL  = auditmw.DefaultTokenCacheTTL
	DefaultTokenCacheSize = auditmw.DefaultTokenCacheSize
)

// NewVerifier validates cfg and aliases (with core.Config.Validate: key size, algorithm list
// against the key, leeway, alias targets) and returns a Verifier. Defaults are those of
// core.Config.WithDefaults: the algorithms the key allows, a 30s leeway, the default claim names.
//
// For a JWKS URL, NewVerifier fetches the key set once, bounded by ctx; an unreachable URL is
// logged and not an error (keys are fetched again in the background and when an unknown kid
// arrives), so an application can start while its identity provider is down. Close stops the
// background refresh.
func NewVerifier(ctx context.Context, cfg core.JWTConfig, aliases map[string]core.ActorType, opts ...VerifierOption) (*Verifier, error) {
	return auditmw.NewVerifier(ctx, cfg, aliases, opts...)
}

// WithHTTPClient sets the client that fetches the JWKS. Default http.DefaultClient.
func WithHTTPClient(c *http.Client) VerifierOption { return auditmw.WithHTTPClient(c) }

// WithJWKSRefresh sets how often the JWKS is fetched in the background (default 1h) and how often
// at most a token with an unknown kid may trigger an extra fetch (default every 5m). A token whose
// kid is unknown when no extra fetch is allowed fails at once with ErrUnknownKey rather than
// waiting. Zero keeps a default.
func WithJWKSRefresh(interval, unknownKIDEvery time.Duration) VerifierOption {
	return auditmw.WithJWKSRefresh(interval, unknownKIDEvery)
}

// WithLogger sets the logger that receives JWKS fetch failures. Default slog.Default().
func WithLogger(l *slog.Logger) VerifierOption { return auditmw.WithLogger(l) }

// WithTokenCache sets how long a verified token is remembered and how many are kept: a hit costs
// a map lookup instead of a signature check. Only successful verifications are remembered, never
// past the token's exp (plus the leeway), keyed on the token's one canonical spelling; with a
// JWKS a hit counts only while the token's key is still published as a signing key. ttl <= 0
// disables the cache. Defaults DefaultTokenCacheTTL and DefaultTokenCacheSize.
func WithTokenCache(ttl time.Duration, size int) VerifierOption {
	return auditmw.WithTokenCache(ttl, size)
}

// MaxTenantBytes is the longest tenant id or slug CheckTenant accepts (core.MaxTenantIDBytes).
const MaxTenantBytes = auditmw.MaxTenantBytes

// CheckTenant reports whether t can be stored as a tenant: its id and slug each follow
// core.ValidateTenantID, or are empty. A zero tenant is valid. The error wraps ErrInvalidTenant
// and core.ErrInvalidTenant.
func CheckTenant(t core.Tenant) error { return auditmw.CheckTenant(t) }
