package core

import "strings"

// Prose: secrets told in sentences rather than written as key=value pairs ("my password is
// hunter2", "the API key was set to abc123", "PIN: 1234" is a pair and handled elsewhere).

// redactLinkWords are the words that, after a sensitive label, introduce its value.
var redactLinkWords = map[string]bool{"is": true, "was": true, "are": true, "were": true, "be": true}

// redactLinkVerbs are the verbs that introduce a value when "to" follows them ("set to").
var redactLinkVerbs = map[string]bool{"set": true, "changed": true, "reset": true, "updated": true, "change": true}

// redactProseKeep are the words that, where a value would stand, say something about the secret
// instead of telling it ("the password is required", "your token was not accepted"). A value
// that is one of them is kept; anything else after a sensitive label and a link word is hidden.
var redactProseKeep = wordSet(
	"a", "an", "the", "this", "that", "it", "not", "no", "too", "very", "also", "still", "now",
	"be", "being", "been", "required", "mandatory", "optional", "needed", "missing", "empty", "blank",
	"null", "nil", "none", "unset", "incorrect", "invalid", "wrong", "correct", "valid", "expired",
	"revoked", "weak", "strong", "short", "long", "same", "different", "unchanged", "changed",
	"updated", "reset", "set", "saved", "stored", "sent", "shown", "hidden", "redacted",
	"encrypted", "hashed", "protected", "secret", "case", "unknown", "known", "used", "taken",
	"ok", "okay", "fine", "good", "bad", "enabled", "disabled", "locked", "accepted", "rejected",
	"verified", "unverified", "pending", "active", "inactive", "due", "about", "in", "at", "on",
	"for", "of", "by", "from", "with", "and", "or", "but", "my", "your", "our", "their", "his",
	"her", "its", "what", "which", "where", "when", "how", "who", "why", "only", "always",
	"never", "sometimes", "generated", "provided", "given", "supplied", "configured", "[redacted]",
)

// proseWord is a word of a sentence: s[start:end].
type proseWord struct{ start, end int }

// prose appends the spans of values told after a sensitive label in sentences: the token after
// "<label> is", "<label> was", "<label> are", "<label> set to" and the like, where the label is
// one to three words that Sensitive judges a secret ("password", "my new password", "api key").
// The value is the run of characters up to the next blank, without closing punctuation; it is
// kept when it is a word that describes the secret rather than telling it (redactProseKeep).
func (r *Redactor) prose(s string, spans []redactSpan) []redactSpan {
	var words []proseWord
	for i := 0; i < len(s); {
		if !redactKeyByte(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && redactKeyByte(s[j]) {
			j++
		}
		words = append(words, proseWord{i, j})
		i = j
	}
	for k := 1; k < len(words); k++ {
		w := s[words[k].start:words[k].end]
		next := k + 1
		switch lw := strings.ToLower(w); {
		case redactLinkWords[lw]:
			if next < len(words) && strings.EqualFold(s[words[next].start:words[next].end], "now") {
				next++
			}
		case redactLinkVerbs[lw] && next < len(words) && strings.EqualFold(s[words[next].start:words[next].end], "to"):
			next++
		default:
			continue
		}
		if !r.sensitiveLabel(s, words[:k]) {
			continue
		}
		if vs, ve := redactProseValue(s, words[next-1].end); ve > vs {
			if _, keep := redactProseKeep[strings.ToLower(s[vs:ve])]; !keep {
				spans = append(spans, redactSpan{vs, ve})
			}
		}
	}
	return spans
}

// sensitiveLabel reports whether the last one, two or three of words, separated only by blanks,
// name a secret.
func (r *Redactor) sensitiveLabel(s string, words []proseWord) bool {
	last := len(words) - 1
	for n := 0; n < 3 && last-n >= 0; n++ {
		first := words[last-n]
		if n > 0 {
			gap := s[first.end:words[last-n+1].start]
			if strings.Trim(gap, " \t") != "" || gap == "" {
				return false
			}
		}
		if r.Sensitive(s[first.start:words[last].end]) {
			return true
		}
	}
	return false
}

// redactProseValue returns the span of the value that follows the link ending at from: after
// blanks, an optional colon and an opening quote, up to the next blank, without a closing quote or
// sentence punctuation.
func redactProseValue(s string, from int) (start, end int) {
	i := from
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ':') {
		i++
	}
	for i < len(s) && (s[i] == '"' || s[i] == '\'' || s[i] == '`') {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r' {
		j++
	}
	for j > i && strings.IndexByte(".,;!?)\"'`", s[j-1]) >= 0 {
		j--
	}
	return i, j
}
