package core

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The scans below are the redactor's filters as they were written before they used
// strings.IndexByte and a table of the patterns' first two bytes: one byte at a time, plainly.
// FuzzRedactScans checks that the faster ones give the same answers on any input.

func refMentionsAuthScheme(s string) bool {
	for i := 0; i+5 <= len(s); i++ {
		if s[i]|0x20 != 'b' {
			continue
		}
		if len(s)-i >= 6 && strings.EqualFold(s[i:i+6], "bearer") || strings.EqualFold(s[i:i+5], "basic") {
			return true
		}
	}
	return false
}

func refLetters(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		ru, n := redactDecodeRune(s, i)
		i += n
		switch c := redactRuneClass(ru); {
		case c == rwSep:
		case ru < utf8.RuneSelf:
			b := byte(ru)
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			dst = append(dst, b)
		default:
			dst = utf8.AppendRune(dst, unicode.ToLower(ru))
		}
	}
	return dst
}

func refContainsPattern(r *Redactor, n []byte) bool {
	for i := 0; i+r.minLen <= len(n); i++ {
		for _, p := range r.first[n[i]] {
			if len(n)-i >= len(p) && string(n[i:i+len(p)]) == p {
				return true
			}
		}
	}
	return false
}

func refMayLeak(r *Redactor, s string) bool {
	if strings.Contains(s, "://") || refMentionsAuthScheme(s) {
		return true
	}
	if !strings.ContainsAny(s, "=:< ") {
		return false
	}
	return refContainsPattern(r, refLetters(nil, s))
}

// refKeyPrefixes is the search for credentials with a known prefix in the token t = s[i:j].
func refKeyPrefixes(t string, i int, spans []redactSpan) []redactSpan {
	for p := 0; p < len(t); p++ {
		if p > 0 && t[p-1] != '.' && t[p-1] != '-' && t[p-1] != '_' {
			continue
		}
		for _, x := range redactKeyPrefixIndex[t[p]] {
			k := &redactKeyPrefixes[x]
			if !strings.HasPrefix(t[p:], k.prefix) {
				continue
			}
			e := p + len(k.prefix)
			for e < len(t) && k.set(t[e]) {
				e++
			}
			if e-p-len(k.prefix) >= k.min {
				spans = append(spans, redactSpan{i + p, i + e})
				p = e
				break
			}
		}
	}
	return spans
}

func FuzzRedactScans(f *testing.F) {
	for _, s := range []string{
		"", "Customer number 17", "2026-11-24T10:05:00.123456Z", strings.Repeat("n", 200),
		"Authorization: Bearer abc", "BASIC dXNlcjpwYXNz", "bearebasic", "xbasi", "b", "BeArEr",
		"key.AKIAABCDEFGHIJKLMNOP", "x-ghp_" + strings.Repeat("a", 36), "a_b-c.d", "..--__",
		"glpat-" + strings.Repeat("Z", 20) + ".xoxb-0123456789", "AKIAABCDEFGHIJKLMNOPAKIAABCDEFGHIJKLMNOP",
		"password=hunter2", "my secret is x", "api<key", "ſecret tokén", "Passwörd: x", "\xff\xfe=:",
		"github_pat_" + strings.Repeat("q", 30) + "-ghs_" + strings.Repeat("1", 40),
		"a.AKIAABCDEFGHIJKLMNOP", "a-AKIAABCDEFGHIJKLMNOP", "a_AKIAABCDEFGHIJKLMNOP", "aAKIAABCDEFGHIJKLMNOP",
		"AKIAABCDEFGHIJKLMNOP_AKIAABCDEFGHIJKLMNOP.ASIAABCDEFGHIJKLMNOP", "_.-AKIAABCDEFGHIJKLMNOP",
	} {
		f.Add(s)
	}
	redactors := []*Redactor{NewRedactor(nil, nil), NewRedactor([]string{"zz", "customer id", "Ωmega"}, nil)}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := redactMentionsAuthScheme(s), refMentionsAuthScheme(s); got != want {
			t.Fatalf("redactMentionsAuthScheme(%q) = %v, want %v", s, got, want)
		}
		letters := redactLetters(nil, s)
		if want := refLetters(nil, s); string(letters) != string(want) {
			t.Fatalf("redactLetters(%q) = %q, want %q", s, letters, want)
		}
		for _, r := range redactors {
			if got, want := r.containsPattern(letters), refContainsPattern(r, letters); got != want {
				t.Fatalf("containsPattern(%q) = %v, want %v", letters, got, want)
			}
			if got, want := r.mayLeak(s), refMayLeak(r, s); got != want {
				t.Fatalf("mayLeak(%q) = %v, want %v", s, got, want)
			}
		}
		// Every token of s, as redactShapes cuts them, and s itself as one token.
		check := func(i, j int) {
			t.Helper()
			got := redactToken(s, i, j, nil)
			// redactToken looks for a JWT and a base64 private key first; compare the prefix
			// search only when it got that far.
			if redactJWT(s[i:j]) > 0 || strings.HasPrefix(s[i:j], "LS0tLS1CRUdJTi") {
				return
			}
			want := refKeyPrefixes(s[i:j], i, nil)
			if len(got) != len(want) {
				t.Fatalf("redactToken(%q, %d, %d) = %v, want %v", s, i, j, got, want)
			}
			for k := range got {
				if got[k] != want[k] {
					t.Fatalf("redactToken(%q, %d, %d) = %v, want %v", s, i, j, got, want)
				}
			}
		}
		check(0, len(s))
		for i := 0; i < len(s); {
			if !redactTokenBytes[s[i]] {
				i++
				continue
			}
			j := i
			for j < len(s) && redactTokenBytes[s[j]] {
				j++
			}
			check(i, j)
			i = j
		}
	})
}
