package core_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// TestRedactSensitiveWords pins the word rules of Sensitive with the default patterns: how keys
// are split, which runs of words match, and which qualifiers make a key name a property of a
// secret rather than the secret.
func TestRedactSensitiveWords(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	tests := []struct {
		key  string
		want bool
		why  string
	}{
		// Whole words, in every spelling.
		{"ssn", true, "the word itself"},
		{"SSN", true, "upper case"},
		{"user_ssn", true, "snake_case"},
		{"userSSN", true, "camelCase ending in an acronym"},
		{"ssnLast4", true, "digits separate words"},
		{"user-ssn", true, "kebab-case"},
		{"user.ssn", true, "dotted"},
		{"card[number]", true, "bracketed"},
		{"card[cvc]", true, "bracketed"},
		{"business_name", false, "ssn is not a word of it"},
		{"classname", false, "ssn inside a word"},
		{"className", false, "ssn across a camelCase boundary"},
		{"lessons", false, "ssn inside a word"},
		{"password_hash", true, "a hash of a password is secret"},
		{"newPassword", true, "camelCase"},
		{"x-api-key", true, "two-word pattern"},
		{"X-API-Key", true, "two-word pattern, acronym"},
		{"APIKey", true, "acronym followed by a word"},
		{"apikey", true, "two-word pattern glued"},
		{"APIKEY", true, "two-word pattern glued, upper case"},
		{"api_key", true, "two-word pattern"},
		{"accessToken", true, "camelCase"},
		{"client-secret", true, "kebab-case"},
		{"privateKey", true, "two-word pattern"},
		{"private_key", true, "two-word pattern"},
		{"Authorization", true, "header"},
		{"Proxy-Authorization", true, "header"},
		{"Cookie", true, "header"},
		{"Set-Cookie", true, "header"},
		{"credit_card", true, "two-word pattern"},
		{"creditCardNumber", true, "two patterns"},
		// Common spellings.
		{"pwd", true, "password"},
		{"pass", true, "password"},
		{"passphrase", true, "password"},
		{"passcode", true, "password"},
		{"otp", true, "one-time password"},
		{"totp_code", true, "one-time password"},
		{"mfa_code", true, "one-time password"},
		{"credentials", true, "plural"},
		{"creds", true, "credentials"},
		{"session", true, "session"},
		{"sessionid", true, "session id glued"},
		{"session_id", true, "the pattern holds the qualifier id"},
		{"JSESSIONID", true, "glued tail"},
		{"PHPSESSID", true, "glued tail"},
		{"connect.sid", true, "express session cookie"},
		{"ASP.NET_SessionId", true, "session id"},
		{"signature", true, "signature"},
		{"X-Amz-Signature", true, "signature"},
		{"sig", true, "Azure SAS signature"},
		{"aws_secret_access_key", true, "secret"},
		{"aws_access_key_id", true, "access key id is half of a credential pair"},
		{"accesskey", true, "glued"},
		{"x-amz-security-token", true, "token"},
		{"cvv2", true, "cvv and a digit"},
		{"cvc", true, "card code"},
		{"pin", true, "pin"},
		{"iban", true, "iban"},
		{"refresh_token", true, "token"},
		{"id_token", true, "id before the secret is not a qualifier"},
		{"bearer", true, "bearer"},
		{"rolpassword", true, "glued tail"},
		{"csrfmiddlewaretoken", true, "glued tail"},
		{"X-Registry-Auth", true, "auth as the last word"},
		{"basic_auth", true, "auth as the last word"},
		{"tokens", true, "plural"},
		{"Ocp-Apim-Subscription-Key", true, "subscription key"},
		{"client_assertion", true, "assertion"},
		{"code_verifier", true, "PKCE verifier"},
		// Properties of secrets: qualifiers after the last sensitive word.
		{"token_count", false, "a count"},
		{"password_changed_at", false, "a time"},
		{"passwordChangedAt", false, "a time, camelCase"},
		{"token_expires_at", false, "a time"},
		{"token_expires_in", false, "a duration"},
		{"password_length", false, "a length"},
		{"min_password_length", false, "a length"},
		{"password_policy", false, "a policy"},
		{"password_required", false, "a flag"},
		{"otp_required_for_login", false, "a flag"},
		{"mfa_enabled", false, "no pattern"},
		{"token_type", false, "a type"},
		{"token_type_hint", false, "a type"},
		{"token_id", false, "an id of a token"},
		{"api_key_id", false, "an id of a key"},
		{"secret_name", false, "a name"},
		{"secretKeyRef", false, "a reference"},
		{"cookie_domain", false, "an attribute"},
		{"cvc_check", false, "a check result"},
		{"signature_algorithm", false, "an algorithm"},
		{"token_endpoint", false, "a URL"},
		{"session_expires_at", false, "a time"},
		{"auth_type", false, "auth not the last word"},
		{"authorName", false, "not the word auth"},
		// Counts and flags before the first sensitive word.
		{"max_tokens", false, "a limit"},
		{"total_tokens", false, "a count"},
		{"has_password", false, "a flag"},
		{"is_password_set", false, "a flag"},
		// Words that only contain a pattern.
		{"secretary", false, "head of a glued word"},
		{"tokenizer", false, "head of a glued word"},
		{"passwordless", false, "head of a glued word"},
		{"bypass", false, "pass is too short to be a glued tail"},
		{"compass", false, "pass is too short to be a glued tail"},
		{"passenger", false, "a word of its own"},
		{"pinned", false, "a word of its own"},
		{"sass", false, "too short for a plural"},
		{"spin", false, "a word of its own"},
		{"signed_headers", false, "not the word signature"},
		{"email", false, "no pattern"},
		{"", false, "empty"},
		{"__", false, "no word"},
	}
	for _, tt := range tests {
		if got := r.Sensitive(tt.key); got != tt.want {
			t.Errorf("Sensitive(%q) = %v, want %v (%s)", tt.key, got, tt.want, tt.why)
		}
	}
}

// TestRedactUserPatternsAreWords checks that patterns given to NewRedactor are split into words
// like keys, and that the allow list still exempts keys.
func TestRedactUserPatternsAreWords(t *testing.T) {
	tests := []struct {
		fields, allow []string
		key           string
		want          bool
	}{
		{[]string{"Pin-Code"}, nil, "pin_code", true},
		{[]string{"Pin-Code"}, nil, "PinCode", true},
		{[]string{"pincode"}, nil, "pin_code", true},
		{[]string{"pin code"}, nil, "pincode", true},
		{[]string{"tax id"}, nil, "customer_tax_id", true},
		{[]string{"tax id"}, nil, "taxidermy", false},
		{[]string{"dob"}, nil, "user_dob", true},
		{[]string{"dob"}, nil, "adobe", false},
		{[]string{"x509"}, nil, "x509_cert", true},
		{[]string{"x509"}, nil, "x_cert", false},
		{[]string{"$$"}, nil, "dollar", false},
		{nil, []string{"session_data"}, "session_data", false},
		{nil, []string{"session_data"}, "SessionData", false},
		{nil, []string{"session_data"}, "session_data_2", true},
		{nil, []string{"card_number"}, "card_number", false},
	}
	for _, tt := range tests {
		r := core.NewRedactor(tt.fields, tt.allow)
		if got := r.Sensitive(tt.key); got != tt.want {
			t.Errorf("NewRedactor(%q, %q).Sensitive(%q) = %v, want %v", tt.fields, tt.allow, tt.key, got, tt.want)
		}
	}
}

// TestRedactFieldNames runs Sensitive with the default patterns over testdata/fieldnames.tsv, a
// table of real column, field, parameter and header names from public schemas and APIs with the
// expected outcome and the source of each group. No name expected to be redacted may be kept
// (a leak), and every name expected to be kept but redacted (a false positive) must say why in
// the reason column; a reason on a name that is not redacted is stale.
func TestRedactFieldNames(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "fieldnames.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	r := core.NewRedactor(nil, nil)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if lines[0] != "name\texpected\tsource\treason" {
		t.Fatalf("header = %q", lines[0])
	}
	sources := map[string]bool{}
	seen := map[string]bool{}
	var leaks, falsePositives int
	for i, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] == "" || f[2] == "" || (f[1] != "redact" && f[1] != "keep") {
			t.Fatalf("line %d: malformed row %q", i+2, line)
		}
		name, expected, source, reason := f[0], f[1], f[2], f[3]
		if seen[name] {
			t.Errorf("line %d: %q is listed twice", i+2, name)
		}
		seen[name] = true
		sources[source] = true
		got := r.Sensitive(name)
		switch {
		case expected == "redact" && !got:
			leaks++
			t.Errorf("leak: %q (%s) is not redacted", name, source)
		case expected == "keep" && got && reason == "":
			t.Errorf("false positive: %q (%s) is redacted and the table gives no reason", name, source)
		case expected == "keep" && got:
			falsePositives++
		case reason != "":
			t.Errorf("stale reason: %q is not redacted, but the table justifies a false positive", name)
		}
	}
	if n := len(lines) - 1; n < 300 || len(sources) < 10 {
		t.Errorf("the table has %d names from %d sources, want at least 300 from 10", n, len(sources))
	}
	t.Logf("%d names from %d sources: %d leaks, %d justified false positives", len(lines)-1, len(sources), leaks, falsePositives)
}

// TestRedactSensitiveRemembers checks that the verdicts Sensitive remembers are those it would
// give, for more keys than it remembers, long keys and concurrent callers.
func TestRedactSensitiveRemembers(t *testing.T) {
	r := core.NewRedactor([]string{"pin"}, []string{"pin_hint"})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				for i := range 3000 {
					for _, c := range []struct {
						key  string
						want bool
					}{
						{fmt.Sprintf("password_%d", i), true},
						{fmt.Sprintf("field_%d", i), false},
						{"pin_hint", false},
						{"pin", true},
						{strings.Repeat("x", 100) + "_token", true},
						{strings.Repeat("x", 100) + "_token_count", false},
					} {
						if got := r.Sensitive(c.key); got != c.want {
							t.Errorf("goroutine %d, round %d: Sensitive(%.40q) = %v, want %v", g, round, c.key, got, c.want)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}
