package core

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
)

// Secrets recognised by their shape, wherever they appear: JSON values, query, form and header
// values, free text, map keys and URL paths. Each detector reports the spans of the secrets it
// finds; a string that is wholly a secret becomes Redacted, a secret inside text is replaced in
// place. The detectors run only after a cheap filter (redactShapeHint) says that a string is long
// enough and holds a long enough run of token characters, enough digits or a PEM armour line.

// redactShapeMin is the length of the shortest string that can hold a secret recognised by its
// shape (a 13-digit card number).
const redactShapeMin = 13

// redactTokenMin is the length of the shortest token checked for a JWT or a known key prefix.
const redactTokenMin = 16

// redactKeyPrefix is a well-known format of a cloud or service credential: a fixed prefix
// followed by at least min characters of a set.
type redactKeyPrefix struct {
	prefix string
	min    int
	set    func(c byte) bool
}

func redactAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func redactB64URL(c byte) bool { return redactAlnum(c) || c == '-' || c == '_' }

func redactUpperDigit(c byte) bool { return 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' }

func redactHexByte(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// redactKeyPrefixes are the credential formats recognised by their prefix.
var redactKeyPrefixes = []redactKeyPrefix{
	{"AKIA", 16, redactUpperDigit}, // AWS access key id (long-term)
	{"ASIA", 16, redactUpperDigit}, // AWS access key id (temporary)
	{"ghp_", 36, redactAlnum},      // GitHub personal access token
	{"gho_", 36, redactAlnum},      // GitHub OAuth token
	{"ghu_", 36, redactAlnum},      // GitHub user-to-server token
	{"ghs_", 36, redactAlnum},      // GitHub server-to-server token
	{"ghr_", 36, redactAlnum},      // GitHub refresh token
	{"github_pat_", 22, redactB64URL},
	{"glpat-", 20, redactB64URL}, // GitLab personal access token
	{"xoxa-", 10, redactB64URL},  // Slack tokens
	{"xoxb-", 10, redactB64URL},
	{"xoxp-", 10, redactB64URL},
	{"xoxr-", 10, redactB64URL},
	{"xoxs-", 10, redactB64URL},
	{"xoxe-", 10, redactB64URL},
	{"xapp-", 10, redactB64URL},
	{"sk_live_", 16, redactAlnum}, // Stripe secret and restricted keys, webhook secrets
	{"sk_test_", 16, redactAlnum},
	{"rk_live_", 16, redactAlnum},
	{"rk_test_", 16, redactAlnum},
	{"whsec_", 16, redactAlnum},
	{"AIza", 35, redactB64URL},    // Google API key
	{"ya29.", 20, redactB64URL},   // Google OAuth access token
	{"GOCSPX-", 20, redactB64URL}, // Google OAuth client secret
	{"sk-", 32, redactB64URL},     // OpenAI and Anthropic API keys
	{"npm_", 36, redactAlnum},
	{"pypi-AgEIcHlwaS5vcmc", 20, redactB64URL},
	{"hf_", 34, redactAlnum}, // Hugging Face
	{"shpat_", 32, redactHexByte},
	{"shpss_", 32, redactHexByte},
	{"shpca_", 32, redactHexByte},
	{"shppa_", 32, redactHexByte},
	{"dop_v1_", 64, redactHexByte}, // DigitalOcean
	{"doo_v1_", 64, redactHexByte},
	{"dapi", 32, redactHexByte}, // Databricks
	{"hvs.", 24, redactB64URL},  // HashiCorp Vault service token
	{"hvb.", 24, redactB64URL},
	{"SG.", 60, func(c byte) bool { return redactB64URL(c) || c == '.' }}, // SendGrid
	{"AGE-SECRET-KEY-1", 50, redactUpperDigit},
}

// redactKeyPrefixIndex lists the indexes in redactKeyPrefixes of the prefixes by their first byte.
var redactKeyPrefixIndex = func() (idx [256][]int) {
	for i, k := range redactKeyPrefixes {
		idx[k.prefix[0]] = append(idx[k.prefix[0]], i)
	}
	return idx
}()

// redactTokenBytes marks the bytes that may be part of a token checked for a JWT or a key
// prefix: base64url and '.'.
var redactTokenBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = redactB64URL(byte(c)) || c == '.'
	}
	return t
}()

// redactTokenByte reports whether c may be part of a token checked for a JWT or a key prefix.
func redactTokenByte(c byte) bool { return redactTokenBytes[c] }

// redactHint says which shape detectors a string needs.
type redactHint uint8

const (
	redactHintToken  redactHint = 1 << iota // a run of token bytes long enough for a JWT or a key
	redactHintDigits                        // enough digits for a card number
	redactHintPEM                           // a PEM armour line
)

// redactShapeHint is the cheap filter before the shape detectors, one pass over s: it reports
// which of them s needs, none when s is too short to hold any secret shape.
func redactShapeHint(s string) redactHint {
	if len(s) < redactShapeMin {
		return 0
	}
	var h redactHint
	digits, run := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !redactTokenBytes[c] {
			run = 0
			continue
		}
		if '0' <= c && c <= '9' {
			digits++
		}
		if run++; run >= redactTokenMin {
			h |= redactHintToken
		}
	}
	if digits >= redactShapeMin {
		h |= redactHintDigits
	}
	if strings.Contains(s, "-----BEGIN") {
		h |= redactHintPEM
	}
	return h
}

// redactShapes appends the spans of the secrets in s recognised by their shape: JWTs, private key
// PEM blocks (also base64-encoded, as in Kubernetes secrets), credentials with a well-known prefix
// (redactKeyPrefixes) and card numbers. h is redactShapeHint(s).
func redactShapes(s string, spans []redactSpan, h redactHint) []redactSpan {
	if h&redactHintPEM != 0 {
		spans = redactPEM(s, spans)
	}
	if h&redactHintToken != 0 {
		for i := 0; i < len(s); {
			if !redactTokenBytes[s[i]] {
				i++
				continue
			}
			j := i
			for j < len(s) && redactTokenBytes[s[j]] {
				j++
			}
			if j-i >= redactTokenMin {
				spans = redactToken(s, i, j, spans)
			}
			i = j
		}
	}
	if h&redactHintDigits != 0 {
		spans = redactCards(s, spans)
	}
	return spans
}

// redactToken appends the span of a secret in the token s[i:j]: a JWT, a base64-encoded private
// key, or a credential with a known prefix.
func redactToken(s string, i, j int, spans []redactSpan) []redactSpan {
	t := s[i:j]
	if end := redactJWT(t); end > 0 {
		return append(spans, redactSpan{i, i + end})
	}
	if strings.HasPrefix(t, "LS0tLS1CRUdJTi") { // base64 of "-----BEGIN "
		e := i
		for e < len(s) && (redactAlnum(s[e]) || s[e] == '+' || s[e] == '/' || s[e] == '=') {
			e++
		}
		if redactBase64PrivateKey(s[i:e]) {
			return append(spans, redactSpan{i, e})
		}
	}
	// A prefix starts the token or follows a dot ("key.AKIA..."), a dash or an underscore.
	seps := redactSeps{at: [3]int{-2, -2, -2}}
	for p := 0; p < len(t); {
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
		// The next place a prefix may start is after the first separator at p or later (past a
		// credential found, at its end).
		q := seps.next(t, p)
		if q < 0 {
			break
		}
		p = q + 1
	}
	return spans
}

// redactSeps finds the separators after which a key prefix may start ('.', '-', '_') with
// strings.IndexByte, which scans many bytes at a time, remembering where each was found so that a
// token is scanned once for each.
type redactSeps struct {
	// at holds where each separator was found last: -1 when it does not occur from where the
	// search began, -2 before the first search.
	at [3]int
}

// next returns the offset of the first separator of t at p or after it, or -1. Calls on one
// token must come with p not decreasing.
func (s *redactSeps) next(t string, p int) int {
	best := -1
	for k, c := range [3]byte{'.', '-', '_'} {
		if s.at[k] == -2 || s.at[k] >= 0 && s.at[k] < p {
			// A separator found at or after p is the first there: the search that found it
			// began at or before p.
			if s.at[k] = strings.IndexByte(t[p:], c); s.at[k] >= 0 {
				s.at[k] += p
			}
		}
		if s.at[k] >= 0 && (best < 0 || s.at[k] < best) {
			best = s.at[k]
		}
	}
	return best
}

// redactJWT returns the length of the JWS (three segments) or JWE (five segments, its header
// naming "enc") compact serialisation at the start of t whose header decodes to a JSON object
// with an "alg" member, or 0. What follows the last segment ("x.y.z." ending a sentence) is not
// part of it.
func redactJWT(t string) int {
	if len(t) < 2 || t[0] != 'e' {
		return 0
	}
	var dots [5]int
	n := 0
	for i := 0; i < len(t) && n < len(dots); i++ {
		if t[i] == '.' {
			dots[n] = i
			n++
		}
	}
	if n < 2 || dots[0] < 4 || dots[0] > 2048 {
		return 0
	}
	var buf [1536]byte
	hdr := strings.TrimRight(t[:dots[0]], "=")
	m, err := base64.RawURLEncoding.Decode(buf[:], []byte(hdr))
	if err != nil {
		return 0
	}
	h := bytes.TrimSpace(buf[:m])
	if len(h) < 2 || h[0] != '{' || !bytes.Contains(h, []byte(`"alg"`)) || !json.Valid(h) {
		return 0
	}
	segs := 3
	if n >= 4 && bytes.Contains(h, []byte(`"enc"`)) {
		segs = 5
	}
	if n < segs {
		return len(t)
	}
	return dots[segs-1]
}

// redactPEMPrivate reports whether a PEM label names a private or secret key.
func redactPEMPrivate(label string) bool {
	return strings.Contains(label, "PRIVATE") || strings.Contains(label, "SECRET")
}

// redactPEM appends the spans of PEM blocks holding private keys (every "... PRIVATE KEY",
// "OPENSSH PRIVATE KEY", "PGP PRIVATE KEY BLOCK", "ENCRYPTED PRIVATE KEY"): from the BEGIN line
// to the end of the matching END line, or to the end of s when there is none (a truncated body).
// Certificates and public keys are kept.
func redactPEM(s string, spans []redactSpan) []redactSpan {
	const begin = "-----BEGIN "
	for i := 0; ; {
		b := strings.Index(s[i:], begin)
		if b < 0 {
			return spans
		}
		b += i
		ls := b + len(begin)
		le := strings.Index(s[ls:min(len(s), ls+80)], "-----")
		if le < 0 {
			i = ls
			continue
		}
		label := s[ls : ls+le]
		if !redactPEMPrivate(label) {
			i = ls + le
			continue
		}
		endLine := "-----END " + label + "-----"
		e := strings.Index(s[ls:], endLine)
		if e < 0 {
			return append(spans, redactSpan{b, redactPEMBodyEnd(s, b)})
		}
		e += ls + len(endLine)
		spans = append(spans, redactSpan{b, e})
		i = e
	}
}

// redactPEMBodyEnd returns where a PEM block without an END line ends, from b, the start of its
// BEGIN line: at the end of the last line before the text returns to a smaller indentation than
// the BEGIN line's (the end of a YAML block scalar holding the key), or at the end of s. Lines
// are separated by line breaks or by escaped "\n". A cut block thus hides all of its key.
func redactPEMBodyEnd(s string, b int) int {
	ls := b // the start of the BEGIN line
	for ls > 0 && s[ls-1] != '\n' && s[ls-1] != '\r' && !(s[ls-1] == 'n' && ls >= 2 && s[ls-2] == '\\') {
		ls--
	}
	indent := b - ls
	if strings.TrimLeft(s[ls:b], " \t") != "" {
		indent = 0 // text before BEGIN on its line: no indentation to return to
	}
	end := b
	for i := b; i < len(s); {
		// The line runs to the next line break, real or escaped.
		j := i
		for j < len(s) && s[j] != '\n' && s[j] != '\r' && !(s[j] == '\\' && j+1 < len(s) && s[j+1] == 'n') {
			j++
		}
		line := s[i:j]
		if body := strings.TrimLeft(line, " \t"); body != "" {
			if i > b && len(line)-len(body) < indent {
				return end
			}
			end = j
		}
		if j < len(s) && s[j] == '\\' {
			j++
		}
		i = j + 1
	}
	return end
}

// redactBase64PrivateKey reports whether b64 (standard base64) decodes to a PEM private key.
func redactBase64PrivateKey(b64 string) bool {
	n := min(len(b64), 96) &^ 3
	var buf [72]byte
	m, err := base64.StdEncoding.Decode(buf[:], []byte(b64[:n]))
	if err != nil && m == 0 {
		return false
	}
	head := string(buf[:m])
	rest, ok := strings.CutPrefix(head, "-----BEGIN ")
	if !ok {
		return false
	}
	if i := strings.Index(rest, "-----"); i >= 0 {
		rest = rest[:i]
	}
	return redactPEMPrivate(rest)
}

// redactCards appends the spans of card numbers in s: 13 to 19 digits, in groups separated by
// single spaces or dashes, that pass the Luhn check and start with the issuer prefix of a card
// scheme for their length (redactCardIIN). A number glued to letters or to other digits (ids,
// UUIDs, decimals) is not a card number.
func redactCards(s string, spans []redactSpan) []redactSpan {
	var digits [19]byte
	var ends [19]int // ends[k]: offset in s just after digit k
	for i := 0; i < len(s); {
		if !redactDigit(s[i]) || !redactCardStart(s, i) {
			i++
			continue
		}
		// Collect up to 19 digits in groups from i.
		n, j := 0, i
		for j < len(s) && n < len(digits) {
			if redactDigit(s[j]) {
				digits[n] = s[j]
				n++
				j++
				ends[n-1] = j
				continue
			}
			if (s[j] == ' ' || s[j] == '-') && j+1 < len(s) && redactDigit(s[j+1]) && j > i {
				j++
				continue
			}
			break
		}
		// The longest card number that ends at a group boundary wins.
		found := false
		for l := n; l >= redactShapeMin; l-- {
			e := ends[l-1]
			if redactCardEnd(s, e) && redactLuhn(digits[:l]) && redactCardIIN(digits[:l]) {
				spans = append(spans, redactSpan{i, e})
				i, found = e, true
				break
			}
		}
		if !found {
			// The next candidate starts at a later group.
			for i < len(s) && redactDigit(s[i]) {
				i++
			}
		}
	}
	return spans
}

func redactDigit(c byte) bool { return '0' <= c && c <= '9' }

// redactCardStart reports whether a card number may start at s[i]: not glued to a letter or
// digit, nor to a '+', nor to a '-' or '.' that is itself glued to one (UUIDs, versions).
func redactCardStart(s string, i int) bool {
	if i == 0 {
		return true
	}
	p := s[i-1]
	if redactAlnum(p) || p == '+' || p == '_' {
		return false
	}
	if (p == '-' || p == '.') && i >= 2 && redactAlnum(s[i-2]) {
		return false
	}
	return true
}

// redactCardEnd reports whether a card number may end just before s[e]: not glued to a letter or
// a digit, nor followed by a decimal part, a '_' or a dash glued to a word.
func redactCardEnd(s string, e int) bool {
	if e == len(s) {
		return true
	}
	c := s[e]
	if redactAlnum(c) || c == '_' {
		return false
	}
	if e+1 < len(s) {
		next := s[e+1]
		switch c {
		case '.': // a decimal
			return !redactDigit(next)
		case '-': // glued to a word, as in "4111...-A"; a dash before more digits is a group
			return !redactAlnum(next) || redactDigit(next)
		}
	}
	return true
}

// redactLuhn reports whether digits pass the Luhn check.
func redactLuhn(digits []byte) bool {
	sum := 0
	for k := range digits {
		d := int(digits[len(digits)-1-k] - '0')
		if k%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// redactCardIIN reports whether digits start with the issuer prefix of a card scheme issuing
// numbers of that length: Visa, Mastercard, American Express, Discover, UnionPay, JCB, Diners
// Club, Maestro and Mir.
func redactCardIIN(d []byte) bool {
	l := len(d)
	p := func(n int) int {
		v := 0
		for _, c := range d[:n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	p1, p2, p3, p4 := p(1), p(2), p(3), p(4)
	switch {
	case p1 == 4: // Visa
		return l == 13 || l == 16 || l == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return l == 16
	case p2 == 34 || p2 == 37: // American Express
		return l == 15
	case p4 == 6011, p3 >= 644 && p3 <= 649, p2 == 65, p2 == 62: // Discover, UnionPay
		return l >= 16
	case p4 >= 3528 && p4 <= 3589: // JCB
		return l >= 16
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return l >= 14
	case p4 == 5018, p4 == 5020, p4 == 5038, p4 == 5893, p4 == 6304, p4 == 6759, p4 >= 6761 && p4 <= 6763: // Maestro
		return true
	case p4 >= 2200 && p4 <= 2204: // Mir
		return l >= 16
	}
	return false
}

// redactIsCardNumber reports whether the decimal digits s are a card number.
func redactIsCardNumber(s string) bool {
	if len(s) < redactShapeMin || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !redactDigit(s[i]) {
			return false
		}
	}
	return redactLuhn([]byte(s)) && redactCardIIN([]byte(s))
}

// redactTokenLike reports whether a URL path segment (or a bare query key) looks like a random
// token: at least 20 base64url characters mixing upper and lower case, of which less than two
// thirds of the letters form word-like runs (three or more letters, a capital and lower-case
// letters or lower-case letters only, with a fifth to four fifths vowels; or a two- to
// four-letter acronym). Random tokens of 20 characters are caught about 97 times in 100, of 32
// characters 99 times; words, camelCase names and slugs are kept. UUIDs, numbers, hex digests
// and ULIDs (single-case) are not token-like, nor are typed ids with a lower-case prefix and '_'
// (Stripe's pi_..., cus_...): secrets with such a prefix are recognised by redactKeyPrefixes.
func redactTokenLike(seg string) bool {
	if len(seg) < 20 || len(seg) > 8192 {
		return false
	}
	if i := strings.IndexByte(seg, '_'); i > 0 && i <= 8 {
		typed := true
		for k := 0; k < i; k++ {
			if c := seg[k]; c < 'a' || c > 'z' {
				typed = false
				break
			}
		}
		if typed {
			return false
		}
	}
	var up, lo, letters, wordy int
	for i := 0; i < len(seg); {
		c := seg[i]
		switch {
		case redactLower(c):
			lo++
		case redactUpper(c):
			up++
		case redactDigit(c) || c == '-' || c == '_':
			i++
			continue
		default:
			return false
		}
		// A word: capitals followed by lower-case letters, or lower-case letters; a run of
		// capitals is an acronym whose last capital starts the next word.
		j := i
		for j < len(seg) && redactUpper(seg[j]) {
			j++
		}
		if j-i > 1 && j < len(seg) && redactLower(seg[j]) {
			j--
		}
		if j == i || j < len(seg) && redactLower(seg[j]) {
			for j < len(seg) && redactLower(seg[j]) {
				j++
			}
		}
		w := seg[i:j]
		for k := 1; k < len(w); k++ {
			if redactLower(w[k]) {
				lo++
			} else {
				up++
			}
		}
		vowels := 0
		acronym := true
		for k := 0; k < len(w); k++ {
			switch w[k] | 0x20 {
			case 'a', 'e', 'i', 'o', 'u':
				vowels++
			}
			acronym = acronym && redactUpper(w[k])
		}
		letters += len(w)
		if len(w) >= 3 && vowels*5 >= len(w) && vowels*5 <= len(w)*4 ||
			acronym && len(w) >= 2 && len(w) <= 4 && (vowels > 0 || len(w) == 3) {
			wordy += len(w)
		}
		i = j
	}
	return up > 0 && lo > 0 && wordy*3 < letters*2
}

func redactLower(c byte) bool { return 'a' <= c && c <= 'z' }

func redactUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

// redactSegmentSecret reports whether a URL path segment is a secret: token-like (redactTokenLike) or
// holding a secret recognised by its shape. Percent-encoded segments are judged decoded too.
func redactSegmentSecret(seg string) bool {
	if len(seg) < redactShapeMin {
		return false
	}
	for _, s := range [2]string{seg, ""} {
		if s == "" {
			if strings.IndexByte(seg, '%') < 0 {
				break
			}
			u, err := url.PathUnescape(seg)
			if err != nil || u == seg {
				break
			}
			s = u
		}
		if redactTokenLike(s) || len(redactShapes(s, nil, redactShapeHint(s))) > 0 {
			return true
		}
	}
	return false
}

// redactRouteSegment is one segment of a route template.
type redactRouteSegment struct {
	param    string // the parameter's name; empty for a literal segment
	text     string // the literal segment
	catchAll bool   // the parameter takes the rest of the path
}

// redactParseRoute splits a route template into segments: Gin's ":name" and "*name", and
// net/http's "{name}" and "{name...}" ("{$}" is a literal end). A method ("GET /x") and a host
// before the path are ignored. It returns nil for a route that is not a template.
func redactParseRoute(route string) []redactRouteSegment {
	if i := strings.IndexByte(route, ' '); i >= 0 {
		route = strings.TrimSpace(route[i+1:])
	}
	i := strings.IndexByte(route, '/')
	if i < 0 {
		return nil
	}
	route = route[i:]
	if !strings.ContainsAny(route, ":*{") {
		return nil
	}
	parts := strings.Split(route, "/")
	segs := make([]redactRouteSegment, len(parts))
	for k, p := range parts {
		switch {
		case strings.HasPrefix(p, ":") && len(p) > 1:
			segs[k] = redactRouteSegment{param: p[1:]}
		case strings.HasPrefix(p, "*"):
			segs[k] = redactRouteSegment{param: p[1:], catchAll: true}
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") && p != "{$}":
			name, rest := strings.CutSuffix(p[1:len(p)-1], "...")
			segs[k] = redactRouteSegment{param: name, catchAll: rest}
		case p == "{$}":
			segs[k] = redactRouteSegment{text: ""}
		default:
			segs[k] = redactRouteSegment{text: p}
		}
	}
	return segs
}

// path redacts a request path (and a query string in it, as Values would): a segment bound by
// route to a parameter with a sensitive name ("/reset/:token", "/files/{secret...}") becomes
// Redacted (a catch-all parameter's whole rest becomes one Redacted), a segment that is a
// literal of route is kept, and any other segment that is a secret by its shape or token-like
// (see redactTokenLike) becomes Redacted. UUIDs, numbers, hex digests and slugs are kept. It
// reports whether anything changed.
func (r *Redactor) path(p, route string) (string, bool) {
	pathPart, query, hasQuery := strings.Cut(p, "?")
	changed := false
	tmpl := redactParseRoute(route)
	segs := strings.Split(pathPart, "/")
	if len(tmpl) != len(segs) && (len(tmpl) == 0 || !tmpl[len(tmpl)-1].catchAll || len(segs) < len(tmpl)-1) {
		tmpl = nil // the route does not describe this path
	}
	for k := 0; k < len(segs); k++ {
		seg := segs[k]
		if k < len(tmpl) {
			t := tmpl[k]
			if t.param != "" && r.Sensitive(t.param) {
				if t.catchAll {
					segs = append(segs[:k], Redacted)
					changed = true
					break
				}
				if seg != "" {
					segs[k], changed = Redacted, true
				}
				continue
			}
			if t.param == "" && seg == t.text {
				continue
			}
		}
		if redactSegmentSecret(seg) {
			segs[k], changed = Redacted, true
		}
	}
	if changed {
		pathPart = strings.Join(segs, "/")
	}
	if hasQuery {
		if q, ok := r.query(query, 1); ok {
			query, changed = q, true
		}
		if !changed {
			return p, false
		}
		return pathPart + "?" + query, true
	}
	return pathPart, changed
}

// redactIntCard returns Redacted for an integer that is a card number and v itself otherwise.
func redactIntCard(v any) any {
	var u uint64
	switch x := v.(type) {
	case int:
		u = uint64(max(x, 0))
	case int64:
		u = uint64(max(x, 0))
	case uint:
		u = uint64(x)
	case uint64:
		u = x
	}
	if u < 1e12 {
		return v
	}
	var buf [20]byte
	if redactIsCardNumber(string(strconv.AppendUint(buf[:0], u, 10))) {
		return Redacted
	}
	return v
}
