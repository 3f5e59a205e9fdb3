package auditmw

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/auditkit/auditkit/core"
)

// Errors returned by Verify. Every verification failure wraps ErrInvalidToken and exactly one of
// the more specific errors below, and keeps golang-jwt's own error (when there is one) in its
// chain, so callers can test with errors.Is at the level they need. Its text is one reason,
// "JWT refused: " followed by the specific error's text and, where it helps, one detail
// ("JWT refused: signing algorithm not allowed: none"); golang-jwt's wording is not repeated.
var (
	// ErrNoToken means there was no bearer token to verify. It does not wrap ErrInvalidToken.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken is wrapped by every verification failure.
	ErrInvalidToken = errors.New("invalid token")
	// ErrMalformed: the token is not a JWS in compact form with strict base64url segments (no
	// padding, no non-canonical trailing bits, no characters outside the URL-safe alphabet), its
	// header or claims are not a JSON object or repeat a member name, it is a nested JWT, or it
	// is too large.
	ErrMalformed = errors.New("malformed JWT")
	// ErrAlgorithm: the header names "none", an unknown algorithm, or one outside the allow-list
	// (which is how algorithm-confusion attempts fail).
	ErrAlgorithm = errors.New("signing algorithm not allowed")
	// ErrCritical: the header has a "crit" parameter. The verifier understands no header
	// extension, so RFC 7515 §4.1.11 requires refusing every token that marks one critical (and
	// one whose crit is malformed).
	ErrCritical = errors.New("critical header parameter not understood")
	// ErrSignature: the signature does not verify with the configured key (forged or tampered).
	ErrSignature = errors.New("signature is invalid")
	// ErrUnknownKey: no key fits the token: an unknown kid, a kid whose key is not a signing
	// key for the token's algorithm (see Verifier), an unreachable JWKS, or an extra fetch that
	// was not allowed yet.
	ErrUnknownKey = errors.New("no verification key")
	// ErrExpired: exp has passed, beyond the leeway.
	ErrExpired = errors.New("expired")
	// ErrNotYetValid: nbf or iat lies in the future, beyond the leeway.
	ErrNotYetValid = errors.New("not valid yet")
	// ErrIssuer: iss differs from JWTConfig.Issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrAudience: no aud value is in JWTConfig.Audience.
	ErrAudience = errors.New("wrong audience")
	// ErrClaims: a required registered claim (exp; aud and iss when configured) is missing, or a
	// claim has the wrong type: every identity claim (actor id, actor type, email, tenant id and
	// slug, under their configured names) must be a JSON string when present.
	ErrClaims = errors.New("invalid claims")
	// ErrMissingSubject: the actor id claim (default sub) is missing or empty.
	ErrMissingSubject = errors.New("no subject")
	// ErrUnknownActorType: the actor type claim is neither a defined type nor an alias, compared
	// exactly. The error also wraps core.ErrUnknownActorType.
	ErrUnknownActorType = errors.New("unknown actor type")
	// ErrInvalidTenant: a tenant value fails core.ValidateTenant. It also wraps
	// core.ErrInvalidTenant.
	ErrInvalidTenant = errors.New("invalid tenant")
	// ErrNoKey is returned by NewVerifier for a configuration without a key source.
	ErrNoKey = errors.New("no JWT key configured (set a secret, a public key or a JWKS URL)")
)

// maxTokenBytes bounds the tokens Verify parses: a bearer token larger than this is refused before
// any decoding, so that a hostile header cannot make every request decode megabytes of JSON.
const maxTokenBytes = 16 << 10

// maxActorIDBytes bounds the actor id taken from a token.
const maxActorIDBytes = 256

// minRSAKeyBits is the smallest RSA modulus a JWKS key may have, as core requires of
// JWTConfig.PublicKeyPEM.
const minRSAKeyBits = 2048

// maxEmailBytes bounds the email taken from a token (RFC 5321's limit on a path).
const maxEmailBytes = 320

// Identity is what a verified token says about its bearer.
type Identity struct {
	// Actor is the verified actor: ID from the actor id claim (default sub), Type from the actor
	// type claim mapped through the aliases (tenant_user when the claim is absent), Email from the
	// email claim, and Auth saying how it was verified: "jwt:HS256", "jwks:RS256", or "unverified"
	// when JWTConfig.UnsafeSkipVerification is set. Each is exactly the string the token carries.
	Actor core.Actor
	// Tenant comes from the tenant claims (default tenant_id and tenant_slug), checked by
	// core.ValidateTenant; an absent or empty claim leaves the field empty.
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
//
// # What a token must be
//
//   - A JWS in compact form of at most 16 KiB whose three segments are strict base64url (RFC 7515
//     §2: no padding, no non-canonical trailing bits, only the URL-safe alphabet), so that a token
//     has exactly one spelling; its header and claims are JSON objects that name no member
//     twice. A token whose header has "crit" is refused (no extension is understood), and so is
//     a nested JWT (cty "JWT").
//   - Signed with an algorithm of the allow-list by the configured key: exp is required, nbf
//     and iat must not lie in the future, iss and aud must match when configured (all with the
//     leeway).
//
// # Identity claims
//
// The actor id (default sub), actor type, email, tenant id and tenant slug claims are JSON
// strings when present; a number, boolean, array, object or null is refused (RFC 7519 makes sub
// a StringOrURI), so 1001 and "1001" never name the same actor. Values are taken exactly as
// they are: no trimming, no case folding.
//
// The actor type follows one policy:
//
//   - missing: the actor is core.ActorTenantUser, the least privileged type a token can carry,
//     and is recorded as such;
//   - present: it must equal a defined type name (platform_admin, tenant_user, service,
//     system, anonymous) or a key of the aliases, byte for byte; anything else, including an
//     empty string and case or Unicode variants such as "Platform_Admin", refuses the whole
//     token with ErrUnknownActorType. A role is never guessed.
//
// Tenant values must pass core.ValidateTenant; an empty tenant claim means no tenant.
//
// # JWKS keys
//
// Only signing keys verify: a JWK with "use" other than "sig", with "key_ops" that lack
// "verify", or of type "oct" is never used; a JWK with "alg" verifies only tokens of exactly that
// algorithm; RSA keys must have at least 2048 bits and EC keys the curve of the token's algorithm
// (P-256 for ES256, P-384 for ES384, P-521 for ES512), as for PublicKeyPEM. A key that fails
// these rules is ignored with a logged warning (once per kid). A token with a kid is verified
// only by the key of that kid; a token without a kid is tried against every key of the set that
// passes these rules for its algorithm (such tokens are not cached).
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

	warnMu sync.Mutex
	warned map[string]bool // JWKS keys already reported as unusable, by kid and reason
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
		jwt.WithStrictDecoding(), // checkCompact refuses such tokens first; this keeps the parser strict too
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
// refuses every token that is not what the Verifier documentation says a token must be: not a
// strict compact JWS, with a crit header, with an algorithm outside the allow-list ("none" never
// is in it), with a signature the configured key does not verify, without exp, expired or not yet
// valid (with the leeway), with the wrong iss or aud, without a subject, with an identity claim
// that is not a string, with an actor type that is neither defined nor an alias (exactly), or with
// tenant claims that fail core.ValidateTenant. The error says why in one reason.
//
// On error the Identity is zero: nothing a failed token says is ever returned. ctx bounds the
// wait for a JWKS fetch triggered by an unknown kid.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	if rawToken == "" {
		return Identity{}, ErrNoToken
	}
	if len(rawToken) > maxTokenBytes {
		return Identity{}, tokenError(ErrMalformed, fmt.Sprintf("longer than %d bytes", maxTokenBytes), nil)
	}
	// Only tokens that passed checkCompact are cached, so a hit is the one spelling of a token.
	if id, ok := v.cache.get(rawToken); ok && v.stillPublished(ctx, id) {
		return id, nil
	}
	if err := checkCompact(rawToken); err != nil {
		return Identity{}, err
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

// stillPublished reports whether the key that verified a remembered token is still in the JWKS
// and still a signing key for its algorithm, so that a key the identity provider withdrew (or
// republished for encryption) stops validating cached tokens as soon as the key set is
// refreshed. Tokens from a JWKS without a kid are not cached at all.
func (v *Verifier) stillPublished(ctx context.Context, id Identity) bool {
	if v.jwks == nil {
		return true
	}
	jwk, err := v.jwks.Storage().KeyRead(ctx, id.KeyID)
	if err != nil {
		return false
	}
	_, problem := signingKey(jwk, id.Algorithm)
	return problem == ""
}

// checkCompact refuses what golang-jwt would accept but a strict reading of RFC 7515 and RFC 7519
// does not: segments that are not strict base64url (so one token has one spelling), a header or
// claims set that is not a JSON object or names a member twice (which member wins differs
// between parsers), a "crit" header (§4.1.11: no extension is understood here), and a nested JWT.
func checkCompact(raw string) error {
	h, rest, ok1 := strings.Cut(raw, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sig, '.') >= 0 {
		return tokenError(ErrMalformed, "not three dot-separated segments", nil)
	}
	enc := base64.RawURLEncoding.Strict()
	var seg [2][]byte
	for i, part := range [3]string{h, p, sig} {
		b, err := enc.DecodeString(part)
		if err != nil {
			return tokenError(ErrMalformed, [3]string{"header", "claims set", "signature"}[i]+" is not strict base64url", err)
		}
		if i < 2 {
			seg[i] = b
		}
	}
	top, err := scanObject(seg[0])
	if err != nil {
		return tokenError(ErrMalformed, "header "+err.Error(), nil)
	}
	if top.crit || top.cty { // rare: read the header's members to say why
		var hdr map[string]json.RawMessage
		if err := json.Unmarshal(seg[0], &hdr); err != nil {
			return tokenError(ErrMalformed, "header is not a JSON object", err)
		}
		if crit, ok := hdr["crit"]; ok { // present at all, even as null
			return tokenError(ErrCritical, critProblem(crit), nil)
		}
		var cty string
		if json.Unmarshal(hdr["cty"], &cty) == nil && strings.EqualFold(cty, "JWT") {
			return tokenError(ErrMalformed, "nested JWT (cty JWT) not accepted", nil)
		}
	}
	if _, err := scanObject(seg[1]); err != nil {
		return tokenError(ErrMalformed, "claims set "+err.Error(), nil)
	}
	return nil
}

// topMembers says which header members of interest scanObject saw at the top level.
type topMembers struct{ crit, cty bool }

// scanObject reports an error when b is not one JSON object or when an object in it, at any
// depth, names a member twice (compared after unescaping). It allocates only for member names
// written with escapes.
func scanObject(b []byte) (topMembers, error) {
	var top topMembers
	if !json.Valid(b) {
		if len(bytes.TrimSpace(b)) == 0 {
			return top, errors.New("is empty")
		}
		return top, errors.New("is not JSON")
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	if b[0] != '{' {
		return top, errors.New("is not a JSON object")
	}
	// In valid JSON a string is a member name exactly when a ':' follows it. names holds the
	// names of the open objects; starts[d] is where the names of the object at depth d begin.
	var namesBuf [32][]byte
	var startsBuf [8]int
	names, starts := namesBuf[:0], startsBuf[:0]
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			starts = append(starts, len(names))
		case '}':
			names = names[:starts[len(starts)-1]]
			starts = starts[:len(starts)-1]
		case '"':
			j, escaped := i+1, false
			for ; b[j] != '"'; j++ {
				if b[j] == '\\' {
					escaped = true
					j++
				}
			}
			k := j + 1
			for k < len(b) && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r' || b[k] == '\n') {
				k++
			}
			if k < len(b) && b[k] == ':' {
				name := b[i+1 : j]
				if escaped {
					var s string
					_ = json.Unmarshal(b[i:j+1], &s) // valid JSON: cannot fail
					name = []byte(s)
				}
				for _, n := range names[starts[len(starts)-1]:] {
					if bytes.Equal(n, name) {
						return top, fmt.Errorf("names %s twice", strconv.Quote(truncate(string(name), 64)))
					}
				}
				names = append(names, name)
				if len(starts) == 1 {
					top.crit = top.crit || string(name) == "crit"
					top.cty = top.cty || string(name) == "cty"
				}
			}
			i = j
		}
	}
	return top, nil
}

// critProblem describes a crit header for the refusal: the extensions it names, or that it is
// malformed (RFC 7515 §4.1.11: a non-empty array of names that are not registered parameters).
func critProblem(raw json.RawMessage) string {
	var names []string
	if json.Unmarshal(raw, &names) != nil || len(names) == 0 {
		return "crit is malformed"
	}
	for _, n := range names {
		if registeredHeader[n] {
			return "crit is malformed"
		}
	}
	return "crit names " + strconv.Quote(truncate(strings.Join(names, ","), 64))
}

// registeredHeader holds the header parameters registered by RFC 7515 and RFC 7519, which crit
// must not list.
var registeredHeader = map[string]bool{
	"alg": true, "jku": true, "jwk": true, "kid": true, "x5u": true, "x5c": true, "x5t": true,
	"x5t#S256": true, "typ": true, "cty": true, "crit": true,
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
	return func(t *jwt.Token) (any, error) { return v.jwksKey(ctx, t) }
}

// jwksKey picks the JWKS key for t under the rules documented on Verifier. Reading a kid that is
// not in the set lets the key set be fetched again (at most as often as WithJWKSRefresh allows).
func (v *Verifier) jwksKey(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	store := v.jwks.Storage()
	if raw, ok := t.Header["kid"]; ok {
		kid, isString := raw.(string)
		if !isString {
			return nil, tokenError(ErrMalformed, "kid is not a string", nil)
		}
		jwk, err := store.KeyRead(ctx, kid)
		switch {
		case errors.Is(err, jwkset.ErrKeyNotFound):
			return nil, tokenError(ErrUnknownKey, "kid "+strconv.Quote(truncate(kid, 64))+" is not in the key set", err)
		case err != nil: // the refresh limiter did not allow another fetch in time
			return nil, tokenError(ErrUnknownKey, "kid "+strconv.Quote(truncate(kid, 64))+" is not in the key set, which cannot be fetched again yet", err)
		}
		key, problem := signingKey(jwk, alg)
		if problem != "" {
			if !strings.HasPrefix(problem, "is for ") { // a key for other algorithms is fine
				v.warnKey(ctx, kid, problem)
			}
			return nil, tokenError(ErrUnknownKey, "key "+strconv.Quote(truncate(kid, 64))+" "+problem, nil)
		}
		return key, nil
	}
	all, err := store.KeyReadAll(ctx)
	if err != nil {
		return nil, tokenError(ErrUnknownKey, "the key set cannot be read", err)
	}
	var fit jwt.VerificationKeySet
	for _, jwk := range all {
		key, problem := signingKey(jwk, alg)
		if problem == "" {
			fit.Keys = append(fit.Keys, key)
		} else if !strings.HasPrefix(problem, "is for ") { // keys for other algorithms are fine
			v.warnKey(ctx, jwk.Marshal().KID, problem)
		}
	}
	if len(fit.Keys) == 0 {
		return nil, tokenError(ErrUnknownKey, "no kid, and no signing key in the key set for "+alg, nil)
	}
	return fit, nil
}

// signingKey returns the public key of jwk when jwk may verify a token signed with alg, or a
// problem ("is an encryption key") when it may not. A problem starting with "is for " means the
// key is usable, for other algorithms.
func signingKey(jwk jwkset.JWK, alg string) (any, string) {
	m := jwk.Marshal()
	switch {
	case m.USE != "" && m.USE != jwkset.UseSig:
		return nil, "is not a signing key (use " + strconv.Quote(truncate(string(m.USE), 32)) + ")"
	case len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify):
		return nil, "is not a verification key (key_ops lacks \"verify\")"
	case m.KTY == jwkset.KtyOct:
		return nil, "is a symmetric key, never accepted from a key set"
	}
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() < minRSAKeyBits {
		return nil, fmt.Sprintf("is a %d-bit RSA key (at least %d bits are required)", k.N.BitLen(), minRSAKeyBits)
	}
	if m.ALG != "" && string(m.ALG) != alg {
		return nil, "is for " + truncate(string(m.ALG), 32) + ", not " + alg
	}
	if !keyFits(alg, key) {
		return nil, "is for " + keyKind(key) + ", not " + alg
	}
	return key, ""
}

// keyKind names the kind of a public key for messages.
func keyKind(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		if k.Curve != nil {
			return "ECDSA " + k.Curve.Params().Name
		}
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", key)
}

// maxWarnedKeys bounds the memory of warnKey; past it, problems are no longer logged.
const maxWarnedKeys = 256

// warnKey logs, once per kid and problem, that a JWKS key was not used.
func (v *Verifier) warnKey(ctx context.Context, kid, problem string) {
	k := kid + "\x00" + problem
	v.warnMu.Lock()
	if v.warned == nil {
		v.warned = make(map[string]bool)
	}
	seen := v.warned[k] || len(v.warned) >= maxWarnedKeys
	if !seen {
		v.warned[k] = true
	}
	v.warnMu.Unlock()
	if !seen {
		v.logger.WarnContext(ctx, "auditkit: a JWKS key is not used to verify tokens", "kid", kid, "problem", problem, "url", v.cfg.JWKSURL)
	}
}

func (v *Verifier) staticKey(t *jwt.Token) (any, error) {
	if !keyFits(t.Method.Alg(), v.static) {
		return nil, tokenError(ErrAlgorithm, t.Method.Alg()+" (the configured key cannot verify it)", nil)
	}
	return v.static, nil
}

// keyFits reports whether key is of the type alg verifies with (for ECDSA, of the curve alg
// names).
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

// tokenErr is a verification failure: ErrInvalidToken, one specific sentinel, an optional
// detail written here, and the cause (golang-jwt's or the JWKS's error), kept for errors.Is but
// not repeated in the text.
type tokenErr struct {
	kind   error
	detail string
	cause  error
}

func tokenError(kind error, detail string, cause error) error {
	return &tokenErr{kind: kind, detail: detail, cause: cause}
}

func (e *tokenErr) Error() string {
	if e.detail == "" {
		return "JWT refused: " + e.kind.Error()
	}
	return "JWT refused: " + e.kind.Error() + ": " + e.detail
}

func (e *tokenErr) Unwrap() []error {
	errs := []error{ErrInvalidToken, e.kind}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// classify maps golang-jwt's error to one of the sentinels, keeping the refusal a key function
// already made. Only the header's alg is looked at, to tell a refused algorithm from a bad
// signature; the claims of a failed token are never read.
func (v *Verifier) classify(tok *jwt.Token, err error) error {
	if err == nil {
		err = jwt.ErrTokenSignatureInvalid
	}
	var te *tokenErr
	if errors.As(err, &te) {
		return te
	}
	algRefused := tok != nil && (tok.Method == nil || !slices.Contains(v.allowed, tok.Method.Alg()))
	var kind error
	var detail string
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		kind = ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable) && (tok == nil || tok.Method == nil),
		errors.Is(err, jwt.ErrTokenSignatureInvalid) && algRefused:
		kind, detail = ErrAlgorithm, algDetail(tok) // alg missing, unknown, "none" or not in the allow-list
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		kind = ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		kind = ErrSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		kind = ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		kind, detail = ErrNotYetValid, "nbf is in the future"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		kind, detail = ErrNotYetValid, "iat is in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		kind = ErrIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		kind = ErrAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		kind, detail = ErrClaims, "a required claim is missing"
		for _, c := range [...]string{"exp", "iss", "aud"} {
			if strings.Contains(err.Error(), c+" claim is required") {
				detail = c + " is required"
			}
		}
		if detail == "aud is required" { // golang-jwt reads an aud of another type as absent
			detail = "aud is required (a string or an array of strings)"
		}
	default:
		kind, detail = ErrClaims, "a registered claim has the wrong type"
	}
	return tokenError(kind, detail, err)
}

// algDetail names the refused algorithm of tok for a message: as it is when it is a plain name,
// quoted otherwise.
func algDetail(tok *jwt.Token) string {
	if tok == nil {
		return "alg is missing"
	}
	raw, ok := tok.Header["alg"]
	if !ok {
		return "alg is missing"
	}
	alg, ok := raw.(string)
	switch {
	case !ok:
		return "alg is not a string"
	case alg != "" && strings.Trim(alg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == "" && len(alg) <= 32:
		return alg
	}
	return strconv.QuoteToASCII(truncate(alg, 32))
}

// identity reads the claims of a verified token.
func (v *Verifier) identity(tok *jwt.Token, claims jwt.MapClaims) (Identity, error) {
	names := v.cfg.Claims
	id := Identity{Algorithm: tok.Method.Alg(), Claims: claims}

	sub, err := claimString(claims, names.ActorID)
	switch {
	case err != nil:
		return Identity{}, err
	case sub == "":
		return Identity{}, tokenError(ErrMissingSubject, strconv.Quote(names.ActorID)+" is required", nil)
	case len(sub) > maxActorIDBytes:
		return Identity{}, tokenError(ErrClaims, fmt.Sprintf("%q is longer than %d bytes", names.ActorID, maxActorIDBytes), nil)
	}
	id.Actor.ID = sub

	// The actor type policy documented on Verifier: missing is tenant_user, anything present must
	// match exactly.
	id.Actor.Type = core.ActorTenantUser
	if _, present := claims[names.ActorType]; present {
		s, err := claimString(claims, names.ActorType)
		if err != nil {
			return Identity{}, err
		}
		t, err := core.ParseActorType(s, v.aliases)
		if err != nil {
			return Identity{}, tokenError(ErrUnknownActorType, strconv.QuoteToASCII(truncate(s, 64)), err)
		}
		id.Actor.Type = t
	}
	email, err := claimString(claims, names.Email)
	switch {
	case err != nil:
		return Identity{}, err
	case len(email) > maxEmailBytes:
		return Identity{}, tokenError(ErrClaims, fmt.Sprintf("%q is longer than %d bytes", names.Email, maxEmailBytes), nil)
	}
	id.Actor.Email = email
	if v.cfg.UnsafeSkipVerification {
		id.Actor.Auth = "unverified"
	} else {
		id.Actor.Auth = v.prefix + id.Algorithm
	}

	if id.Tenant.ID, err = claimString(claims, names.TenantID); err != nil {
		return Identity{}, err
	}
	if id.Tenant.Slug, err = claimString(claims, names.TenantSlug); err != nil {
		return Identity{}, err
	}
	if err := core.ValidateTenant(id.Tenant); err != nil {
		return Identity{}, tokenError(ErrInvalidTenant, tenantDetail(err), err)
	}

	id.Issuer, _ = claims["iss"].(string)
	id.TokenID, _ = claims["jti"].(string)
	id.KeyID, _ = tok.Header["kid"].(string)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.ExpiresAt = exp.Time
	}
	return id, nil
}

// claimString reads an identity claim: a JSON string, or "" when the claim is absent. Any other
// JSON type (number, boolean, array, object, null) refuses the token: RFC 7519 makes sub a
// StringOrURI, and accepting 1001 for "1001" would let two spellings name one actor.
func claimString(claims jwt.MapClaims, name string) (string, error) {
	raw, ok := claims[name]
	if !ok {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", tokenError(ErrClaims, fmt.Sprintf("%q is %s, not a string", name, jsonKind(raw)), nil)
	}
	return s, nil
}

// jsonKind names the JSON type of a value decoded by encoding/json.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// tenantDetail is the refusal detail for a tenant value that failed core.ValidateTenant: its
// message without the sentinel's words, which the refusal already says.
func tenantDetail(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, core.ErrInvalidTenant.Error()+" "); ok {
		return rest
	}
	return msg
}

// JWTConfig returns the configuration the Verifier checks tokens against, with the defaults
// applied.
func (v *Verifier) JWTConfig() core.JWTConfig { return v.cfg }
