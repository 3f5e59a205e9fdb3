package ginaudit

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/auditkit/auditkit/core"
)

// Errors returned by Verify. Every verification failure wraps ErrInvalidToken and exactly one of
// the more specific errors below, and keeps golang-jwt's own error in its chain, so callers can
// test with errors.Is at the level they need.
var (
	// ErrNoToken means there was no bearer token to verify. It does not wrap ErrInvalidToken.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken is wrapped by every verification failure.
	ErrInvalidToken = errors.New("invalid token")
	// ErrMalformed: the token is not a JWS in compact form, or is too large.
	ErrMalformed = errors.New("malformed JWT")
	// ErrAlgorithm: the header names "none", an unknown algorithm, or one outside the allow-list
	// (which is how algorithm-confusion attempts fail).
	ErrAlgorithm = errors.New("signing algorithm not allowed")
	// ErrSignature: the signature does not verify with the configured key (forged or tampered).
	ErrSignature = errors.New("signature is invalid")
	// ErrUnknownKey: no key fits the token: an unknown kid, a kid whose key has another
	// algorithm, an unreachable JWKS, or an extra fetch that was not allowed yet.
	ErrUnknownKey = errors.New("no verification key for the JWT")
	// ErrExpired: exp has passed, beyond the leeway.
	ErrExpired = errors.New("token is expired")
	// ErrNotYetValid: nbf or iat lies in the future, beyond the leeway.
	ErrNotYetValid = errors.New("token is not valid yet")
	// ErrIssuer: iss differs from JWTConfig.Issuer.
	ErrIssuer = errors.New("token has the wrong issuer")
	// ErrAudience: no aud value is in JWTConfig.Audience.
	ErrAudience = errors.New("token has the wrong audience")
	// ErrClaims: a required registered claim (exp; aud and iss when configured) is missing, or a
	// claim has the wrong type.
	ErrClaims = errors.New("token claims are invalid")
	// ErrMissingSubject: the actor id claim (default sub) is missing or empty.
	ErrMissingSubject = errors.New("token has no subject")
	// ErrUnknownActorType: the actor type claim is neither a defined type nor an alias. The error
	// also wraps core.ErrUnknownActorType.
	ErrUnknownActorType = errors.New("token has an unknown actor type")
	// ErrInvalidTenant: a tenant value fails CheckTenant.
	ErrInvalidTenant = errors.New("invalid tenant")
	// ErrNoKey is returned by NewVerifier for a configuration without a key source.
	ErrNoKey = errors.New("no JWT key configured (set a secret, a public key or a JWKS URL)")
)

// maxTokenBytes bounds the tokens Verify parses: a bearer token larger than this is refused before
// any decoding, so that a hostile header cannot make every request decode megabytes of JSON.
const maxTokenBytes = 16 << 10

// maxActorIDBytes bounds the actor id taken from a token.
const maxActorIDBytes = 256

// Identity is what a verified token says about its bearer.
type Identity struct {
	// Actor is the verified actor: ID from the actor id claim (default sub), Type from the actor
	// type claim mapped through the aliases (tenant_user when the claim is absent), Email from the
	// email claim, and Auth saying how it was verified: "jwt:HS256", "jwks:RS256", or "unverified"
	// when JWTConfig.UnsafeSkipVerification is set.
	Actor core.Actor
	// Tenant comes from the tenant claims (default tenant_id and tenant_slug), checked by CheckTenant.
	Tenant core.Tenant
	// Issuer is the iss claim, TokenID the jti claim, KeyID the kid header; each empty when absent.
	Issuer, TokenID, KeyID string
	// Algorithm is the JWS algorithm the token was verified with.
	Algorithm string
	// ExpiresAt is the exp claim.
	ExpiresAt time.Time
	// Claims holds every claim of the verified token, decoded by encoding/json. Callers may read
	// application claims (roles, scopes) from it; it must not be modified.
	Claims map[string]any
}

// Verifier verifies bearer tokens against a core.JWTConfig. It is safe for concurrent use. A
// Verifier built for a JWKS URL runs a goroutine that refreshes the key set; Close stops it.
type Verifier struct {
	cfg     core.JWTConfig
	aliases map[string]core.ActorType
	parser  *jwt.Parser
	valid   *jwt.Validator // for unsafe, signature-less parsing
	allowed []string
	prefix  string // "jwt:" or "jwks:"
	static  any    // the key for a secret or a public key
	staticF jwt.Keyfunc
	jwks    keyfunc.Keyfunc
	cancel  context.CancelFunc
	logger  *slog.Logger
	now     func() time.Time // the clock of token checks and of the cache
	cache   *tokenCache
}

// VerifierOption adjusts how NewVerifier builds a Verifier.
type VerifierOption func(*verifierOptions)

type verifierOptions struct {
	client          *http.Client
	refresh         time.Duration
	unknownKIDEvery time.Duration
	fetchTimeout    time.Duration
	logger          *slog.Logger
	cacheTTL        time.Duration
	cacheSize       int
}

// WithHTTPClient sets the client that fetches the JWKS. Default http.DefaultClient.
func WithHTTPClient(c *http.Client) VerifierOption {
	return func(o *verifierOptions) { o.client = c }
}

// WithJWKSRefresh sets how often the JWKS is fetched in the background (default 1h) and how often
// at most a token with an unknown kid may trigger an extra fetch (default every 5m). A token whose
// kid is unknown when no extra fetch is allowed fails at once with ErrUnknownKey rather than
// waiting. Zero keeps a default.
func WithJWKSRefresh(interval, unknownKIDEvery time.Duration) VerifierOption {
	return func(o *verifierOptions) {
		if interval > 0 {
			o.refresh = interval
		}
		if unknownKIDEvery > 0 {
			o.unknownKIDEvery = unknownKIDEvery
		}
	}
}

// WithLogger sets the logger that receives JWKS fetch failures. Default slog.Default().
func WithLogger(l *slog.Logger) VerifierOption {
	return func(o *verifierOptions) { o.logger = l }
}

// NewVerifier validates cfg and aliases (with core.Config.Validate: key size, algorithm list
// against the key, leeway, alias targets) and returns a Verifier. Defaults are those of
// core.Config.WithDefaults: the algorithms the key allows, a 30s leeway, the default claim names.
//
// For a JWKS URL, NewVerifier fetches the key set once, bounded by ctx; an unreachable URL is
// logged and not an error (keys are fetched again in the background and when an unknown kid
// arrives), so an application can start while its identity provider is down. Close stops the
// background refresh.
func NewVerifier(ctx context.Context, cfg core.JWTConfig, aliases map[string]core.ActorType, opts ...VerifierOption) (*Verifier, error) {
	full := core.Config{JWT: cfg, ActorTypeAliases: aliases}
	if err := full.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, ErrNoKey
	}
	full = full.WithDefaults()
	cfg = full.JWT
	o := verifierOptions{refresh: time.Hour, unknownKIDEvery: 5 * time.Minute, fetchTimeout: 10 * time.Second,
		cacheTTL: DefaultTokenCacheTTL, cacheSize: DefaultTokenCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	v := &Verifier{
		cfg:     cfg,
		aliases: full.ActorTypeAliases,
		allowed: slices.Clone(cfg.Algorithms),
		prefix:  "jwt:",
		logger:  o.logger,
		now:     time.Now,
	}
	v.cache = newTokenCache(o.cacheTTL, o.cacheSize, func() time.Time { return v.now() })
	popts := []jwt.ParserOption{
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
		jwt.WithValidMethods(v.allowed),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(cfg.Issuer))
	}
	if len(cfg.Audience) > 0 {
		popts = append(popts, jwt.WithAudience(cfg.Audience...))
	}
	v.parser = jwt.NewParser(popts...)
	v.staticF = v.staticKey
	v.valid = jwt.NewValidator(popts...)

	switch {
	case cfg.Secret != "":
		v.static = []byte(cfg.Secret)
	case cfg.PublicKeyPEM != "":
		k, err := cfg.PublicKey()
		if err != nil { // Validate parsed it already
			return nil, fmt.Errorf("%w: JWT.PublicKeyPEM: %w", core.ErrConfig, err)
		}
		v.static = k
	case cfg.JWKSURL != "":
		if err := v.startJWKS(ctx, o); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (v *Verifier) startJWKS(ctx context.Context, o verifierOptions) error {
	v.prefix = "jwks:"
	// The refresh goroutine lives until Close, not until ctx ends; ctx only bounds construction.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	logger := o.logger
	url := v.cfg.JWKSURL
	kf, err := keyfunc.NewDefaultOverrideCtx(life, []string{url}, keyfunc.Override{
		Client:      o.client,
		HTTPTimeout: o.fetchTimeout,
		// The wait for the unknown-kid limiter also bounds the fetch it allows; a request whose kid
		// is unknown while the limiter is empty fails at once instead of waiting minutes.
		RateLimitWaitMax:  o.fetchTimeout,
		RefreshInterval:   o.refresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(o.unknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.WarnContext(ctx, "auditkit: fetching the JWKS failed", "url", u, "error", err)
			}
		},
	})
	stopped := !stop()
	if err != nil {
		cancel()
		return fmt.Errorf("%w: JWT.JWKSURL: %w", core.ErrConfig, err)
	}
	if stopped || ctx.Err() != nil {
		cancel()
		return fmt.Errorf("auditkit: fetching the JWKS: %w", context.Cause(ctx))
	}
	v.jwks = kf
	v.cancel = cancel
	return nil
}

// Close stops the JWKS refresh goroutine. Keys already fetched stay usable. Close is a no-op for
// verifiers without a JWKS URL and may be called more than once.
func (v *Verifier) Close() {
	if v != nil && v.cancel != nil {
		v.cancel()
	}
}

// Verify checks rawToken (without the "Bearer " prefix) and returns the identity it carries. It
// refuses tokens whose algorithm is not in the allow-list ("none" never is), whose signature does
// not verify with the configured key, that lack exp, are expired or not yet valid (with the
// leeway), whose iss or aud do not match the configuration, that lack a subject, that name an
// actor type that is neither defined nor an alias, or whose tenant claims fail CheckTenant.
//
// On error the Identity is zero: nothing a failed token says is ever returned. ctx bounds the
// wait for a JWKS fetch triggered by an unknown kid.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	if rawToken == "" {
		return Identity{}, ErrNoToken
	}
	if len(rawToken) > maxTokenBytes {
		return Identity{}, tokenError(ErrMalformed, fmt.Errorf("token is longer than %d bytes", maxTokenBytes))
	}
	if id, ok := v.cache.get(rawToken); ok && v.stillPublished(ctx, id) {
		return id, nil
	}
	claims := jwt.MapClaims{}
	var tok *jwt.Token
	var err error
	if v.cfg.UnsafeSkipVerification {
		tok, err = v.parseUnverified(rawToken, claims)
	} else {
		tok, err = v.parser.ParseWithClaims(rawToken, claims, v.keyfunc(ctx))
	}
	if err != nil || tok == nil || (!tok.Valid && !v.cfg.UnsafeSkipVerification) {
		return Identity{}, v.classify(tok, err)
	}
	id, err := v.identity(tok, claims)
	if err != nil {
		return Identity{}, err
	}
	if v.jwks == nil || id.KeyID != "" { // see stillPublished
		v.cache.put(rawToken, id, v.cfg.Leeway)
	}
	return id, nil
}

// stillPublished reports whether the key that verified a remembered token is still in the JWKS,
// so that a key the identity provider withdrew stops validating cached tokens as soon as the key
// set is refreshed. Tokens from a JWKS without a kid are not cached at all.
func (v *Verifier) stillPublished(ctx context.Context, id Identity) bool {
	if v.jwks == nil {
		return true
	}
	_, err := v.jwks.Storage().KeyRead(ctx, id.KeyID)
	return err == nil
}

// parseUnverified decodes a token without checking its signature, for UnsafeSkipVerification; the
// algorithm allow-list and every claim check still apply.
func (v *Verifier) parseUnverified(raw string, claims jwt.MapClaims) (*jwt.Token, error) {
	tok, _, err := v.parser.ParseUnverified(raw, claims)
	if err != nil {
		return tok, err
	}
	if !slices.Contains(v.allowed, tok.Method.Alg()) {
		return tok, fmt.Errorf("signing method %v is invalid: %w", tok.Method.Alg(), jwt.ErrTokenSignatureInvalid)
	}
	if err := v.valid.Validate(claims); err != nil {
		return tok, fmt.Errorf("%w: %w", jwt.ErrTokenInvalidClaims, err)
	}
	return tok, nil
}

// keyfunc returns the key for a token whose algorithm already passed the allow-list. Keys are
// typed (never raw bytes for an asymmetric algorithm), and a key is only returned for an
// algorithm of its own family, so a token cannot make one kind of key serve another algorithm.
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	if v.jwks == nil {
		return v.staticF
	}
	inner := v.jwks.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		k, err := inner(t)
		if err != nil {
			return nil, err
		}
		alg := t.Method.Alg()
		if set, ok := k.(jwt.VerificationKeySet); ok {
			var fit jwt.VerificationKeySet
			for _, key := range set.Keys {
				if keyFits(alg, key) {
					fit.Keys = append(fit.Keys, key)
				}
			}
			if len(fit.Keys) == 0 {
				return nil, fmt.Errorf("the key set holds no key for %s", alg)
			}
			return fit, nil
		}
		if !keyFits(alg, k) {
			return nil, fmt.Errorf("%w: the key named by kid cannot verify %s", ErrAlgorithm, alg)
		}
		return k, nil
	}
}

func (v *Verifier) staticKey(t *jwt.Token) (any, error) {
	if !keyFits(t.Method.Alg(), v.static) {
		return nil, fmt.Errorf("%w: the configured key cannot verify %s", ErrAlgorithm, t.Method.Alg())
	}
	return v.static, nil
}

// keyFits reports whether key is of the type alg verifies with. A JWKS never supplies HMAC keys:
// an "oct" key published next to public keys would let anyone who can read the set mint tokens.
func keyFits(alg string, key any) bool {
	switch {
	case strings.HasPrefix(alg, "HS"):
		_, ok := key.([]byte)
		return ok
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		_, ok := key.(*rsa.PublicKey)
		return ok
	case strings.HasPrefix(alg, "ES"):
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		return k.Curve != nil && k.Curve.Params().Name == want
	case alg == "EdDSA":
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// tokenErr is a verification failure: ErrInvalidToken, one specific sentinel and the cause.
type tokenErr struct {
	kind  error
	cause error
}

func tokenError(kind, cause error) error { return &tokenErr{kind: kind, cause: cause} }

func (e *tokenErr) Error() string {
	if e.cause == nil {
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.cause.Error()
}

func (e *tokenErr) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalidToken, e.kind}
	}
	return []error{ErrInvalidToken, e.kind, e.cause}
}

// classify maps golang-jwt's error to one of the sentinels. Only the header's alg is looked at,
// to tell a refused algorithm from a bad signature; the claims of a failed token are never read.
func (v *Verifier) classify(tok *jwt.Token, err error) error {
	if err == nil {
		err = jwt.ErrTokenSignatureInvalid
	}
	algRefused := tok != nil && (tok.Method == nil || !slices.Contains(v.allowed, tok.Method.Alg()))
	var kind error
	switch {
	case errors.Is(err, ErrAlgorithm):
		kind = ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenMalformed):
		kind = ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable) && (tok == nil || tok.Method == nil):
		kind = ErrAlgorithm // alg missing or not a known algorithm
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		kind = ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && algRefused:
		kind = ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		kind = ErrSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		kind = ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		kind = ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		kind = ErrIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		kind = ErrAudience
	default:
		kind = ErrClaims
	}
	return tokenError(kind, err)
}

// identity reads the claims of a verified token.
func (v *Verifier) identity(tok *jwt.Token, claims jwt.MapClaims) (Identity, error) {
	names := v.cfg.Claims
	id := Identity{Algorithm: tok.Method.Alg(), Claims: claims}

	sub, err := claimID(claims, names.ActorID)
	switch {
	case err != nil:
		return Identity{}, tokenError(ErrClaims, err)
	case sub == "":
		return Identity{}, tokenError(ErrMissingSubject, fmt.Errorf("claim %q is required", names.ActorID))
	case len(sub) > maxActorIDBytes:
		return Identity{}, tokenError(ErrClaims, fmt.Errorf("claim %q is longer than %d bytes", names.ActorID, maxActorIDBytes))
	}
	id.Actor.ID = sub

	id.Actor.Type = core.ActorTenantUser
	if raw, ok := claims[names.ActorType]; ok && raw != nil {
		s, isString := raw.(string)
		if !isString {
			return Identity{}, tokenError(ErrUnknownActorType, fmt.Errorf("%w: claim %q is not a string", core.ErrUnknownActorType, names.ActorType))
		}
		t, err := core.ParseActorType(s, v.aliases)
		if err != nil {
			return Identity{}, tokenError(ErrUnknownActorType, err)
		}
		id.Actor.Type = t
	}
	if s, ok := claims[names.Email].(string); ok && len(s) <= 320 {
		id.Actor.Email = s
	}
	if v.cfg.UnsafeSkipVerification {
		id.Actor.Auth = "unverified"
	} else {
		id.Actor.Auth = v.prefix + id.Algorithm
	}

	if id.Tenant.ID, err = claimID(claims, names.TenantID); err == nil {
		id.Tenant.Slug, err = claimID(claims, names.TenantSlug)
	}
	if err == nil {
		err = tenantProblem(id.Tenant)
	}
	if err != nil {
		return Identity{}, tokenError(ErrInvalidTenant, err)
	}

	id.Issuer, _ = claims["iss"].(string)
	id.TokenID, _ = claims["jti"].(string)
	id.KeyID, _ = tok.Header["kid"].(string)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.ExpiresAt = exp.Time
	}
	return id, nil
}

// claimID reads a claim holding an identifier: a string, or a whole number (JSON numbers decode
// as float64, exact up to 2^53). Absent or null is "".
func claimID(claims jwt.MapClaims, name string) (string, error) {
	switch x := claims[name].(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
			return strconv.FormatInt(int64(x), 10), nil
		}
	}
	return "", fmt.Errorf("claim %q is not a string or a whole number", name)
}
