package core_test

import (
	"testing"

	"github.com/auditkit/auditkit/core"
)

// TestRedactProse checks secrets told in sentences: after a sensitive label and a link word the
// value is hidden, unless it is a word that describes the secret instead of telling it.
func TestRedactProse(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	cases := []struct{ in, want string }{
		{"my password is swordfish", "my password is [REDACTED]"},
		{"The password is: hunter2", "The password is: [REDACTED]"},
		{"the API key was set to abc123xyz, thanks", "the API key was set to [REDACTED], thanks"},
		{"your new PIN is now 4821!", "your new PIN is now [REDACTED]!"},
		{`token was "zzz9"`, `token was "[REDACTED]"`},
		{"access tokens are tkA tkB", "access tokens are [REDACTED] tkB"},
		{"Passphrase changed to correct-horse.", "Passphrase changed to [REDACTED]."},
		// Words that describe the secret are kept: validation messages stay readable.
		{"the password is too short", "the password is too short"},
		{"Password is required.", "Password is required."},
		{"your token was not accepted", "your token was not accepted"},
		{"the session is expired", "the session is expired"},
		// Properties of a secret are not secrets, and ordinary text is untouched.
		{"the token count is 3", "the token count is 3"},
		{"password changed at 10:00 is fine", "password changed at 10:00 is fine"},
		{"John Smith, 12 Main Street is home", "John Smith, 12 Main Street is home"},
		{"the passage is long", "the passage is long"},
		// The label is one to three words joined by blanks only.
		{"password, which is abc", "password, which is abc"},
	}
	for _, c := range cases {
		if got := r.Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
		got := r.Map(map[string]any{"note": c.in})["note"]
		if got != c.want {
			t.Errorf("Map note %q = %q, want %q", c.in, got, c.want)
		}
	}
}
