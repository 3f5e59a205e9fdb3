package ginaudit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

var testAliases = map[string]core.ActorType{"ops": core.ActorPlatformAdmin, "bot": core.ActorService}

func newVerifier(t testing.TB, cfg core.JWTConfig, opts ...ginaudit.VerifierOption) *ginaudit.Verifier {
	t.Helper()
	v, err := ginaudit.NewVerifier(context.Background(), cfg, testAliases, opts...)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestVerifyHS256Claims(t *testing.T) {
	v := newVerifier(t, core.JWTConfig{Secret: testSecret, Issuer: "https://idp.test", Audience: []string{"api", "admin-api"}})
	now := time.Now()
	base := with(claims("u-1"), "iss", "https://idp.test", "aud", "api")
	otherSecret := []byte(strings.Repeat("x", 32))

	cases := []struct {
		name  string
		token string
		want  error // nil: verifies
	}{
		{"valid", hs256(t, base), nil},
		{"audience any-of", hs256(t, with(base, "aud", []string{"other", "admin-api"})), nil},
		{"expired within leeway", hs256(t, with(base, "exp", now.Add(-20*time.Second).Unix())), nil},
		{"expired beyond leeway", hs256(t, with(base, "exp", now.Add(-60*time.Second).Unix())), ginaudit.ErrExpired},
		{"no exp", hs256(t, with(base, "exp", nil)), ginaudit.ErrClaims},
		{"exp of the wrong type", hs256(t, with(base, "exp", "tomorrow")), ginaudit.ErrClaims},
		{"nbf in the future", hs256(t, with(base, "nbf", now.Add(time.Minute).Unix())), ginaudit.ErrNotYetValid},
		{"nbf within leeway", hs256(t, with(base, "nbf", now.Add(20*time.Second).Unix())), nil},
		{"iat in the future", hs256(t, with(base, "iat", now.Add(time.Minute).Unix())), ginaudit.ErrNotYetValid},
		{"wrong issuer", hs256(t, with(base, "iss", "https://evil.test")), ginaudit.ErrIssuer},
		{"no issuer", hs256(t, with(base, "iss", nil)), ginaudit.ErrClaims},
		{"wrong audience", hs256(t, with(base, "aud", "other")), ginaudit.ErrAudience},
		{"no audience", hs256(t, with(base, "aud", nil)), ginaudit.ErrClaims},
		{"no subject", hs256(t, with(base, "sub", nil)), ginaudit.ErrMissingSubject},
		{"empty subject", hs256(t, with(base, "sub", "")), ginaudit.ErrMissingSubject},
		{"subject of the wrong type", hs256(t, with(base, "sub", []string{"a"})), ginaudit.ErrClaims},
		{"huge subject", hs256(t, with(base, "sub", strings.Repeat("a", 300))), ginaudit.ErrClaims},
		{"unknown actor type", hs256(t, with(base, "actor_type", "superuser")), ginaudit.ErrUnknownActorType},
		{"actor type not a string", hs256(t, with(base, "actor_type", 1)), ginaudit.ErrClaims},
		{"invalid tenant", hs256(t, with(base, "tenant_id", "acme corp")), ginaudit.ErrInvalidTenant},
		{"tenant not a string", hs256(t, with(base, "tenant_id", true)), ginaudit.ErrClaims},
		{"numeric subject", hs256(t, with(base, "sub", 12345)), ginaudit.ErrClaims},
		{"forged signature", sign(t, jwt.SigningMethodHS256, otherSecret, with(base, "actor_type", "platform_admin"), ""), ginaudit.ErrSignature},
		{"tampered payload", tamper(t, hs256(t, base), with(base, "sub", "admin")), ginaudit.ErrSignature},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, base, ""), ginaudit.ErrAlgorithm},
		{"alg HS384 outside the allow-list", sign(t, jwt.SigningMethodHS384, []byte(testSecret+testSecret), base, ""), ginaudit.ErrAlgorithm},
		{"unknown alg", withHeader(t, hs256(t, base), `{"alg":"XS999","typ":"JWT"}`), ginaudit.ErrAlgorithm},
		{"no alg", withHeader(t, hs256(t, base), `{"typ":"JWT"}`), ginaudit.ErrAlgorithm},
		{"not a JWT", "not-a-token", ginaudit.ErrMalformed},
		{"garbage segments", "a.b.c", ginaudit.ErrMalformed},
		{"oversized", strings.Repeat("a", 17<<10), ginaudit.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.Actor.ID != "u-1" || id.Actor.Auth != "jwt:HS256" {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ginaudit.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want %v wrapping ErrInvalidToken", err, tc.want)
			}
			if id.Actor != (core.Actor{}) || id.Tenant != (core.Tenant{}) || id.Claims != nil || id.Issuer != "" {
				t.Fatalf("a failed verification returned identity %+v", id)
			}
		})
	}
}

// TestVerifyConfiguredClaimNamesAreStrings: the string rule follows the claim names configured
// in core.JWTConfig.Claims, and claims that are not identity claims keep any type.
func TestVerifyConfiguredClaimNamesAreStrings(t *testing.T) {
	v := newVerifier(t, core.JWTConfig{Secret: testSecret, Claims: core.ClaimNames{
		ActorID: "uid", ActorType: "kind", Email: "mail", TenantID: "org", TenantSlug: "org_slug"}})
	base := with(claims("ignored"), "uid", "u-1", "sub", 1001, "actor_type", 7, "email", true, "tenant_id", 5)
	if id, err := v.Verify(context.Background(), hs256(t, base)); err != nil || id.Actor.ID != "u-1" {
		t.Fatalf("unconfigured names of other types: %+v, %v", id.Actor, err)
	}
	for _, tc := range []struct {
		claim string
		value any
		want  string
	}{
		{"uid", 1001, `JWT refused: invalid claims: "uid" is a number, not a string`},
		{"kind", true, `JWT refused: invalid claims: "kind" is a boolean, not a string`},
		{"mail", []string{"a@example.com"}, `JWT refused: invalid claims: "mail" is an array, not a string`},
		{"org", 42, `JWT refused: invalid claims: "org" is a number, not a string`},
		{"org_slug", map[string]any{}, `JWT refused: invalid claims: "org_slug" is an object, not a string`},
	} {
		_, err := v.Verify(context.Background(), hs256(t, with(base, tc.claim, tc.value)))
		if !errors.Is(err, ginaudit.ErrClaims) || err.Error() != tc.want {
			t.Errorf("%s = %v: %v, want %s", tc.claim, tc.value, err, tc.want)
		}
	}
}

// tamper replaces the payload of a signed token, keeping its header and signature.
func tamper(t testing.TB, token string, c jwt.MapClaims) string {
	t.Helper()
	parts := strings.Split(token, ".")
	forged := strings.Split(sign(t, jwt.SigningMethodHS256, []byte("whatever-whatever-whatever-whatev"), c, ""), ".")
	return parts[0] + "." + forged[1] + "." + parts[2]
}

// withHeader replaces the header of a signed token.
func withHeader(t testing.TB, token, header string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	return b64([]byte(header)) + "." + parts[1] + "." + parts[2]
}

func TestVerifyIdentity(t *testing.T) {
	v := newVerifier(t, core.JWTConfig{Secret: testSecret, Claims: core.ClaimNames{TenantID: "org", TenantSlug: "org_slug"}})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), with(claims("u-9"),
		"actor_type", "ops", "email", "ops@example.com", "org", "t-1", "org_slug", "acme",
		"iss", "https://idp.test", "jti", "jti-1", "role", "auditor"), "k1")
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := core.Actor{ID: "u-9", Type: core.ActorPlatformAdmin, Email: "ops@example.com", Auth: "jwt:HS256"}
	if id.Actor != want {
		t.Errorf("actor = %+v, want %+v", id.Actor, want)
	}
	if id.Tenant != (core.Tenant{ID: "t-1", Slug: "acme"}) {
		t.Errorf("tenant = %+v", id.Tenant)
	}
	if id.Issuer != "https://idp.test" || id.TokenID != "jti-1" || id.KeyID != "k1" || id.Algorithm != "HS256" {
		t.Errorf("token facts = %q %q %q %q", id.Issuer, id.TokenID, id.KeyID, id.Algorithm)
	}
	if id.Claims["role"] != "auditor" || id.ExpiresAt.IsZero() {
		t.Errorf("claims = %v, exp %v", id.Claims, id.ExpiresAt)
	}

	// Defaults: no actor_type means tenant_user; aliases map.
	for _, tc := range []struct {
		c    jwt.MapClaims
		want core.Actor
	}{
		{claims("u-1"), core.Actor{ID: "u-1", Type: core.ActorTenantUser, Auth: "jwt:HS256"}},
		{with(claims("b"), "actor_type", "bot"), core.Actor{ID: "b", Type: core.ActorService, Auth: "jwt:HS256"}},
		{with(claims("s"), "actor_type", "service"), core.Actor{ID: "s", Type: core.ActorService, Auth: "jwt:HS256"}},
	} {
		id, err := v.Verify(context.Background(), hs256(t, tc.c))
		if err != nil || id.Actor != tc.want {
			t.Errorf("claims %v: actor %+v, %v; want %+v", tc.c, id.Actor, err, tc.want)
		}
	}

	// An unknown actor type wraps core's sentinel too, so callers of either package can test it.
	_, err = v.Verify(context.Background(), hs256(t, with(claims("u"), "actor_type", "root")))
	if !errors.Is(err, core.ErrUnknownActorType) {
		t.Errorf("unknown actor type: %v", err)
	}
	if _, err := v.Verify(context.Background(), ""); !errors.Is(err, ginaudit.ErrNoToken) || errors.Is(err, ginaudit.ErrInvalidToken) {
		t.Errorf("empty token: %v", err)
	}
}

func TestVerifyAsymmetricKeys(t *testing.T) {
	rsaPEM := pemOf(t, &rsaKey().PublicKey)
	cases := []struct {
		name  string
		cfg   core.JWTConfig
		token string
		want  error
		auth  string
	}{
		{"RS256", core.JWTConfig{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), ""), nil, "jwt:RS256"},
		{"PS256", core.JWTConfig{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodPS256, rsaKey(), claims("u-1"), ""), nil, "jwt:PS256"},
		{"RS256 by another key", core.JWTConfig{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodRS256, rsaKey2(), claims("u-1"), ""), ginaudit.ErrSignature, ""},
		// Algorithm confusion: an HS256 token whose HMAC secret is the RSA public key's PEM text.
		{"HS256 with the RSA public key as secret", core.JWTConfig{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), claims("u-1"), ""), ginaudit.ErrAlgorithm, ""},
		{"ES256 against an RSA key", core.JWTConfig{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodES256, ecKey(), claims("u-1"), ""), ginaudit.ErrAlgorithm, ""},
		{"none against an RSA key", core.JWTConfig{PublicKeyPEM: rsaPEM}, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("u-1"), ""), ginaudit.ErrAlgorithm, ""},
		{"RS256 restricted to PS256", core.JWTConfig{PublicKeyPEM: rsaPEM, Algorithms: []string{"PS256"}}, sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), ""), ginaudit.ErrAlgorithm, ""},
		{"ES256", core.JWTConfig{PublicKeyPEM: pemOf(t, &ecKey().PublicKey)}, sign(t, jwt.SigningMethodES256, ecKey(), claims("u-1"), ""), nil, "jwt:ES256"},
		{"ES384 against a P-256 key", core.JWTConfig{PublicKeyPEM: pemOf(t, &ecKey().PublicKey)}, sign(t, jwt.SigningMethodES384, must(ecdsaP384()), claims("u-1"), ""), ginaudit.ErrAlgorithm, ""},
		{"EdDSA", core.JWTConfig{PublicKeyPEM: pemOf(t, edKey().Public())}, sign(t, jwt.SigningMethodEdDSA, edKey(), claims("u-1"), ""), nil, "jwt:EdDSA"},
		{"HS256 with the Ed25519 key as secret", core.JWTConfig{PublicKeyPEM: pemOf(t, edKey().Public())}, sign(t, jwt.SigningMethodHS256, []byte(edKey().Public().(ed25519.PublicKey)), claims("u-1"), ""), ginaudit.ErrAlgorithm, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.cfg)
			id, err := v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil || id.Actor.Auth != tc.auth || id.Actor.ID != "u-1" {
					t.Fatalf("Verify = %+v, %v; want auth %s", id.Actor, err, tc.auth)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			if id.Actor != (core.Actor{}) {
				t.Fatalf("failed verification returned actor %+v", id.Actor)
			}
		})
	}
}

func TestNewVerifierConfigErrors(t *testing.T) {
	rsaPEM := pemOf(t, &rsaKey().PublicKey)
	cases := []struct {
		name    string
		cfg     core.JWTConfig
		aliases map[string]core.ActorType
		want    error
	}{
		{"no key", core.JWTConfig{}, nil, ginaudit.ErrNoKey},
		{"short secret", core.JWTConfig{Secret: "short"}, nil, core.ErrConfig},
		{"HS256 allowed with an RSA key", core.JWTConfig{PublicKeyPEM: rsaPEM, Algorithms: []string{"RS256", "HS256"}}, nil, core.ErrConfig},
		{"none in the allow-list", core.JWTConfig{Secret: testSecret, Algorithms: []string{"none"}}, nil, core.ErrConfig},
		{"private key given", core.JWTConfig{PublicKeyPEM: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, nil, core.ErrConfig},
		{"skip combined with a key", core.JWTConfig{Secret: testSecret, UnsafeSkipVerification: true}, nil, core.ErrConfig},
		{"alias to a non-type", core.JWTConfig{Secret: testSecret}, map[string]core.ActorType{"root": "god"}, core.ErrConfig},
		{"alias redefining a type", core.JWTConfig{Secret: testSecret}, map[string]core.ActorType{"service": core.ActorPlatformAdmin}, core.ErrConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ginaudit.NewVerifier(context.Background(), tc.cfg, tc.aliases)
			if !errors.Is(err, tc.want) || v != nil {
				t.Fatalf("NewVerifier = %v, %v; want %v", v, err, tc.want)
			}
		})
	}
}

func TestVerifyUnsafeSkipVerification(t *testing.T) {
	v := newVerifier(t, core.JWTConfig{UnsafeSkipVerification: true, Issuer: "gw"})
	// Any signature passes: the gateway in front is trusted to have checked it.
	id, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey2(), with(claims("u-1"), "iss", "gw"), ""))
	if err != nil || id.Actor.Auth != "unverified" || id.Actor.ID != "u-1" {
		t.Fatalf("Verify = %+v, %v", id.Actor, err)
	}
	// Claims are still checked, and "none" is still refused.
	for _, tc := range []struct {
		token string
		want  error
	}{
		{sign(t, jwt.SigningMethodHS256, []byte(testSecret), with(claims("u"), "iss", "gw", "exp", time.Now().Add(-time.Hour).Unix()), ""), ginaudit.ErrExpired},
		{sign(t, jwt.SigningMethodHS256, []byte(testSecret), with(claims("u"), "iss", "other"), ""), ginaudit.ErrIssuer},
		{sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, with(claims("u"), "iss", "gw"), ""), ginaudit.ErrAlgorithm},
		{sign(t, jwt.SigningMethodHS256, []byte(testSecret), with(claims("u"), "iss", "gw", "sub", nil), ""), ginaudit.ErrMissingSubject},
	} {
		if id, err := v.Verify(context.Background(), tc.token); !errors.Is(err, tc.want) || id.Actor.ID != "" {
			t.Errorf("Verify = %+v, %v; want %v", id.Actor, err, tc.want)
		}
	}
}

func TestVerifyJWKS(t *testing.T) {
	checkNoLeaks(t)
	srv := newJWKSServer(t,
		jwkOf("rsa-1", "RS256", &rsaKey().PublicKey),
		jwkOf("ec-1", "ES256", &ecKey().PublicKey),
		jwkOf("ed-1", "", edKey().Public()),
		jwkOf("oct-1", "HS256", []byte(testSecret)),
	)
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: srv.URL}, nil, ginaudit.WithJWKSRefresh(0, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	check := func(name, token string, want error, auth string) {
		t.Helper()
		id, err := v.Verify(ctx, token)
		switch {
		case want == nil && (err != nil || id.Actor.Auth != auth):
			t.Errorf("%s: Verify = %+v, %v; want auth %s", name, id.Actor, err, auth)
		case want != nil && (!errors.Is(err, want) || id.Actor != core.Actor{}):
			t.Errorf("%s: Verify = %+v, %v; want %v", name, id.Actor, err, want)
		}
	}
	check("RS256 rsa-1", sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), "rsa-1"), nil, "jwks:RS256")
	check("ES256 ec-1", sign(t, jwt.SigningMethodES256, ecKey(), claims("u-1"), "ec-1"), nil, "jwks:ES256")
	check("ES256 without kid", sign(t, jwt.SigningMethodES256, ecKey(), claims("u-1"), ""), nil, "jwks:ES256")
	check("EdDSA ed-1", sign(t, jwt.SigningMethodEdDSA, edKey(), claims("u-1"), "ed-1"), nil, "jwks:EdDSA")
	check("RS256 naming the EC key", sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), "ec-1"), ginaudit.ErrUnknownKey, "")
	check("PS256 naming the RS256-only key", sign(t, jwt.SigningMethodPS256, rsaKey(), claims("u-1"), "rsa-1"), ginaudit.ErrUnknownKey, "")
	check("RS256 by a key not in the set", sign(t, jwt.SigningMethodRS256, rsaKey2(), claims("u-1"), "rsa-1"), ginaudit.ErrSignature, "")
	// The set publishes an "oct" key: HMAC is still refused, with and without its kid.
	check("HS256 with the published oct key", sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("u-1"), "oct-1"), ginaudit.ErrAlgorithm, "")
	check("HS256 with the RSA modulus", sign(t, jwt.SigningMethodHS256, rsaKey().N.Bytes(), claims("u-1"), ""), ginaudit.ErrAlgorithm, "")
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("fetches after known kids = %d, want 1", n)
	}

	// Rotation: rsa-2 replaces rsa-1. The first token naming rsa-2 triggers one fetch; rsa-1 is
	// then revoked. Another unknown kid right after finds the refresh limiter empty and fails at
	// once instead of waiting.
	srv.set(jwkOf("rsa-2", "RS256", &rsaKey2().PublicKey), jwkOf("ec-1", "ES256", &ecKey().PublicKey))
	check("RS256 rsa-2 after rotation", sign(t, jwt.SigningMethodRS256, rsaKey2(), claims("u-1"), "rsa-2"), nil, "jwks:RS256")
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches after rotation = %d, want 2", n)
	}
	check("RS256 rsa-1 after revocation", sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), "rsa-1"), ginaudit.ErrUnknownKey, "")
	start := time.Now()
	check("unknown kid while the limiter is empty", sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), "rsa-3"), ginaudit.ErrUnknownKey, "")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("unknown kid waited %s", d)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches after unknown kids = %d, want 2 (rate-limited)", n)
	}
}

func TestVerifyJWKSBackgroundRefresh(t *testing.T) {
	checkNoLeaks(t)
	srv := newJWKSServer(t, jwkOf("rsa-1", "RS256", &rsaKey().PublicKey))
	// No unknown-kid fetches: only the background refresh can pick up rsa-2.
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: srv.URL}, nil,
		ginaudit.WithJWKSRefresh(20*time.Millisecond, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodRS256, rsaKey2(), claims("u-1"), "rsa-2")
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ginaudit.ErrUnknownKey) {
		t.Fatalf("before publication: %v", err) // consumes the one on-demand fetch
	}
	srv.set(jwkOf("rsa-2", "RS256", &rsaKey2().PublicKey))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsa-2 never became usable: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // poll until the background refresh has run
	}
	v.Close() // goleak checks that the refresh goroutine ends
}

// TestVerifyJWKSKeyRepublishedForEncryption: a token verified (and cached) while its key was a
// signing key stops verifying once the key set republishes that kid as an encryption key,
// without waiting for the cache to forget it.
func TestVerifyJWKSKeyRepublishedForEncryption(t *testing.T) {
	checkNoLeaks(t)
	srv := newJWKSServer(t, jwkOf("rsa-1", "RS256", &rsaKey().PublicKey))
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: srv.URL}, nil,
		ginaudit.WithJWKSRefresh(20*time.Millisecond, time.Hour), ginaudit.WithTokenCache(time.Hour, 16),
		ginaudit.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), "rsa-1")
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	enc := jwkOf("rsa-1", "", &rsaKey().PublicKey)
	enc["use"] = "enc"
	srv.set(enc)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(context.Background(), tok)
		if errors.Is(err, ginaudit.ErrUnknownKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token still verifies with an encryption key: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // poll until the background refresh has run
	}
}

func TestVerifyJWKSUnreachable(t *testing.T) {
	// An identity provider that is down at start-up is not a construction error; tokens fail with
	// ErrUnknownKey until keys can be fetched.
	srv := newJWKSServer(t)
	url := srv.URL
	srv.Close()
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: url}, nil, ginaudit.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey(), claims("u-1"), "rsa-1"))
	if !errors.Is(err, ginaudit.ErrUnknownKey) {
		t.Fatalf("Verify = %v", err)
	}

	// A cancelled construction context is an error, and nothing keeps running.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if v, err := ginaudit.NewVerifier(ctx, core.JWTConfig{JWKSURL: url}, nil, ginaudit.WithLogger(discardLogger())); err == nil || v != nil {
		t.Fatalf("NewVerifier with a cancelled context = %v, %v", v, err)
	}
}

// checkNoLeaks fails t if goroutines started during the test outlive its cleanups (registered
// first, it runs last).
func checkNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}
