package ginaudit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// ViewerScope is one permission a viewer token grants. Every scope is read-only and confined to
// the token's tenant.
type ViewerScope string

const (
	// ViewerScopeRead allows GET /logs, GET /logs/{id}, GET /logs/stats and a resource's history.
	ViewerScopeRead ViewerScope = "logs:read"
	// ViewerScopeExport allows GET /logs/export (CSV and NDJSON downloads).
	ViewerScopeExport ViewerScope = "logs:export"
	// ViewerScopeStream allows GET /logs/stream (live updates).
	ViewerScopeStream ViewerScope = "logs:stream"
	// ViewerScopeVerify allows GET /logs/verify and the chain's checkpoints and public key.
	ViewerScopeVerify ViewerScope = "logs:verify"
)

// ViewerScopes lists every scope, in the order they are documented.
var ViewerScopes = []ViewerScope{ViewerScopeRead, ViewerScopeExport, ViewerScopeStream, ViewerScopeVerify}

// Limits of viewer tokens.
const (
	// DefaultViewerTokenTTL is the lifetime MaxTTL defaults to.
	DefaultViewerTokenTTL = time.Hour
	// MaxViewerTokenTTL is the longest lifetime a viewer token may have, whatever MaxTTL says.
	MaxViewerTokenTTL = 24 * time.Hour
	// MinViewerKeyBytes is the shortest key NewViewerTokens accepts.
	MinViewerKeyBytes = 32
)

// The registered values that tell a viewer token apart from every other JWT: its JOSE header's
// typ, its aud and its iss. The signing key is derived from the application's key with a label
// of its own, so that a key shared with the API's JWT configuration by mistake still never
// verifies one kind of token as the other.
const (
	ViewerTokenType     = "auditkit-viewer+jwt"
	ViewerTokenAudience = "auditkit-viewer"
	ViewerTokenIssuer   = "auditkit"
	viewerKeyLabel      = "auditkit viewer token v1"
	viewerMaxTokenBytes = 4 << 10
	viewerMaxActorBytes = 256
	viewerLeeway        = 30 * time.Second
)

// Errors of viewer tokens. Verify wraps ErrViewerToken with the reason.
var (
	ErrViewerToken      = errors.New("invalid viewer token")
	errViewerExpired    = errors.New("expired")
	errViewerSignature  = errors.New("signature does not verify")
	errViewerMalformed  = errors.New("malformed")
	errViewerNotViewer  = errors.New("not a viewer token")
	errViewerLifetimeUp = errors.New("lifetime longer than allowed")
)

// ViewerTokens mints and verifies viewer tokens: short-lived, tenant-scoped, read-only bearer
// tokens that an application hands to one of its customers so that the customer's browser can
// open the log viewer (APIOptions.ViewerPath) or call the read routes of the API for that tenant
// alone, without holding an API key.
//
// A viewer token is a JWS (RFC 7515) in compact form signed with HMAC-SHA256 over a JWT
// (RFC 7519) claims set:
//
//	header  {"alg":"HS256","typ":"auditkit-viewer+jwt"}
//	claims  {"iss":"auditkit","aud":"auditkit-viewer","sub":<actor>,"tid":<tenant>,
//	         "scope":"logs:read logs:export ...","iat":...,"exp":...,"jti":...}
//
// The key that signs it is HMAC-SHA256(key, "auditkit viewer token v1"), never key itself. A
// token never widens its scope: it names exactly one tenant, grants only the read-only scopes,
// cannot mint other tokens nor reach administrative routes or writes, and lives at most MaxTTL
// (at most MaxViewerTokenTTL); a token whose lifetime is longer is refused even when its
// signature verifies. It is safe for concurrent use.
type ViewerTokens struct {
	key    []byte
	maxTTL time.Duration
	now    func() time.Time
}

// ViewerTokensOption adjusts NewViewerTokens.
type ViewerTokensOption func(*ViewerTokens)

// WithViewerMaxTTL sets the longest lifetime of a token minted or accepted: at most
// MaxViewerTokenTTL. The default is DefaultViewerTokenTTL.
func WithViewerMaxTTL(d time.Duration) ViewerTokensOption {
	return func(v *ViewerTokens) { v.maxTTL = d }
}

// NewViewerTokens returns minting and verification of viewer tokens signed with a key derived
// from key, which must hold at least MinViewerKeyBytes random bytes. Give every process that
// mints or verifies tokens for one service the same key; keep it apart from the keys of the
// API's JWT configuration.
//
//	vt, err := ginaudit.NewViewerTokens(key)
//	tok, err := vt.MintViewerToken("acme", "customer-17", 15*time.Minute, ginaudit.ViewerScopeRead)
func NewViewerTokens(key []byte, opts ...ViewerTokensOption) (*ViewerTokens, error) {
	if len(key) < MinViewerKeyBytes {
		return nil, fmt.Errorf("ginaudit: a viewer token key must hold at least %d bytes, not %d", MinViewerKeyBytes, len(key))
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(viewerKeyLabel))
	v := &ViewerTokens{key: mac.Sum(nil), maxTTL: DefaultViewerTokenTTL, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	if v.maxTTL <= 0 || v.maxTTL > MaxViewerTokenTTL {
		return nil, fmt.Errorf("ginaudit: the viewer token lifetime limit must lie between 0 and %s, not %s", MaxViewerTokenTTL, v.maxTTL)
	}
	return v, nil
}

// MaxTTL returns the longest lifetime of a token minted or accepted.
func (v *ViewerTokens) MaxTTL() time.Duration { return v.maxTTL }

// ViewerToken is what a verified viewer token grants.
type ViewerToken struct {
	Tenant    string        // the only tenant whose records the token reads
	Actor     string        // who the application minted it for, recorded as the actor of each request
	Scopes    []ViewerScope // what it may do, sorted
	IssuedAt  time.Time
	ExpiresAt time.Time
	ID        string // the jti claim
}

// Allows reports whether the token grants scope s.
func (t ViewerToken) Allows(s ViewerScope) bool { return slices.Contains(t.Scopes, s) }

type viewerHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
}

type viewerClaims struct {
	Iss   string `json:"iss"`
	Aud   string `json:"aud"`
	Sub   string `json:"sub"`
	Tid   string `json:"tid"`
	Scope string `json:"scope"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
	Jti   string `json:"jti"`
}

// MintViewerToken returns a viewer token for actor (who the application hands it to, recorded
// as the actor of every request made with it) to read tenant's records for ttl (at most MaxTTL)
// with the given scopes; without scopes it grants ViewerScopeRead alone.
func (v *ViewerTokens) MintViewerToken(tenant, actor string, ttl time.Duration, scopes ...ViewerScope) (string, error) {
	if err := store.ValidateTenantID("tenant", tenant); err != nil {
		return "", fmt.Errorf("ginaudit: viewer token: %w", err)
	}
	if err := viewerCheckActor(actor); err != nil {
		return "", fmt.Errorf("ginaudit: viewer token: %w", err)
	}
	if ttl <= 0 || ttl > v.maxTTL {
		return "", fmt.Errorf("ginaudit: viewer token: the lifetime must lie between 0 and %s, not %s", v.maxTTL, ttl)
	}
	if len(scopes) == 0 {
		scopes = []ViewerScope{ViewerScopeRead}
	}
	sc, err := viewerNormalizeScopes(scopes)
	if err != nil {
		return "", fmt.Errorf("ginaudit: viewer token: %w", err)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := v.now().Truncate(time.Second)
	claims := viewerClaims{Iss: ViewerTokenIssuer, Aud: ViewerTokenAudience, Sub: actor, Tid: tenant,
		Scope: viewerJoinScopes(sc), Iat: now.Unix(), Exp: now.Add(ttl).Unix(), Jti: hex.EncodeToString(jti[:])}
	h, _ := json.Marshal(viewerHeader{Alg: "HS256", Typ: ViewerTokenType})
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	return signing + "." + enc.EncodeToString(v.sign(signing)), nil
}

func (v *ViewerTokens) sign(signing string) []byte {
	mac := hmac.New(sha256.New, v.key)
	mac.Write([]byte(signing))
	return mac.Sum(nil)
}

// IsViewerToken reports whether raw claims to be a viewer token (its JOSE header's typ is
// ViewerTokenType). It says nothing about validity: the API sends such tokens to
// ViewerTokens.Verify alone, and never to the Verifier of its JWTs.
func IsViewerToken(raw string) bool {
	h, _, ok := strings.Cut(raw, ".")
	if !ok || len(h) > 512 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return false
	}
	var hdr map[string]any
	if json.Unmarshal(b, &hdr) != nil {
		return false
	}
	typ, _ := hdr["typ"].(string)
	return strings.EqualFold(typ, ViewerTokenType)
}

// Verify checks a viewer token: its compact form (strict base64url, three segments), header
// (exactly alg HS256 and typ ViewerTokenType), signature, iss, aud, exp (not past), iat (not in
// the future), lifetime (at most MaxTTL), tenant, actor and scopes. The error wraps
// ErrViewerToken and says why; on error the ViewerToken is zero.
func (v *ViewerTokens) Verify(raw string) (ViewerToken, error) {
	t, err := v.verify(raw)
	if err != nil {
		return ViewerToken{}, fmt.Errorf("%w: %w", ErrViewerToken, err)
	}
	return t, nil
}

func (v *ViewerTokens) verify(raw string) (ViewerToken, error) {
	if len(raw) > viewerMaxTokenBytes {
		return ViewerToken{}, fmt.Errorf("%w: longer than %d bytes", errViewerMalformed, viewerMaxTokenBytes)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ViewerToken{}, fmt.Errorf("%w: not three dot-separated segments", errViewerMalformed)
	}
	enc := base64.RawURLEncoding.Strict()
	hb, err1 := enc.DecodeString(parts[0])
	cb, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return ViewerToken{}, fmt.Errorf("%w: a segment is not strict base64url", errViewerMalformed)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return ViewerToken{}, fmt.Errorf("%w: the header is not a JSON object", errViewerMalformed)
	}
	var h viewerHeader
	_ = json.Unmarshal(hb, &h)
	switch {
	case h.Typ != ViewerTokenType:
		return ViewerToken{}, fmt.Errorf("%w: typ is not %q", errViewerNotViewer, ViewerTokenType)
	case h.Alg != "HS256":
		return ViewerToken{}, fmt.Errorf("%w: alg must be HS256", errViewerMalformed)
	case len(hdr) != 2:
		return ViewerToken{}, fmt.Errorf("%w: the header has members other than alg and typ", errViewerMalformed)
	}
	if !hmac.Equal(sig, v.sign(parts[0]+"."+parts[1])) {
		return ViewerToken{}, errViewerSignature
	}
	// Signed by the key: what follows guards against a minting bug or a key used by a newer
	// minter with other rules, and against replay after expiry.
	var c viewerClaims
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return ViewerToken{}, fmt.Errorf("%w: the claims: %v", errViewerMalformed, err)
	}
	now := v.now()
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	switch {
	case c.Iss != ViewerTokenIssuer:
		return ViewerToken{}, fmt.Errorf("%w: iss is not %q", errViewerNotViewer, ViewerTokenIssuer)
	case c.Aud != ViewerTokenAudience:
		return ViewerToken{}, fmt.Errorf("%w: aud is not %q", errViewerNotViewer, ViewerTokenAudience)
	case c.Exp == 0 || c.Iat == 0:
		return ViewerToken{}, fmt.Errorf("%w: iat and exp are required", errViewerMalformed)
	case !now.Before(exp.Add(viewerLeeway)):
		return ViewerToken{}, errViewerExpired
	case iat.After(now.Add(viewerLeeway)):
		return ViewerToken{}, fmt.Errorf("%w: issued in the future", errViewerMalformed)
	case exp.Sub(iat) > v.maxTTL || !exp.After(iat):
		return ViewerToken{}, fmt.Errorf("%w: %s, at most %s", errViewerLifetimeUp, exp.Sub(iat), v.maxTTL)
	}
	if err := store.ValidateTenantID("tid", c.Tid); err != nil {
		return ViewerToken{}, fmt.Errorf("%w: %v", errViewerMalformed, err)
	}
	if err := viewerCheckActor(c.Sub); err != nil {
		return ViewerToken{}, fmt.Errorf("%w: %v", errViewerMalformed, err)
	}
	var scopes []ViewerScope
	for s := range strings.FieldsSeq(c.Scope) {
		scopes = append(scopes, ViewerScope(s))
	}
	sc, err := viewerNormalizeScopes(scopes)
	if err != nil || len(sc) == 0 {
		return ViewerToken{}, fmt.Errorf("%w: the scopes %q", errViewerMalformed, c.Scope)
	}
	return ViewerToken{Tenant: c.Tid, Actor: c.Sub, Scopes: sc, IssuedAt: iat, ExpiresAt: exp, ID: c.Jti}, nil
}

func viewerCheckActor(actor string) error {
	switch {
	case actor == "":
		return errors.New("the actor is required: who the token is for")
	case len(actor) > viewerMaxActorBytes:
		return fmt.Errorf("the actor is longer than %d bytes", viewerMaxActorBytes)
	case strings.ContainsFunc(actor, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\uFFFD' }):
		return errors.New("the actor holds control characters or invalid UTF-8")
	}
	return nil
}

// viewerNormalizeScopes checks scopes against ViewerScopes and returns them sorted, once each.
func viewerNormalizeScopes(scopes []ViewerScope) ([]ViewerScope, error) {
	out := make([]ViewerScope, 0, len(scopes))
	for _, s := range scopes {
		if !slices.Contains(ViewerScopes, s) {
			return nil, fmt.Errorf("unknown scope %q (known: %s)", apiTruncate(string(s), 64), viewerJoinScopes(ViewerScopes))
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func viewerJoinScopes(s []ViewerScope) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = string(x)
	}
	return strings.Join(parts, " ")
}

// viewerIdentity is the Identity the API works with for a viewer token: a tenant user of the
// token's tenant, authenticated as "viewer:HS256".
func viewerIdentity(t ViewerToken) Identity {
	return Identity{
		Actor:     core.Actor{ID: t.Actor, Type: core.ActorTenantUser, Auth: "viewer:HS256"},
		Tenant:    core.Tenant{ID: t.Tenant},
		Issuer:    ViewerTokenIssuer,
		TokenID:   t.ID,
		Algorithm: "HS256",
		ExpiresAt: t.ExpiresAt,
	}
}
