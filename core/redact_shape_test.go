package core_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

// rdORMRecord is the after image of a typical ORM row: ids, names, an email, timestamps, money,
// a status, a free-text note and a small JSON settings document.
func rdORMRecord() map[string]any {
	return map[string]any{
		"id":            int64(1843),
		"uuid":          "0190c6a4-7f1e-7b3a-9d2c-4e5f6a7b8c9d",
		"tenant_id":     "acme-prod",
		"email":         "alice.example@example.com",
		"first_name":    "Alice",
		"last_name":     "Example",
		"status":        "active",
		"role":          "admin",
		"balance_cents": int64(129900),
		"currency":      "EUR",
		"created_at":    time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		"updated_at":    "2024-06-07T08:09:10.123456Z",
		"deleted_at":    nil,
		"login_count":   json.Number("17"),
		"phone":         "+44 20 7946 0958",
		"note":          "Called on 2024-05-06 about invoice INV-2024-000123; follow up next week.",
		"settings":      map[string]any{"theme": "dark", "locale": "en-GB", "notifications": true},
	}
}

func BenchmarkRedactValueORMRecord(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	m := rdORMRecord()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Value(m)
	}
}

// Secrets of every shape. The values are test values in the published formats, not real
// credentials.
const (
	rdJWT     = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	rdJWTNone = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	rdJWE     = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"
	rdAWSKey  = "AKIAIOSFODNN7EXAMPLE"
	rdGitHub  = "ghp_1A2b3C4d5E6f7G8h9I0j1K2l3M4n5O6p7Q8r"
	rdSlack   = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
	rdStripe  = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	rdGoogle  = "AIzaSyD-1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P"
	rdPEM     = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----"
	rdVisa    = "4111111111111111"
)

func TestRedactShapeValues(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	b64PEM := "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2UUlCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND"
	tests := []struct {
		name string
		in   any
		want string // JSON of Value(map{"data": in})
	}{
		{"JWT", rdJWT, `"[REDACTED]"`},
		{"JWT with padding white space", "  " + rdJWT + "\n", `"[REDACTED]"`},
		{"unsigned JWT", rdJWTNone, `"[REDACTED]"`},
		{"JWE", rdJWE, `"[REDACTED]"`},
		{"JWT in text", "sent " + rdJWT + ". ok", `"sent [REDACTED]. ok"`},
		{"PEM RSA", rdPEM, `"[REDACTED]"`},
		{"PEM PKCS8", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----", `"[REDACTED]"`},
		{"PEM EC", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----", `"[REDACTED]"`},
		{"PEM encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkq\n-----END ENCRYPTED PRIVATE KEY-----", `"[REDACTED]"`},
		{"PEM OpenSSH", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", `"[REDACTED]"`},
		{"PEM PGP", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: x\n\nlQOYBF0\n-----END PGP PRIVATE KEY BLOCK-----", `"[REDACTED]"`},
		{"PEM in text", "key:\n" + rdPEM + "\nend", `"key:\n[REDACTED]\nend"`},
		{"PEM cut", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEvQIBADANBgkq", `"[REDACTED]"`},
		{"PEM escaped in JSON text", `{"k":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"`,
			`"{\"k\":\"[REDACTED]\\n\""`},
		{"PEM base64", b64PEM, `"[REDACTED]"`},
		{"certificate kept", "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----",
			`"-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----"`},
		{"public key kept", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
			`"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----"`},
		{"AWS key id", rdAWSKey, `"[REDACTED]"`},
		{"AWS temporary key id", "ASIAY34FZKBOKMUTVV7A", `"[REDACTED]"`},
		{"GitHub token", rdGitHub, `"[REDACTED]"`},
		{"GitHub fine-grained token", "github_pat_11ABCDEFG0123456789abc_xyzXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO", `"[REDACTED]"`},
		{"Slack token", rdSlack, `"[REDACTED]"`},
		{"Stripe key", rdStripe, `"[REDACTED]"`},
		{"Stripe restricted key", "rk_test_51H8abcDEF0123456789", `"[REDACTED]"`},
		{"Google API key", rdGoogle, `"[REDACTED]"`},
		{"key in text", "use " + rdAWSKey + " and " + rdGitHub + "!", `"use [REDACTED] and [REDACTED]!"`},
		{"key after a label", "key=" + rdStripe, `"key=[REDACTED]"`},
		{"Visa", rdVisa, `"[REDACTED]"`},
		{"Visa grouped", "4111 1111 1111 1111", `"[REDACTED]"`},
		{"Mastercard dashes", "5555-5555-5555-4444", `"[REDACTED]"`},
		{"Mastercard 2-series", "2223003122003222", `"[REDACTED]"`},
		{"Amex", "3782 822463 10005", `"[REDACTED]"`},
		{"Discover", "6011111111111117", `"[REDACTED]"`},
		{"JCB", "3530111333300000", `"[REDACTED]"`},
		{"Diners", "30569309025904", `"[REDACTED]"`},
		{"UnionPay", "6200000000000005", `"[REDACTED]"`},
		{"Visa 13", "4222222222222", `"[REDACTED]"`},
		{"card in text", "paid with 4111 1111 1111 1111, thanks", `"paid with [REDACTED], thanks"`},
		{"card followed by a year", "4111 1111 1111 1111 2027", `"[REDACTED] 2027"`},
		{"card as a JSON number", json.Number("4111111111111111"), `"[REDACTED]"`},
		{"card as an integer", int64(5555555555554444), `"[REDACTED]"`},
		{"bearer", "Bearer abc.def", `"Bearer [REDACTED]"`},
		{"basic", "Basic dXNlcjpwYXNz", `"Basic [REDACTED]"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rdJSON(t, r.Value(map[string]any{"data": tt.in}))
			if want := `{"data":` + tt.want + `}`; got != want {
				t.Errorf("Value:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestRedactShapeKeepsOrdinaryData checks the guards of the shape rules: ids, timestamps, phone
// numbers, hashes and words that look a little like secrets are kept.
func TestRedactShapeKeepsOrdinaryData(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	for _, s := range []any{
		"4111111111111112",                     // fails the Luhn check
		"1700000000000",                        // a time in milliseconds
		"1234567890123456",                     // Luhn-valid? no issuer starts with 1
		"9780306406157",                        // ISBN-13
		"978-3-16-148410-0",                    // ISBN-13 with dashes
		"+44 20 7946 0958",                     // phone
		"+1 415-555-0100",                      // phone
		"550e8400-e29b-41d4-a716-446655440000", // UUID
		"0190c6a4-7f1e-7b3a-9d2c-411111111111", // UUID ending in digits
		"41111111111111111111111",              // too many digits
		"order 4111111111111111-A",             // glued to a suffix
		"v4111111111111111",                    // glued to a letter
		"4111111111111111.25",                  // a decimal
		"2024-01-02T03:04:05.123456789Z",
		"da39a3ee5e6b4b0d3255bfef95601890afd80709", // SHA-1
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"eyeglasses.and.sunglasses.for.sale",
		"eyJub3QiOiJhIGp3dCJ9.eyJ4IjoxfQ.c2ln", // header without alg
		"AKIA is a prefix, not a key",
		"ghp_short",
		"sk_live_short",
		"The quick brown fox jumps over the lazy dog 1234567 times",
		json.Number("1234567890123456"),
		int64(1700000000000),
		int64(4111111111111112),
	} {
		got := rdJSON(t, r.Value(map[string]any{"data": s}))
		if want := rdJSON(t, map[string]any{"data": s}); got != want {
			t.Errorf("Value(%#v) = %s, want it kept", s, got)
		}
	}
}

func TestRedactSecretKeys(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	t.Run("map keys", func(t *testing.T) {
		in := map[string]any{
			"user":                     "bob",
			`{"password":"hunter2"}`:   "",
			"password=hunter2":         nil,
			rdJWT:                      "x",
			"note " + rdAWSKey:         map[string]any{"a": 1},
			"[REDACTED KEY 1]":         "taken",
			"Card 4111 1111 1111 1111": 12,
		}
		got := rdJSON(t, r.Value(in))
		want := `{"[REDACTED KEY 1]":"taken","[REDACTED KEY 2]":"[REDACTED]","[REDACTED KEY 3]":"[REDACTED]",` +
			`"[REDACTED KEY 4]":"[REDACTED]","[REDACTED KEY 5]":null,"[REDACTED KEY 6]":"[REDACTED]","user":"bob"}`
		if got != want {
			t.Errorf("Value:\n got %s\nwant %s", got, want)
		}
		// The placeholders do not depend on the order in which the map is walked.
		for range 20 {
			if again := rdJSON(t, r.Value(in)); again != got {
				t.Fatalf("placeholders changed: %s, then %s", got, again)
			}
		}
	})
	t.Run("query and form keys", func(t *testing.T) {
		got := r.Values(map[string][]string{
			rdJWT:                          {""},
			"AbCdEfGh1234IjKlMnOp5678QrSt": nil, // a bare random token
			"page":                         {"2"},
			"password=hunter2":             {"x"},
			"thisIsALongParameterName":     {""}, // camelCase, not a token
		})
		want := map[string][]string{
			"[REDACTED KEY 1]":         {},
			"[REDACTED KEY 2]":         {core.Redacted},
			"[REDACTED KEY 3]":         {core.Redacted},
			"page":                     {"2"},
			"thisIsALongParameterName": {""},
		}
		if rdJSON(t, got) != rdJSON(t, want) {
			t.Errorf("Values:\n got %s\nwant %s", rdJSON(t, got), rdJSON(t, want))
		}
	})
	t.Run("header names", func(t *testing.T) {
		got := r.Header(http.Header{"X-" + rdGitHub: {"1"}, "Accept": {"*/*"}})
		if rdJSON(t, got) != `{"Accept":["*/*"],"[REDACTED KEY 1]":["[REDACTED]"]}` {
			t.Errorf("Header = %s", rdJSON(t, got))
		}
	})
	t.Run("diff keys", func(t *testing.T) {
		got := r.Diff(map[string]core.Change{rdStripe: {From: "a", To: "b"}, "name": {From: "a", To: "b"}})
		if rdJSON(t, got) != `{"[REDACTED KEY 1]":{"from":"[REDACTED]","to":"[REDACTED]"},"name":{"from":"a","to":"b"}}` {
			t.Errorf("Diff = %s", rdJSON(t, got))
		}
	})
	t.Run("string map keys", func(t *testing.T) {
		got := r.Value(map[string]string{"sk " + rdStripe: "v", "a": "b"})
		if rdJSON(t, got) != `{"[REDACTED KEY 1]":"[REDACTED]","a":"b"}` {
			t.Errorf("Value = %s", rdJSON(t, got))
		}
	})
	t.Run("URL query", func(t *testing.T) {
		for in, want := range map[string]string{
			"https://example.com/cb?" + rdJWT:                     "https://example.com/cb?[REDACTED]",
			"https://example.com/cb?a=1&" + rdJWT + "=":           "https://example.com/cb?a=1&[REDACTED]=[REDACTED]",
			"https://example.com/cb?AbCdEfGh1234IjKlMnOp5678QrSt": "https://example.com/cb?[REDACTED]",
			"https://example.com/cb?thisIsALongParameterName&a=b": "https://example.com/cb?thisIsALongParameterName&a=b",
		} {
			if got := r.Value(in); got != want {
				t.Errorf("Value(%q) = %q, want %q", in, got, want)
			}
		}
	})
}

func TestRedactNameValueStructures(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"env entry", map[string]any{"name": "DB_PASSWORD", "value": "hunter2"}, `{"name":"DB_PASSWORD","value":"[REDACTED]"}`},
		{"Kubernetes env", []any{
			map[string]any{"name": "API_TOKEN", "value": "t0k"},
			map[string]any{"name": "LOG_LEVEL", "value": "debug"},
			map[string]any{"name": "DB_PASS", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "db", "key": "password"}}},
		}, `[{"name":"API_TOKEN","value":"[REDACTED]"},{"name":"LOG_LEVEL","value":"debug"},` +
			`{"name":"DB_PASS","valueFrom":{"secretKeyRef":{"key":"password","name":"db"}}}]`},
		{"AWS Parameter Store", map[string]any{"Name": "/prod/db/password", "Type": "SecureString", "Value": "s3cr3t", "Version": 3},
			`{"Name":"/prod/db/password","Type":"SecureString","Value":"[REDACTED]","Version":3}`},
		{"HAR headers", []any{map[string]any{"name": "Authorization", "value": "Basic dXNlcjpwYXNz"}, map[string]any{"name": "Accept", "value": "*/*"}},
			`[{"name":"Authorization","value":"[REDACTED]"},{"name":"Accept","value":"*/*"}]`},
		{"AWS tag", map[string]any{"Key": "api-key", "Value": "k"}, `{"Key":"api-key","Value":"[REDACTED]"}`},
		{"CloudFormation parameter", map[string]any{"ParameterKey": "DBPassword", "ParameterValue": "p"}, `{"ParameterKey":"DBPassword","ParameterValue":"[REDACTED]"}`},
		{"Keycloak credential", map[string]any{"type": "password", "value": "p", "temporary": false}, `{"temporary":false,"type":"password","value":"[REDACTED]"}`},
		{"Kubernetes secret", map[string]any{"kind": "Secret", "data": map[string]any{"username": "YWRtaW4="}},
			`{"data":"[REDACTED]","kind":"Secret"}`},
		{"config data kept", map[string]any{"kind": "ConfigMap", "data": map[string]any{"username": "admin"}},
			`{"data":{"username":"admin"},"kind":"ConfigMap"}`},
		{"a human label is not a key", map[string]any{"name": "Reset password", "content": "Click the link"},
			`{"content":"Click the link","name":"Reset password"}`},
		{"neutral name", map[string]any{"name": "token_count", "value": 3}, `{"name":"token_count","value":3}`},
		{"string map", map[string]string{"Name": "X-Api-Key", "Value": "k"}, `{"Name":"X-Api-Key","Value":"[REDACTED]"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rdJSON(t, r.Value(tt.in)); got != tt.want {
				t.Errorf("Value:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestRedactRecordPathAndUserAgent(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	tests := []struct {
		name, route, path, want string
	}{
		{"Gin sensitive parameter", "/reset/:token", "/reset/abc123", "/reset/[REDACTED]"},
		{"net/http sensitive parameter", "POST /users/{id}/api-keys/{apiKey}", "/users/42/api-keys/k-1", "/users/42/api-keys/[REDACTED]"},
		{"catch-all sensitive parameter", "/files/*secret", "/files/a/b/c", "/files/[REDACTED]"},
		{"net/http catch-all", "/v/{token...}", "/v/a/b", "/v/[REDACTED]"},
		{"neutral parameters kept", "/users/:id/orders/:order", "/users/42/orders/A-17", "/users/42/orders/A-17"},
		{"JWT in a neutral parameter", "/verify/:code", "/verify/" + rdJWT, "/verify/[REDACTED]"},
		{"token-like segment without a route", "", "/confirm/Xk9fQ2mZ7pL4sV1nB8cR3tY6wA5", "/confirm/[REDACTED]"},
		{"key prefix", "", "/hooks/" + rdSlack, "/hooks/[REDACTED]"},
		{"literal segment of the route kept", "/static/Xk9fQ2mZ7pL4sV1nB8cR3tY6wA5/:id", "/static/Xk9fQ2mZ7pL4sV1nB8cR3tY6wA5/42", "/static/Xk9fQ2mZ7pL4sV1nB8cR3tY6wA5/42"},
		{"a route without parameters is no template", "/static/Xk9fQ2mZ7pL4sV1nB8cR3tY6wA5", "/static/Xk9fQ2mZ7pL4sV1nB8cR3tY6wA5", "/static/[REDACTED]"},
		{"UUID kept", "", "/orders/550e8400-e29b-41d4-a716-446655440000", "/orders/550e8400-e29b-41d4-a716-446655440000"},
		{"hex digest kept", "", "/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"slug kept", "", "/blog/Getting-Started-With-Go-In-2024", "/blog/Getting-Started-With-Go-In-2024"},
		{"camelCase kept", "", "/api/getUserProfileById2024", "/api/getUserProfileById2024"},
		{"ULID kept", "", "/e/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/e/01ARZ3NDEKTSV4RRFFQ69G5FAV"},
		{"typed id kept", "", "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa", "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa"},
		{"percent-encoded token", "", "/t/" + url.PathEscape(rdJWT+"/x"), "/t/[REDACTED]"},
		{"query inside the path", "", "/cb?code=1&access_token=abc", "/cb?code=1&access_token=[REDACTED]"},
		{"route that does not fit", "/a/:token", "/a/b/c", "/a/b/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Record(&core.Record{Kind: core.KindHTTP, Route: tt.route, Path: tt.path})
			if got.Path != tt.want {
				t.Errorf("Path = %q, want %q", got.Path, tt.want)
			}
			if got.Route != tt.route {
				t.Errorf("Route = %q, want it untouched", got.Route)
			}
		})
	}
	for ua, want := range map[string]string{
		"curl/8.5.0":                       "curl/8.5.0",
		"Mozilla/5.0 (X11; Linux x86_64)":  "Mozilla/5.0 (X11; Linux x86_64)",
		"bot/1.0 token=abc":                "bot/1.0 token=[REDACTED]",
		"client/2 (" + rdJWT + ")":         "client/2 ([REDACTED])",
		"agent\x00 Bearer abcdefghijklmno": "agent Bearer [REDACTED]",
	} {
		if got := r.Record(&core.Record{UserAgent: ua}).UserAgent; got != want {
			t.Errorf("UserAgent(%q) = %q, want %q", ua, got, want)
		}
	}
}

// rdShapeSecret is a generated secret: the text to plant and the parts of it that must not
// reach the output.
type rdShapeSecret struct {
	shape, text string
	cores       []string
	pathSafe    bool // may stand as a URL path segment
}

// rdShapeGen returns generators of fresh secrets of every shape Value recognises.
func rdShapeGen() map[string]func(rng *rand.Rand) rdShapeSecret {
	const (
		b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		b64    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		alnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		upnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
		hex    = "0123456789abcdef"
		digits = "0123456789"
	)
	rnd := func(rng *rand.Rand, set string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = set[rng.IntN(len(set))]
		}
		return string(b)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	gens := map[string]func(rng *rand.Rand) rdShapeSecret{
		"jwt": func(rng *rand.Rand) rdShapeSecret {
			hdrs := []string{`{"alg":"HS256","typ":"JWT"}`, `{"alg":"RS256","kid":"` + rnd(rng, alnum, 8) + `"}`, `{ "typ": "JWT", "alg": "ES256" }`, `{"alg":"none"}`}
			tok := enc(hdrs[rng.IntN(len(hdrs))]) + "." + enc(`{"sub":"`+rnd(rng, alnum, 10)+`","n":`+rnd(rng, digits, 5)+`}`) + "." + rnd(rng, b64url, 43)
			return rdShapeSecret{"jwt", tok, []string{tok[strings.IndexByte(tok, '.'):]}, true}
		},
		"pem": func(rng *rand.Rand) rdShapeSecret {
			labels := []string{"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY", "PGP PRIVATE KEY BLOCK"}
			l := labels[rng.IntN(len(labels))]
			body := []string{rnd(rng, b64, 64), rnd(rng, b64, 64), rnd(rng, b64, 20) + "=="}
			pem := "-----BEGIN " + l + "-----\n" + strings.Join(body, "\n") + "\n-----END " + l + "-----"
			if rng.IntN(4) == 0 { // cut short, as in a truncated body
				pem = pem[:len(pem)/2]
			}
			return rdShapeSecret{"pem", pem, body[:1], false}
		},
		"pem-base64": func(rng *rand.Rand) rdShapeSecret {
			body := rnd(rng, b64, 64)
			s := base64.StdEncoding.EncodeToString([]byte("-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\n"))
			return rdShapeSecret{"pem-base64", s, []string{s[20:60]}, false}
		},
		"card": func(rng *rand.Rand) rdShapeSecret {
			iins := []struct {
				prefix string
				n      int
			}{{"4", 16}, {"4", 13}, {"4", 19}, {"51", 16}, {"55", 16}, {"2221", 16}, {"2720", 16}, {"34", 15}, {"37", 15},
				{"6011", 16}, {"65", 19}, {"62", 17}, {"3528", 16}, {"3589", 19}, {"36", 14}, {"300", 14}, {"6304", 18}, {"2200", 16}}
			c := iins[rng.IntN(len(iins))]
			d := []byte(c.prefix + rnd(rng, digits, c.n-len(c.prefix)-1) + "0")
			for k := byte(0); k < 10; k++ {
				d[len(d)-1] = '0' + k
				if rdLuhn(d) {
					break
				}
			}
			plain := string(d)
			text := plain
			switch rng.IntN(3) {
			case 1:
				text = rdGroup(plain, " ")
			case 2:
				text = rdGroup(plain, "-")
			}
			return rdShapeSecret{"card", text, []string{plain, text}, text == plain}
		},
		"bearer": func(rng *rand.Rand) rdShapeSecret {
			tok := rnd(rng, b64url, 32)
			return rdShapeSecret{"bearer", "Bearer " + tok, []string{tok}, false}
		},
		"pair": func(rng *rand.Rand) rdShapeSecret {
			keys := []string{"password", "api_key", "client_secret", "token", "pwd", "session_id", "card[number]"}
			v := rnd(rng, alnum, 16)
			return rdShapeSecret{"pair", keys[rng.IntN(len(keys))] + "=" + v, []string{v}, false}
		},
	}
	prefixes := []struct{ prefix, set string }{
		{"AKIA", upnum}, {"ASIA", upnum}, {"ghp_", alnum}, {"gho_", alnum}, {"ghs_", alnum}, {"github_pat_", alnum},
		{"glpat-", alnum}, {"xoxb-", alnum}, {"xoxp-", alnum}, {"sk_live_", alnum}, {"rk_live_", alnum}, {"sk_test_", alnum},
		{"whsec_", alnum}, {"AIza", b64url}, {"ya29.", b64url}, {"GOCSPX-", alnum}, {"sk-", alnum}, {"npm_", alnum},
		{"hf_", alnum}, {"shpat_", hex}, {"dop_v1_", hex}, {"hvs.", alnum},
	}
	for _, p := range prefixes {
		n := 36
		switch p.prefix {
		case "AKIA", "ASIA":
			n = 16
		case "dop_v1_":
			n = 64
		case "AIza":
			n = 35
		}
		gens["key "+p.prefix] = func(rng *rand.Rand) rdShapeSecret {
			s := p.prefix + rnd(rng, p.set, n)
			return rdShapeSecret{"key", s, []string{s[len(p.prefix):]}, true}
		}
	}
	return gens
}

func rdLuhn(d []byte) bool {
	sum := 0
	for k := range d {
		v := int(d[len(d)-1-k] - '0')
		if k%2 == 1 {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

func rdGroup(s, sep string) string {
	var parts []string
	for len(s) > 4 {
		parts = append(parts, s[:4])
		s = s[4:]
	}
	return strings.Join(append(parts, s), sep)
}

// TestRedactShapeProperty plants generated secrets of every shape as a value under a neutral
// key, as a key, inside free text, as a query value and a bare query key, as a header value,
// inside a URL, in a record's path and user agent, and asserts that no output of Value, Values,
// Header, Diff, Text or Record contains them.
func TestRedactShapeProperty(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	gens := rdShapeGen()
	names := make([]string, 0, len(gens))
	for name := range gens {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for range 60 {
			s := gens[name](rng)
			outs := map[string]any{
				"value":        r.Value(map[string]any{"data": s.text}),
				"list":         r.Value([]any{"x", s.text}),
				"raw JSON":     r.Value(json.RawMessage(rdJSON(t, map[string]any{"data": s.text}))),
				"key":          r.Value(map[string]any{s.text: "v"}),
				"text value":   r.Value(map[string]any{"note": "see " + s.text + " then"}),
				"values":       r.Values(map[string][]string{"q": {s.text}}),
				"bare key":     r.Values(map[string][]string{s.text: {""}}),
				"header":       r.Header(http.Header{"X-Note": {s.text}}),
				"diff key":     r.Diff(map[string]core.Change{s.text: {From: "a", To: "b"}}),
				"diff value":   r.Diff(map[string]core.Change{"note": {From: s.text, To: nil}}),
				"text":         r.Text("line: " + s.text + "\nnext"),
				"user agent":   r.Record(&core.Record{UserAgent: "client/1 " + s.text}).UserAgent,
				"name/value":   r.Value(map[string]any{"name": "note", "value": s.text}),
				"string map":   r.Value(map[string]string{"a": s.text}),
				"metadata":     r.Record(&core.Record{Metadata: map[string]any{"m": s.text}}).Metadata,
				"sensitive ":   r.Record(&core.Record{Route: "/reset/:token", Path: "/reset/" + url.PathEscape(s.text)}).Path,
				"query in URL": r.Value("https://example.com/cb?x=" + url.QueryEscape(s.text)),
			}
			if s.pathSafe {
				outs["path"] = r.Record(&core.Record{Path: "/a/" + s.text + "/b"}).Path
				outs["path with route"] = r.Record(&core.Record{Route: "/a/:id/b", Path: "/a/" + s.text + "/b"}).Path
				outs["URL path"] = r.Value("https://example.com/p/" + s.text + "?x=1")
				outs["query string"] = r.Value("https://example.com/p?" + s.text)
			}
			for place, out := range outs {
				var b strings.Builder
				enc := json.NewEncoder(&b)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(out); err != nil {
					t.Fatal(err)
				}
				for _, c := range s.cores {
					if strings.Contains(b.String(), c) || strings.Contains(b.String(), url.QueryEscape(c)) {
						t.Errorf("%s as %s: %q survived in %s", name, place, c, b.String())
					}
				}
			}
		}
	}
}

func ExampleRedactor_Value() {
	r := core.NewRedactor(nil, nil)
	v := r.Value(map[string]any{
		"token_count":   3,      // a property of tokens, not a token
		"business_name": "Acme", // no word of it is a pattern
		"data": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + // a JWT under a neutral key
			"eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"note": "card 4111 1111 1111 1111, thanks",
		"ghp_1A2b3C4d5E6f7G8h9I0j1K2l3M4n5O6p7Q8r": "a key that is a token",
		"env": []any{map[string]any{"name": "DB_PASSWORD", "value": "hunter2"}},
	})
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {
	//   "[REDACTED KEY 1]": "[REDACTED]",
	//   "business_name": "Acme",
	//   "data": "[REDACTED]",
	//   "env": [
	//     {
	//       "name": "DB_PASSWORD",
	//       "value": "[REDACTED]"
	//     }
	//   ],
	//   "note": "card [REDACTED], thanks",
	//   "token_count": 3
	// }
}

func ExampleRedactor_Record() {
	r := core.NewRedactor(nil, nil)
	rec := r.Record(&core.Record{
		Kind:      core.KindHTTP,
		Route:     "/reset/:token",
		Path:      "/reset/0a1b2c3d4e5f",
		UserAgent: "deploy-bot/1.2 token=s3cr3t",
	})
	fmt.Println(rec.Route)
	fmt.Println(rec.Path)
	fmt.Println(rec.UserAgent)
	// Output:
	// /reset/:token
	// /reset/[REDACTED]
	// deploy-bot/1.2 token=[REDACTED]
}

// TestRedactNameValuePairsInQueryAndForm checks that query parameters and form fields that form a
// name/value pair are judged by the name they carry, like the same pair in JSON.
func TestRedactNameValuePairsInQueryAndForm(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	got := r.Values(map[string][]string{"name": {"DB_PASSWORD"}, "value": {"hunter2"}})
	if got["value"][0] != core.Redacted || got["name"][0] != "DB_PASSWORD" {
		t.Errorf("Values = %v, want the value hidden and the name kept", got)
	}
	kept := r.Values(map[string][]string{"name": {"LOG_LEVEL"}, "value": {"debug"}})
	if kept["value"][0] != "debug" {
		t.Errorf("Values = %v, want a neutral pair kept", kept)
	}
	body := r.Body(&core.Body{ContentType: "application/x-www-form-urlencoded", Data: []byte("name=DB_PASSWORD&value=hunter2")})
	if strings.Contains(string(body), "hunter2") {
		t.Errorf("form body stored as %s", body)
	}
}
