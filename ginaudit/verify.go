package ginaudit

import (
	"context"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/httpaudit"
)

// Errors returned by Verify: those of httpaudit, the same values. Every verification failure
// wraps ErrInvalidToken and exactly one of the more specific errors, and keeps golang-jwt's own
// error (when there is one) in its chain, so callers can test with errors.Is at the level they
// need. Its text is one reason, "JWT refused: " followed by the specific error's text and, where
// it helps, one detail ("JWT refused: signing algorithm not allowed: none").
var (
	// ErrNoToken means there was no bearer token to verify. It does not wrap ErrInvalidToken.
	ErrNoToken = httpaudit.ErrNoToken
	// ErrInvalidToken is wrapped by every verification failure.
	ErrInvalidToken = httpaudit.ErrInvalidToken
	// ErrMalformed: the token is not a JWS in compact form with strict base64url segments, its
	// header or claims are not a JSON object or repeat a member name, it is a nested JWT, or it
	// is too large.
	ErrMalformed = httpaudit.ErrMalformed
	// ErrAlgorithm: the header names "none", an unknown algorithm, or one outside the allow-list.
	ErrAlgorithm = httpaudit.ErrAlgorithm
	// ErrCritical: the header has a "crit" parameter (RFC 7515 §4.1.11).
	ErrCritical = httpaudit.ErrCritical
	// ErrSignature: the signature does not verify with the configured key.
	ErrSignature = httpaudit.ErrSignature
	// ErrUnknownKey: no key fits the token (see Verifier).
	ErrUnknownKey = httpaudit.ErrUnknownKey
	// ErrExpired: exp has passed, beyond the leeway.
	ErrExpired = httpaudit.ErrExpired
	// ErrNotYetValid: nbf or iat lies in the future, beyond the leeway.
	ErrNotYetValid = httpaudit.ErrNotYetValid
	// ErrIssuer: iss differs from JWTConfig.Issuer.
	ErrIssuer = httpaudit.ErrIssuer
	// ErrAudience: no aud value is in JWTConfig.Audience.
	ErrAudience = httpaudit.ErrAudience
	// ErrClaims: a required registered claim is missing, or an identity claim is not a string.
	ErrClaims = httpaudit.ErrClaims
	// ErrMissingSubject: the actor id claim (default sub) is missing or empty.
	ErrMissingSubject = httpaudit.ErrMissingSubject
	// ErrUnknownActorType: the actor type claim is neither a defined type nor an alias, compared
	// exactly. The error also wraps core.ErrUnknownActorType.
	ErrUnknownActorType = httpaudit.ErrUnknownActorType
	// ErrInvalidTenant: a tenant value fails core.ValidateTenant. It also wraps
	// core.ErrInvalidTenant.
	ErrInvalidTenant = httpaudit.ErrInvalidTenant
	// ErrNoKey is returned by NewVerifier for a configuration without a key source.
	ErrNoKey = httpaudit.ErrNoKey
)

// Identity is what a verified token says about its bearer (httpaudit.Identity): the actor, the
// tenant, the issuer, token id and key id, the algorithm, the expiry and every claim.
type Identity = httpaudit.Identity

// Verifier verifies bearer tokens against a core.JWTConfig. It is safe for concurrent use; Close
// stops the refresh goroutine of a Verifier built for a JWKS URL. What a token must be (strict
// compact JWS, allow-listed algorithm, exact actor types, JWKS signing keys only) is documented
// on httpaudit.Verifier, which it embeds: the same Verifier serves ginaudit's middleware and API
// and, as v.Verifier, httpaudit's middleware.
type Verifier struct {
	*httpaudit.Verifier

	cfg core.JWTConfig // the configuration with defaults, as the Verifier checks tokens
}

// VerifierOption adjusts how NewVerifier builds a Verifier.
type VerifierOption = httpaudit.VerifierOption

// WithHTTPClient sets the client that fetches the JWKS. Default http.DefaultClient.
func WithHTTPClient(c *http.Client) VerifierOption { return httpaudit.WithHTTPClient(c) }

// WithJWKSRefresh sets how often the JWKS is fetched in the background (default 1h) and how often
// at most a token with an unknown kid may trigger an extra fetch (default every 5m). A token whose
// kid is unknown when no extra fetch is allowed fails at once with ErrUnknownKey rather than
// waiting. Zero keeps a default.
func WithJWKSRefresh(interval, unknownKIDEvery time.Duration) VerifierOption {
	return httpaudit.WithJWKSRefresh(interval, unknownKIDEvery)
}

// WithLogger sets the logger that receives JWKS fetch failures. Default slog.Default().
func WithLogger(l *slog.Logger) VerifierOption { return httpaudit.WithLogger(l) }

// NewVerifier validates cfg and aliases (with core.Config.Validate: key size, algorithm list
// against the key, leeway, alias targets) and returns a Verifier. Defaults are those of
// core.Config.WithDefaults: the algorithms the key allows, a 30s leeway, the default claim names.
//
// For a JWKS URL, NewVerifier fetches the key set once, bounded by ctx; an unreachable URL is
// logged and not an error (keys are fetched again in the background and when an unknown kid
// arrives), so an application can start while its identity provider is down. Close stops the
// background refresh.
func NewVerifier(ctx context.Context, cfg core.JWTConfig, aliases map[string]core.ActorType, opts ...VerifierOption) (*Verifier, error) {
	v, err := httpaudit.NewVerifier(ctx, cfg, aliases, opts...)
	if err != nil {
		return nil, err
	}
	return &Verifier{Verifier: v, cfg: v.JWTConfig()}, nil
}

// Close stops the JWKS refresh goroutine. Keys already fetched stay usable. Close is a no-op for
// verifiers without a JWKS URL and may be called more than once.
func (v *Verifier) Close() {
	if v != nil {
		v.Verifier.Close()
	}
}

// truncate shortens s to at most n bytes (on a rune boundary) for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
