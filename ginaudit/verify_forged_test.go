package ginaudit_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// forgeIssuer and forgeAudience are what the corpus's verifiers require.
const (
	forgeIssuer   = "https://idp.test"
	forgeAudience = "api"
)

// forgeSetup is one verifier configuration of the corpus: how it is built and how a token's
// signing input is signed so that only the property under test is wrong.
type forgeSetup struct {
	name    string
	opts    func(t *testing.T) ginaudit.Options
	signRaw func(t testing.TB, input string) string // the signature segment for a signing input
	alg     string
}

// forgeClaims are valid claims for the corpus's verifiers; kv changes them (nil deletes).
func forgeClaims(kv ...any) jwt.MapClaims {
	return with(with(claims("u-1"), "iss", forgeIssuer, "aud", forgeAudience, "tenant_id", "t-1"), kv...)
}

func seg(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jsonSeg(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return seg(b)
}

// rawToken assembles header.payload.signature from raw JSON texts, signing the exact segments
// with s (so a refusal is due to what the header or payload says, not to the signature).
func rawToken(t testing.TB, s forgeSetup, header, payload string) string {
	input := seg([]byte(header)) + "." + seg([]byte(payload))
	return input + "." + s.signRaw(t, input)
}

// signedInput signs the given (possibly non-canonical) segments.
func signedInput(t testing.TB, s forgeSetup, h, p string) string {
	input := h + "." + p
	return input + "." + s.signRaw(t, input)
}

// tokenFor signs claims with the setup's algorithm and header extras.
func tokenFor(t testing.TB, s forgeSetup, c jwt.MapClaims, hdr ...any) string {
	h := map[string]any{"alg": s.alg, "typ": "JWT"}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == nil {
			delete(h, hdr[i].(string))
		} else {
			h[hdr[i].(string)] = hdr[i+1]
		}
	}
	return signedInput(t, s, jsonSeg(t, h), jsonSeg(t, c))
}

func methodSigner(m jwt.SigningMethod, key any) func(t testing.TB, input string) string {
	return func(t testing.TB, input string) string {
		sig, err := m.Sign(input, key)
		if err != nil {
			t.Fatal(err)
		}
		return seg(sig)
	}
}

// noncanonical changes the unused low bits of the last character of a base64url segment: a
// lenient decoder reads the same bytes, a strict one refuses.
func noncanonical(t testing.TB, s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(s)%4 == 0 {
		t.Fatalf("segment %q has no unused bits", s)
	}
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i^1])
}

func parts(tok string) []string { return strings.Split(tok, ".") }

// withSig replaces the signature segment.
func withSig(tok, sig string) string {
	p := parts(tok)
	return p[0] + "." + p[1] + "." + sig
}

// capturedLogs collects the messages logged through it.
type capturedLogs struct {
	mu   sync.Mutex
	msgs []string
}

func (c *capturedLogs) Enabled(context.Context, slog.Level) bool { return true }
func (c *capturedLogs) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	c.mu.Lock()
	c.msgs = append(c.msgs, b.String())
	c.mu.Unlock()
	return nil
}
func (c *capturedLogs) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capturedLogs) WithGroup(string) slog.Handler      { return c }
func (c *capturedLogs) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.msgs, "\n")
}

// forgeCase is one token of the corpus. reason is the exact refusal stored in the record's
// auth_error; an empty reason marks a control token that must become the actor.
type forgeCase struct {
	setup, name, token, reason string
}

// refusalCodes maps the start of a reason to the auth_failure code stored with it.
var refusalCodes = []struct{ prefix, code string }{
	{"JWT refused: malformed JWT", "malformed"},
	{"JWT refused: signing algorithm not allowed", "algorithm"},
	{"JWT refused: critical header parameter not understood", "crit"},
	{"JWT refused: signature is invalid", "signature"},
	{"JWT refused: no verification key", "unknown_key"},
	{"JWT refused: expired", "expired"},
	{"JWT refused: not valid yet", "not_yet_valid"},
	{"JWT refused: wrong issuer", "issuer"},
	{"JWT refused: wrong audience", "audience"},
	{"JWT refused: invalid claims", "claims"},
	{"JWT refused: no subject", "missing_subject"},
	{"JWT refused: unknown actor type", "unknown_actor_type"},
	{"JWT refused: invalid tenant", "invalid_tenant"},
}

// TestForgedTokenCorpus sends forged, confused and malformed tokens through the Middleware over
// real HTTP. None may become an actor or name a tenant, in the record or in the handler's
// context, and each record stores exactly one expected reason. Control tokens in each setup
// must become actors, so a broken harness cannot pass.
func TestForgedTokenCorpus(t *testing.T) {
	now := time.Now()
	rsaPub := &rsaKey().PublicKey
	rsaPEM := pemOf(t, rsaPub)
	rsaDER := must(x509.MarshalPKIXPublicKey(rsaPub))
	weakKey := must(rsa.GenerateKey(rand.Reader, 1024))
	ec384 := must(ecdsaP384())
	jwksLogs := &capturedLogs{}
	jwks := newJWKSServer(t,
		jwkOf("rsa-1", "RS256", rsaPub),
		with2(jwkOf("enc-1", "", &rsaKey2().PublicKey), "use", "enc"),
		with2(jwkOf("ops-1", "", &rsaKey2().PublicKey), "use", nil, "key_ops", []string{"encrypt", "wrapKey"}),
		jwkOf("weak-1", "", &weakKey.PublicKey),
		jwkOf("ps-only", "PS256", rsaPub),
		jwkOf("ec384", "", &ec384.PublicKey),
		jwkOf("ed-1", "", edKey().Public()),
		jwkOf("oct-1", "", []byte(testSecret)),
	)

	hs := forgeSetup{name: "hs", alg: "HS256", signRaw: methodSigner(jwt.SigningMethodHS256, []byte(testSecret)),
		opts: func(t *testing.T) ginaudit.Options {
			return ginaudit.Options{Config: core.Config{ActorTypeAliases: testAliases, JWT: core.JWTConfig{
				Secret: testSecret, Issuer: forgeIssuer, Audience: []string{forgeAudience}}}}
		}}
	rs := forgeSetup{name: "rs", alg: "RS256", signRaw: methodSigner(jwt.SigningMethodRS256, rsaKey()),
		opts: func(t *testing.T) ginaudit.Options {
			return ginaudit.Options{Config: core.Config{JWT: core.JWTConfig{
				PublicKeyPEM: rsaPEM, Issuer: forgeIssuer, Audience: []string{forgeAudience}}}}
		}}
	jw := forgeSetup{name: "jwks", alg: "RS256", signRaw: methodSigner(jwt.SigningMethodRS256, rsaKey()),
		opts: func(t *testing.T) ginaudit.Options {
			v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{JWKSURL: jwks.URL, Issuer: forgeIssuer,
				Audience: []string{forgeAudience}}, nil, ginaudit.WithJWKSRefresh(0, time.Hour), ginaudit.WithLogger(slog.New(jwksLogs)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			return ginaudit.Options{Verifier: v}
		}}
	setups := []forgeSetup{hs, rs, jw}

	// Control tokens; the hs control's signature has both '-' and '_', so that the
	// alphabet cases below have something to change.
	var control string
	for i := 0; ; i++ {
		control = tokenFor(t, hs, forgeClaims("jti", strconv.Itoa(i)))
		if sig := parts(control)[2]; strings.ContainsAny(sig, "-") && strings.ContainsAny(sig, "_") {
			break
		}
	}
	// A payload whose encoding has '-' or '_', to spell it in the standard alphabet.
	var stdPayload string
	for i := 0; ; i++ {
		stdPayload = jsonSeg(t, forgeClaims("jti", "p"+strconv.Itoa(i), "note", "~~~???>>>"))
		if strings.ContainsAny(stdPayload, "-_") {
			break
		}
	}
	toStd := strings.NewReplacer("-", "+", "_", "/")
	hp := parts(control)
	okPayload := func(kv ...any) string {
		b, _ := json.Marshal(forgeClaims(kv...))
		return string(b)
	}
	hsHeader := `{"alg":"HS256","typ":"JWT"}`
	exp := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	iat := strconv.FormatInt(now.Unix(), 10)
	dupPayload := func(member string) string { // the valid claims plus a repeated member
		return `{"sub":"u-1","iss":"` + forgeIssuer + `","aud":"api","tenant_id":"t-1","iat":` + iat + `,"exp":` + exp + `,` + member + `}`
	}
	hsClaim := func(kv ...any) string { return tokenFor(t, hs, forgeClaims(kv...)) }
	// A header that encodes to a length with unused bits (not a multiple of 3 bytes).
	oddHeader := `{"alg":"HS256","typ":"JWT","x":12}`
	if len(oddHeader)%3 == 0 {
		t.Fatalf("header %q has no unused bits", oddHeader)
	}
	huge := hsClaim("pad", strings.Repeat("a", 17<<10))

	cases := []forgeCase{
		// Controls.
		{"hs", "control", control, ""},
		{"hs", "control: aud as an array holding the audience", hsClaim("aud", []string{"other", "api"}), ""},
		{"hs", "control: alias", hsClaim("actor_type", "bot"), ""},
		{"rs", "control", tokenFor(t, rs, forgeClaims()), ""},
		{"rs", "control: PS256", sign(t, jwt.SigningMethodPS256, rsaKey(), forgeClaims(), ""), ""},
		{"jwks", "control: kid rsa-1", tokenFor(t, jw, forgeClaims(), "kid", "rsa-1"), ""},
		{"jwks", "control: no kid", tokenFor(t, jw, forgeClaims()), ""},
		{"jwks", "control: EdDSA ed-1", sign(t, jwt.SigningMethodEdDSA, edKey(), forgeClaims(), "ed-1"), ""},
		{"jwks", "control: ES384 ec384", sign(t, jwt.SigningMethodES384, ec384, forgeClaims(), "ec384"), ""},

		// Algorithms: none in every spelling, outside the allow-list, confusion, unknown.
		{"hs", "alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, forgeClaims("actor_type", "platform_admin"), ""), "JWT refused: signing algorithm not allowed: none"},
		{"hs", "alg None", seg([]byte(`{"alg":"None"}`)) + "." + seg([]byte(okPayload())) + ".", "JWT refused: signing algorithm not allowed: None"},
		{"hs", "alg NONE", seg([]byte(`{"alg":"NONE"}`)) + "." + seg([]byte(okPayload())) + ".", "JWT refused: signing algorithm not allowed: NONE"},
		{"hs", "alg nOnE", seg([]byte(`{"alg":"nOnE"}`)) + "." + seg([]byte(okPayload())) + ".", "JWT refused: signing algorithm not allowed: nOnE"},
		{"hs", "alg none with a signature", rawToken(t, hs, `{"alg":"none"}`, okPayload()), "JWT refused: signing algorithm not allowed: none"},
		{"rs", "alg none against a public key", seg([]byte(`{"alg":"none"}`)) + "." + seg([]byte(okPayload())) + ".", "JWT refused: signing algorithm not allowed: none"},
		{"jwks", "alg none against a JWKS", seg([]byte(`{"alg":"none","kid":"rsa-1"}`)) + "." + seg([]byte(okPayload())) + ".", "JWT refused: signing algorithm not allowed: none"},
		{"hs", "HS384 outside the allow-list", sign(t, jwt.SigningMethodHS384, []byte(testSecret+testSecret), forgeClaims(), ""), "JWT refused: signing algorithm not allowed: HS384"},
		{"hs", "HS512 outside the allow-list", sign(t, jwt.SigningMethodHS512, []byte(testSecret+testSecret), forgeClaims(), ""), "JWT refused: signing algorithm not allowed: HS512"},
		{"hs", "RS256 against a secret", tokenFor(t, rs, forgeClaims()), "JWT refused: signing algorithm not allowed: RS256"},
		{"hs", "lower-case hs256", rawToken(t, hs, `{"alg":"hs256"}`, okPayload()), "JWT refused: signing algorithm not allowed: hs256"},
		{"hs", "alg with a space", rawToken(t, hs, `{"alg":"HS256 "}`, okPayload()), `JWT refused: signing algorithm not allowed: "HS256 "`},
		{"hs", "unknown alg", rawToken(t, hs, `{"alg":"XS999"}`, okPayload()), "JWT refused: signing algorithm not allowed: XS999"},
		{"hs", "no alg", rawToken(t, hs, `{"typ":"JWT"}`, okPayload()), "JWT refused: signing algorithm not allowed: alg is missing"},
		{"hs", "alg a number", rawToken(t, hs, `{"alg":256}`, okPayload()), "JWT refused: signing algorithm not allowed: alg is not a string"},
		{"hs", "alg null", rawToken(t, hs, `{"alg":null}`, okPayload()), "JWT refused: signing algorithm not allowed: alg is not a string"},
		{"rs", "confusion: HS256 keyed with the RSA PEM", sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), forgeClaims("actor_type", "platform_admin"), ""), "JWT refused: signing algorithm not allowed: HS256"},
		{"rs", "confusion: HS256 keyed with the RSA DER", sign(t, jwt.SigningMethodHS256, rsaDER, forgeClaims(), ""), "JWT refused: signing algorithm not allowed: HS256"},
		{"rs", "confusion: HS384 keyed with the RSA PEM", sign(t, jwt.SigningMethodHS384, []byte(rsaPEM), forgeClaims(), ""), "JWT refused: signing algorithm not allowed: HS384"},
		{"rs", "ES256 against an RSA key", sign(t, jwt.SigningMethodES256, ecKey(), forgeClaims(), ""), "JWT refused: signing algorithm not allowed: ES256"},
		{"rs", "EdDSA against an RSA key", sign(t, jwt.SigningMethodEdDSA, edKey(), forgeClaims(), ""), "JWT refused: signing algorithm not allowed: EdDSA"},
		{"jwks", "confusion: HS256 keyed with the oct JWK", sign(t, jwt.SigningMethodHS256, []byte(testSecret), forgeClaims(), "oct-1"), "JWT refused: signing algorithm not allowed: HS256"},
		{"jwks", "confusion: HS256 keyed with the RSA PEM, kid rsa-1", sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), forgeClaims(), "rsa-1"), "JWT refused: signing algorithm not allowed: HS256"},

		// Signatures.
		{"hs", "stripped signature", hp[0] + "." + hp[1] + ".", "JWT refused: signature is invalid"},
		{"hs", "stripped signature segment", hp[0] + "." + hp[1], "JWT refused: malformed JWT: not three dot-separated segments"},
		{"hs", "wrong secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), forgeClaims("actor_type", "platform_admin"), ""), "JWT refused: signature is invalid"},
		{"hs", "tampered payload", hp[0] + "." + jsonSeg(t, forgeClaims("sub", "admin")) + "." + hp[2], "JWT refused: signature is invalid"},
		{"hs", "tampered header", jsonSeg(t, map[string]any{"alg": "HS256", "kid": "x"}) + "." + hp[1] + "." + hp[2], "JWT refused: signature is invalid"},
		{"hs", "signature of another token", withSig(hsClaim("sub", "admin"), hp[2]), "JWT refused: signature is invalid"},
		{"hs", "truncated signature", withSig(control, seg(must(base64.RawURLEncoding.DecodeString(hp[2]))[:30])), "JWT refused: signature is invalid"},
		{"hs", "flipped signature bit", withSig(control, flipFirst(hp[2])), "JWT refused: signature is invalid"},
		{"rs", "signed by another RSA key", sign(t, jwt.SigningMethodRS256, rsaKey2(), forgeClaims("actor_type", "platform_admin"), ""), "JWT refused: signature is invalid"},
		{"rs", "empty RSA signature", parts(tokenFor(t, rs, forgeClaims()))[0] + "." + parts(tokenFor(t, rs, forgeClaims()))[1] + ".", "JWT refused: signature is invalid"},
		{"hs", "four segments", control + ".x", "JWT refused: malformed JWT: not three dot-separated segments"},
		{"hs", "five segments (JWE shape)", "a.b.c.d.e", "JWT refused: malformed JWT: not three dot-separated segments"},
		{"hs", "not a JWT", "garbage", "JWT refused: malformed JWT: not three dot-separated segments"},
		{"hs", "empty bearer", "", "JWT refused: malformed JWT: no credentials after the scheme"},
		{"hs", "three empty segments", "..", "JWT refused: malformed JWT: header is empty"},
		{"hs", "header not JSON", seg([]byte("notjson")) + "." + hp[1] + "." + hp[2], "JWT refused: malformed JWT: header is not JSON"},
		{"hs", "header a JSON array", rawToken(t, hs, `["HS256"]`, okPayload()), "JWT refused: malformed JWT: header is not a JSON object"},
		{"hs", "header with trailing data", rawToken(t, hs, hsHeader+`{}`, okPayload()), "JWT refused: malformed JWT: header is not JSON"},
		{"hs", "header with trailing garbage", rawToken(t, hs, hsHeader+` x`, okPayload()), "JWT refused: malformed JWT: header is not JSON"},
		{"hs", "claims a JSON array", rawToken(t, hs, hsHeader, `["u-1"]`), "JWT refused: malformed JWT: claims set is not a JSON object"},
		{"hs", "claims a JSON string", rawToken(t, hs, hsHeader, `"u-1"`), "JWT refused: malformed JWT: claims set is not a JSON object"},
		{"hs", "claims empty", rawToken(t, hs, hsHeader, ``), "JWT refused: malformed JWT: claims set is empty"},
		{"hs", "huge token", huge, "JWT refused: malformed JWT: longer than 16384 bytes"},

		// Strict base64url: one token, one spelling (these are spellings of the cached control).
		{"hs", "signature padded =", control + "=", "JWT refused: malformed JWT: signature is not strict base64url"},
		{"hs", "signature padded ==", control + "==", "JWT refused: malformed JWT: signature is not strict base64url"},
		{"hs", "signature non-canonical trailing bits", withSig(control, noncanonical(t, hp[2])), "JWT refused: malformed JWT: signature is not strict base64url"},
		{"hs", "signature in the standard alphabet", withSig(control, toStd.Replace(hp[2])), "JWT refused: malformed JWT: signature is not strict base64url"},
		{"hs", "signature percent-encoded", withSig(control, strings.ReplaceAll(hp[2], "-", "%2D")), "JWT refused: malformed JWT: signature is not strict base64url"},
		{"hs", "signature with a space", withSig(control, hp[2][:10]+" "+hp[2][10:]), "JWT refused: malformed JWT: signature is not strict base64url"},
		{"hs", "header padded", signedInput(t, hs, hp[0]+"=", hp[1]), "JWT refused: malformed JWT: header is not strict base64url"},
		{"hs", "header non-canonical trailing bits", signedInput(t, hs, noncanonical(t, seg([]byte(oddHeader))), hp[1]), "JWT refused: malformed JWT: header is not strict base64url"},
		{"hs", "claims padded", signedInput(t, hs, hp[0], padded(hp[1])), "JWT refused: malformed JWT: claims set is not strict base64url"},
		{"hs", "claims in the standard alphabet", signedInput(t, hs, hp[0], toStd.Replace(stdPayload)), "JWT refused: malformed JWT: claims set is not strict base64url"},
		{"hs", "claims with a space", signedInput(t, hs, hp[0], hp[1][:5]+" "+hp[1][5:]), "JWT refused: malformed JWT: claims set is not strict base64url"},

		// Duplicate members: which one wins differs between parsers, so the token is refused.
		{"hs", "header: alg twice", rawToken(t, hs, `{"alg":"none","alg":"HS256"}`, okPayload()), `JWT refused: malformed JWT: header names "alg" twice`},
		{"hs", "header: alg twice, same value", rawToken(t, hs, `{"alg":"HS256","alg":"HS256"}`, okPayload()), `JWT refused: malformed JWT: header names "alg" twice`},
		{"hs", "header: alg twice, escaped", rawToken(t, hs, `{"alg":"HS256","\u0061lg":"none"}`, okPayload()), `JWT refused: malformed JWT: header names "alg" twice`},
		{"hs", "claims: sub twice", rawToken(t, hs, hsHeader, dupPayload(`"sub":"admin"`)), `JWT refused: malformed JWT: claims set names "sub" twice`},
		{"hs", "claims: sub twice, escaped", rawToken(t, hs, hsHeader, dupPayload(`"\u0073ub":"admin"`)), `JWT refused: malformed JWT: claims set names "sub" twice`},
		{"hs", "claims: tenant twice", rawToken(t, hs, hsHeader, dupPayload(`"tenant_id":"t-2"`)), `JWT refused: malformed JWT: claims set names "tenant_id" twice`},
		{"hs", "claims: actor type twice", rawToken(t, hs, hsHeader, dupPayload(`"actor_type":"tenant_user","actor_type":"platform_admin"`)), `JWT refused: malformed JWT: claims set names "actor_type" twice`},
		{"hs", "claims: exp twice", rawToken(t, hs, hsHeader, dupPayload(`"exp":99999999999`)), `JWT refused: malformed JWT: claims set names "exp" twice`},
		{"hs", "claims: nested member twice", rawToken(t, hs, hsHeader, dupPayload(`"roles":{"a":1,"b":[{"c":1,"c":2}]}`)), `JWT refused: malformed JWT: claims set names "c" twice`},

		// crit (RFC 7515 §4.1.11) and nested JWTs.
		{"hs", "crit names an extension", rawToken(t, hs, `{"alg":"HS256","crit":["exp"],"exp":1}`, okPayload()), `JWT refused: critical header parameter not understood: crit names "exp"`},
		{"hs", "crit b64", rawToken(t, hs, `{"alg":"HS256","b64":false,"crit":["b64"]}`, okPayload()), `JWT refused: critical header parameter not understood: crit names "b64"`},
		{"hs", "crit names two", rawToken(t, hs, `{"alg":"HS256","crit":["x-a","x-b"],"x-a":1,"x-b":2}`, okPayload()), `JWT refused: critical header parameter not understood: crit names "x-a,x-b"`},
		{"hs", "crit empty", rawToken(t, hs, `{"alg":"HS256","crit":[]}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"hs", "crit a string", rawToken(t, hs, `{"alg":"HS256","crit":"b64"}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"hs", "crit numbers", rawToken(t, hs, `{"alg":"HS256","crit":[1]}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"hs", "crit null", rawToken(t, hs, `{"alg":"HS256","crit":null}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"hs", "crit an object", rawToken(t, hs, `{"alg":"HS256","crit":{}}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"hs", "crit names a registered parameter", rawToken(t, hs, `{"alg":"HS256","crit":["alg"]}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"hs", "crit names kid", rawToken(t, hs, `{"alg":"HS256","kid":"k","crit":["kid","x"]}`, okPayload()), "JWT refused: critical header parameter not understood: crit is malformed"},
		{"rs", "crit with a valid RSA signature", tokenFor(t, rs, forgeClaims(), "crit", []string{"x-ext"}, "x-ext", true), `JWT refused: critical header parameter not understood: crit names "x-ext"`},
		{"hs", "nested JWT", rawToken(t, hs, `{"alg":"HS256","cty":"JWT"}`, control), "JWT refused: malformed JWT: nested JWT (cty JWT) not accepted"},
		{"hs", "cty jwt with JSON claims", rawToken(t, hs, `{"alg":"HS256","cty":"jwt"}`, okPayload()), "JWT refused: malformed JWT: nested JWT (cty JWT) not accepted"},

		// Identity claims are strings (RFC 7519 §4.1.2).
		{"hs", "sub a number", hsClaim("sub", 1001), `JWT refused: invalid claims: "sub" is a number, not a string`},
		{"hs", "sub a fraction", hsClaim("sub", 1001.5), `JWT refused: invalid claims: "sub" is a number, not a string`},
		{"hs", "sub a boolean", hsClaim("sub", true), `JWT refused: invalid claims: "sub" is a boolean, not a string`},
		{"hs", "sub an array", hsClaim("sub", []string{"u-1"}), `JWT refused: invalid claims: "sub" is an array, not a string`},
		{"hs", "sub an object", hsClaim("sub", map[string]any{"id": "u-1"}), `JWT refused: invalid claims: "sub" is an object, not a string`},
		{"hs", "sub null", rawToken(t, hs, hsHeader, `{"sub":null,"iss":"`+forgeIssuer+`","aud":"api","exp":`+exp+`}`), `JWT refused: invalid claims: "sub" is null, not a string`},
		{"hs", "sub empty", hsClaim("sub", ""), `JWT refused: no subject: "sub" is required`},
		{"hs", "sub missing", hsClaim("sub", nil), `JWT refused: no subject: "sub" is required`},
		{"hs", "sub too long", hsClaim("sub", strings.Repeat("u", 257)), `JWT refused: invalid claims: "sub" is longer than 256 bytes`},
		{"hs", "actor type a number", hsClaim("actor_type", 1), `JWT refused: invalid claims: "actor_type" is a number, not a string`},
		{"hs", "actor type a boolean", hsClaim("actor_type", true), `JWT refused: invalid claims: "actor_type" is a boolean, not a string`},
		{"hs", "actor type an array", hsClaim("actor_type", []string{"platform_admin"}), `JWT refused: invalid claims: "actor_type" is an array, not a string`},
		{"hs", "actor type an object", hsClaim("actor_type", map[string]any{"v": "platform_admin"}), `JWT refused: invalid claims: "actor_type" is an object, not a string`},
		{"hs", "actor type null", rawToken(t, hs, hsHeader, dupPayload(`"actor_type":null`)), `JWT refused: invalid claims: "actor_type" is null, not a string`},
		{"hs", "email a number", hsClaim("email", 7), `JWT refused: invalid claims: "email" is a number, not a string`},
		{"hs", "email an array", hsClaim("email", []string{"a@example.com"}), `JWT refused: invalid claims: "email" is an array, not a string`},
		{"hs", "email an object", hsClaim("email", map[string]any{}), `JWT refused: invalid claims: "email" is an object, not a string`},
		{"hs", "email null", rawToken(t, hs, hsHeader, dupPayload(`"email":null`)), `JWT refused: invalid claims: "email" is null, not a string`},
		{"hs", "email too long", hsClaim("email", strings.Repeat("e", 321)), `JWT refused: invalid claims: "email" is longer than 320 bytes`},
		{"hs", "tenant a number", hsClaim("tenant_id", 42), `JWT refused: invalid claims: "tenant_id" is a number, not a string`},
		{"hs", "tenant a boolean", hsClaim("tenant_id", true), `JWT refused: invalid claims: "tenant_id" is a boolean, not a string`},
		{"hs", "tenant an array", hsClaim("tenant_id", []string{"t-1", "t-2"}), `JWT refused: invalid claims: "tenant_id" is an array, not a string`},
		{"hs", "tenant null", rawToken(t, hs, hsHeader, `{"sub":"u-1","iss":"`+forgeIssuer+`","aud":"api","tenant_id":null,"exp":`+exp+`}`), `JWT refused: invalid claims: "tenant_id" is null, not a string`},
		{"hs", "tenant slug a number", hsClaim("tenant_slug", 5), `JWT refused: invalid claims: "tenant_slug" is a number, not a string`},
		{"hs", "tenant slug an object", hsClaim("tenant_slug", map[string]any{"s": "acme"}), `JWT refused: invalid claims: "tenant_slug" is an object, not a string`},

		// Actor types match exactly, after the aliases only.
		{"hs", "actor type Platform_Admin", hsClaim("actor_type", "Platform_Admin"), `JWT refused: unknown actor type: "Platform_Admin"`},
		{"hs", "actor type PLATFORM_ADMIN", hsClaim("actor_type", "PLATFORM_ADMIN"), `JWT refused: unknown actor type: "PLATFORM_ADMIN"`},
		{"hs", "actor type after a no-break space", hsClaim("actor_type", "\u00a0platform_admin"), `JWT refused: unknown actor type: "\u00a0platform_admin"`},
		{"hs", "actor type before a no-break space", hsClaim("actor_type", "platform_admin\u00a0"), `JWT refused: unknown actor type: "platform_admin\u00a0"`},
		{"hs", "actor type after a space", hsClaim("actor_type", " platform_admin"), `JWT refused: unknown actor type: " platform_admin"`},
		{"hs", "actor type before a newline", hsClaim("actor_type", "platform_admin\n"), `JWT refused: unknown actor type: "platform_admin\n"`},
		{"hs", "actor type with a zero-width space", hsClaim("actor_type", "platform_admin\u200b"), `JWT refused: unknown actor type: "platform_admin\u200b"`},
		{"hs", "actor type with a Unicode hyphen", hsClaim("actor_type", "platform\u2010admin"), `JWT refused: unknown actor type: "platform\u2010admin"`},
		{"hs", "actor type with a dotless i", hsClaim("actor_type", "platform_admın"), `JWT refused: unknown actor type: "platform_adm\u0131n"`},
		{"hs", "actor type with a Cyrillic a", hsClaim("actor_type", "plаtform_admin"), `JWT refused: unknown actor type: "pl\u0430tform_admin"`},
		{"hs", "actor type in fullwidth letters", hsClaim("actor_type", "ＰＬＡＴＦＯＲＭ_ADMIN"), `JWT refused: unknown actor type: "\uff30\uff2c\uff21\uff34\uff26\uff2f\uff32\uff2d_ADMIN"`},
		{"hs", "actor type Tenant_User", hsClaim("actor_type", "Tenant_User"), `JWT refused: unknown actor type: "Tenant_User"`},
		{"hs", "actor type empty", hsClaim("actor_type", ""), `JWT refused: unknown actor type: ""`},
		{"hs", "alias in another case", hsClaim("actor_type", "OPS"), `JWT refused: unknown actor type: "OPS"`},
		{"hs", "alias with a trailing space", hsClaim("actor_type", "ops "), `JWT refused: unknown actor type: "ops "`},
		{"hs", "actor type unknown", hsClaim("actor_type", "superuser"), `JWT refused: unknown actor type: "superuser"`},

		// Tenant ids follow core.ValidateTenantID.
		{"hs", "tenant ..", hsClaim("tenant_id", ".."), "JWT refused: invalid tenant: id: '.' at byte 0 (it must start and end with a letter or a digit)"},
		{"hs", "tenant a..b", hsClaim("tenant_id", "a..b"), `JWT refused: invalid tenant: id: ".." at byte 1`},
		{"hs", "tenant ../t-2", hsClaim("tenant_id", "../t-2"), "JWT refused: invalid tenant: id: '.' at byte 0 (it must start and end with a letter or a digit)"},
		{"hs", "tenant with a leading -", hsClaim("tenant_id", "-acme"), "JWT refused: invalid tenant: id: '-' at byte 0 (it must start and end with a letter or a digit)"},
		{"hs", "tenant with a leading @", hsClaim("tenant_id", "@acme"), "JWT refused: invalid tenant: id: '@' at byte 0 (it must start and end with a letter or a digit)"},
		{"hs", "tenant with a leading :", hsClaim("tenant_id", ":acme"), "JWT refused: invalid tenant: id: ':' at byte 0 (it must start and end with a letter or a digit)"},
		{"hs", "tenant with a trailing .", hsClaim("tenant_id", "acme."), "JWT refused: invalid tenant: id: '.' at byte 4 (it must start and end with a letter or a digit)"},
		{"hs", "tenant with a space", hsClaim("tenant_id", "acme corp"), "JWT refused: invalid tenant: id: ' ' at byte 4 (allowed: letters, digits, . _ - : @)"},
		{"hs", "tenant with a no-break space", hsClaim("tenant_id", "t\u00a01"), `JWT refused: invalid tenant: id: 'Â' at byte 1 (allowed: letters, digits, . _ - : @)`},
		{"hs", "tenant with a Cyrillic e", hsClaim("tenant_id", "tеnant"), `JWT refused: invalid tenant: id: 'Ð' at byte 1 (allowed: letters, digits, . _ - : @)`},
		{"hs", "tenant too long", hsClaim("tenant_id", strings.Repeat("t", 129)), "JWT refused: invalid tenant: id: 129 bytes long (at most 128)"},
		{"hs", "tenant slug with a leading -", hsClaim("tenant_slug", "-acme"), "JWT refused: invalid tenant: slug: '-' at byte 0 (it must start and end with a letter or a digit)"},

		// Time, issuer and audience.
		{"hs", "expired", hsClaim("exp", now.Add(-time.Hour).Unix()), "JWT refused: expired"},
		{"hs", "expired beyond the leeway", hsClaim("exp", now.Add(-time.Minute).Unix()), "JWT refused: expired"},
		{"hs", "nbf in the future", hsClaim("nbf", now.Add(10*time.Minute).Unix()), "JWT refused: not valid yet: nbf is in the future"},
		{"hs", "iat in the future", hsClaim("iat", now.Add(10*time.Minute).Unix()), "JWT refused: not valid yet: iat is in the future"},
		{"hs", "exp missing", hsClaim("exp", nil), "JWT refused: invalid claims: exp is required"},
		{"hs", "exp a string", hsClaim("exp", "tomorrow"), "JWT refused: invalid claims: a registered claim has the wrong type"},
		{"hs", "exp an array", hsClaim("exp", []int64{now.Add(time.Hour).Unix()}), "JWT refused: invalid claims: a registered claim has the wrong type"},
		{"hs", "nbf a string", hsClaim("nbf", "now"), "JWT refused: invalid claims: a registered claim has the wrong type"},
		{"hs", "wrong issuer", hsClaim("iss", "https://evil.test"), "JWT refused: wrong issuer"},
		{"hs", "issuer in another case", hsClaim("iss", "https://IDP.test"), "JWT refused: wrong issuer"},
		{"hs", "issuer missing", hsClaim("iss", nil), "JWT refused: invalid claims: iss is required"},
		{"hs", "issuer an array", hsClaim("iss", []string{forgeIssuer}), "JWT refused: invalid claims: a registered claim has the wrong type"},
		{"hs", "wrong audience", hsClaim("aud", "other"), "JWT refused: wrong audience"},
		{"hs", "audience in another case", hsClaim("aud", "API"), "JWT refused: wrong audience"},
		{"hs", "audience array without the audience", hsClaim("aud", []string{"other", "web"}), "JWT refused: wrong audience"},
		{"hs", "audience missing", hsClaim("aud", nil), "JWT refused: invalid claims: aud is required (a string or an array of strings)"},
		{"hs", "audience a number", hsClaim("aud", 1), "JWT refused: invalid claims: aud is required (a string or an array of strings)"},
		{"hs", "audience an array of numbers", hsClaim("aud", []int{1}), "JWT refused: invalid claims: a registered claim has the wrong type"},
		{"rs", "RS256 expired", tokenFor(t, rs, forgeClaims("exp", now.Add(-time.Hour).Unix())), "JWT refused: expired"},

		// JWKS: only signing keys of the token's algorithm and of sufficient size.
		{"jwks", "unknown kid", tokenFor(t, jw, forgeClaims(), "kid", "rsa-9"), `JWT refused: no verification key: kid "rsa-9" is not in the key set`},
		{"jwks", "kid of an encryption key", sign(t, jwt.SigningMethodRS256, rsaKey2(), forgeClaims("actor_type", "platform_admin"), "enc-1"), `JWT refused: no verification key: key "enc-1" is not a signing key (use "enc")`},
		{"jwks", "kid of a key without verify", sign(t, jwt.SigningMethodRS256, rsaKey2(), forgeClaims(), "ops-1"), `JWT refused: no verification key: key "ops-1" is not a verification key (key_ops lacks "verify")`},
		{"jwks", "kid of a weak key", sign(t, jwt.SigningMethodRS256, weakKey, forgeClaims(), "weak-1"), `JWT refused: no verification key: key "weak-1" is a 1024-bit RSA key (at least 2048 bits are required)`},
		{"jwks", "kid of a key for another alg", tokenFor(t, jw, forgeClaims(), "kid", "ps-only"), `JWT refused: no verification key: key "ps-only" is for PS256, not RS256`},
		{"jwks", "ES256 with a P-384 key's kid", withSig(jsonSeg(t, map[string]any{"alg": "ES256", "kid": "ec384"})+"."+jsonSeg(t, forgeClaims())+".", parts(sign(t, jwt.SigningMethodES384, ec384, forgeClaims(), ""))[2]), `JWT refused: no verification key: key "ec384" is for ECDSA P-384, not ES256`},
		{"jwks", "swapped kid: EdDSA with an RSA kid", sign(t, jwt.SigningMethodEdDSA, edKey(), forgeClaims(), "rsa-1"), `JWT refused: no verification key: key "rsa-1" is for RS256, not EdDSA`},
		{"jwks", "swapped kid: RS256 with the Ed25519 kid", tokenFor(t, jw, forgeClaims(), "kid", "ed-1"), `JWT refused: no verification key: key "ed-1" is for Ed25519, not RS256`},
		{"jwks", "kid a number", tokenFor(t, jw, forgeClaims(), "kid", 1), "JWT refused: malformed JWT: kid is not a string"},
		{"jwks", "no kid, signed by the encryption key", sign(t, jwt.SigningMethodRS256, rsaKey2(), forgeClaims("actor_type", "platform_admin"), ""), "JWT refused: signature is invalid"},
		{"jwks", "no kid, signed by the weak key", sign(t, jwt.SigningMethodRS256, weakKey, forgeClaims(), ""), "JWT refused: signature is invalid"},
		{"jwks", "no kid, PS384: the keys are for RS256 and PS256 only", sign(t, jwt.SigningMethodPS384, rsaKey(), forgeClaims(), ""), "JWT refused: no verification key: no kid, and no signing key in the key set for PS384"},
		{"jwks", "no kid, ES256 with no P-256 key", sign(t, jwt.SigningMethodES256, ecKey(), forgeClaims(), ""), "JWT refused: no verification key: no kid, and no signing key in the key set for ES256"},
		{"jwks", "embedded jwk header", sign(t, jwt.SigningMethodRS256, rsaKey2(), forgeClaims(), "") /* replaced below */, "JWT refused: signature is invalid"},
		{"jwks", "jku header with an unknown kid", tokenFor(t, jw, forgeClaims(), "kid", "attacker", "jku", "https://evil.test/jwks"),
			// the unknown kid above took the one fetch an unknown kid may trigger
			`JWT refused: no verification key: kid "attacker" is not in the key set, which cannot be fetched again yet`},
	}
	// The embedded-key case: the attacker's own public key in the header, signed with it.
	for i := range cases {
		if cases[i].name == "embedded jwk header" {
			attacker := forgeSetup{alg: "RS256", signRaw: methodSigner(jwt.SigningMethodRS256, rsaKey2())}
			cases[i].token = tokenFor(t, attacker, forgeClaims("actor_type", "platform_admin"), "jwk", jwkOf("", "RS256", &rsaKey2().PublicKey))
		}
	}

	refused := 0
	for _, c := range cases {
		if c.reason != "" {
			refused++
		}
	}
	if refused < 100 {
		t.Fatalf("the corpus has %d refused tokens, want at least 100", refused)
	}

	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			h := newHarness(t, s.opts(t), func(r *gin.Engine, _ *core.Writer) {
				r.GET("/probe", func(c *gin.Context) {
					ctx := c.Request.Context()
					a, ok := core.ActorFromContext(ctx)
					tn, hasTenant := core.TenantFromContext(ctx)
					auth := core.AuthenticationFromContext(ctx)
					c.String(http.StatusOK, "%v|%s|%v|%s|%s|%s", ok, a.ID, hasTenant, tn.ID, auth.Status, auth.Reason)
				})
			})
			type sent struct {
				c    forgeCase
				body string
			}
			var all []sent
			for i, c := range cases {
				if c.setup != s.name {
					continue
				}
				resp, body := h.do("GET", "/probe", nil, "Authorization", bearer(c.token), "X-Request-ID", fmt.Sprintf("case-%d", i))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: status %d", c.name, resp.StatusCode)
				}
				all = append(all, sent{c, body})
			}
			byID := map[string]row{}
			for _, r := range h.rows() {
				byID[r.RequestID] = r
			}
			for i, c := range cases {
				if c.setup != s.name {
					continue
				}
				var body string
				for _, x := range all {
					if x.c.name == c.name {
						body = x.body
					}
				}
				r, ok := byID[fmt.Sprintf("case-%d", i)]
				if !ok {
					t.Errorf("%s: no record", c.name)
					continue
				}
				if c.reason == "" {
					if r.ActorID != "u-1" || r.TenantID != "t-1" || r.Metadata["auth_error"] != nil ||
						body != "true|u-1|true|t-1|verified|" {
						t.Errorf("control %s: record %s/%s/%s tenant %q metadata %v, handler %q", c.name, r.ActorID, r.ActorType, r.ActorAuth, r.TenantID, r.Metadata, body)
					}
					continue
				}
				if r.ActorID != "" || r.ActorType != "anonymous" || r.ActorAuth != "none" || r.TenantID != "" || r.Severity != "warning" {
					t.Errorf("%s: became %q/%s/%s tenant %q severity %s", c.name, r.ActorID, r.ActorType, r.ActorAuth, r.TenantID, r.Severity)
				}
				if got := r.Metadata["auth_error"]; got != c.reason {
					t.Errorf("%s: stored reason\n\t%v\nwant\n\t%s", c.name, got, c.reason)
				}
				code := ""
				for _, rc := range refusalCodes {
					if strings.HasPrefix(c.reason, rc.prefix) {
						code = rc.code
					}
				}
				if r.Metadata["auth_failure"] != code {
					t.Errorf("%s: auth_failure %v, want %q", c.name, r.Metadata["auth_failure"], code)
				}
				if want := "false||false||refused|" + c.reason; body != want {
					t.Errorf("%s: the handler saw %q, want %q", c.name, body, want)
				}
			}
		})
	}

	// Keys that are never used are reported once each.
	logs := jwksLogs.all()
	for _, kid := range []string{"enc-1", "ops-1", "weak-1"} {
		if n := strings.Count(logs, "kid="+kid+" "); n != 1 {
			t.Errorf("kid %s reported %d times in the log:\n%s", kid, n, logs)
		}
	}
}

// with2 returns a copy of a JWK map with kv applied (nil deletes).
func with2(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// flipFirst changes the first character of a base64url segment to another valid one.
func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

// padded adds the standard padding to a raw base64url segment.
func padded(s string) string {
	if n := len(s) % 4; n != 0 {
		return s + strings.Repeat("=", 4-n)
	}
	return s + "===="
}
