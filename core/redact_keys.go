package core

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// DefaultRedactFields are the key patterns every Redactor redacts, written as words. How a key is
// matched against them is described on Redactor.Sensitive.
//
//   - passwords: password, passwd, pwd, pass, passphrase, passcode, authentication string
//     (MySQL's password hash column)
//   - secrets and keys: secret, secret id (a Vault AppRole credential), api key, access key,
//     access key id (half of an AWS credential pair), secret key, private key, privkey, signing key, encryption key, master key, account
//     key, app key, session key, subscription key, tls key
//   - tokens and credentials: token, credential, creds, bearer, assertion, authorization, auth
//     (as the last word), auth code, cookie, session, session id, sessid, connect sid, signature, sig, sas,
//     hmac, code verifier, device code, dockercfg, dockerconfigjson
//   - one-time codes: otp, totp, hotp, mfa code, recovery code, backup code, verification code
//   - payment and identity numbers: credit card, card number, security code, cvv, cvc, pin, iban,
//     ssn, social security
//   - wallet seeds: mnemonic, seed phrase
//
// Left out on purpose: "code" alone (country_code, status_code; an OAuth authorization code is
// single-use and bound to the client), "sid" alone (Twilio account SIDs, Windows SIDs), "salt"
// (not secret by design; password_salt matches "password"), "key" alone (primary, cache and
// idempotency keys) and "auth" except as the last word (auth_type, auth_user).
var DefaultRedactFields = []string{
	"password", "passwd", "pwd", "pass", "passphrase", "passcode", "authentication string",
	"secret", "secret id", "api key", "access key", "access key id", "secret key", "private key", "privkey",
	"signing key", "encryption key", "master key", "account key", "app key", "session key",
	"subscription key", "tls key",
	"token", "credential", "creds", "bearer", "assertion", "authorization", "auth", "auth code",
	"cookie", "session", "session id", "sessid", "connect sid", "signature",
	"sig", "sas", "hmac", "code verifier", "device code", "dockercfg", "dockerconfigjson",
	"otp", "totp", "hotp", "mfa code", "recovery code", "backup code", "verification code",
	"credit card", "card number", "security code", "cvv", "cvc", "pin", "iban", "ssn",
	"social security",
	"mnemonic", "seed phrase",
}

// redactLastWordOnly are default patterns that name a secret only as the last word of a key:
// "X-Registry-Auth" and "basic_auth" hold credentials, "auth_type" and "auth_user" do not.
var redactLastWordOnly = map[string]bool{"auth": true}

// redactTailMin is the length from which a pattern may also start inside a word, as the tail of
// a glued compound ("rolpassword", "accesstoken", "jsessionid", "csrfmiddlewaretoken",
// "basicapi_key"): English compounds name what they are by their last part. It must still end
// with a word. Shorter patterns (pass, pin, sig, otp) match whole words only.
const redactTailMin = 5

// redactPluralMin is the length from which a pattern also matches with a plural "s" ("tokens",
// "credentials"); shorter patterns would turn "sass" into a plural of "sas".
const redactPluralMin = 4

// redactQualifiersAfter are words that, after the last sensitive word of a key, make the key name
// a property of the secret rather than the secret itself: token_count, password_changed_at,
// token_type, secret_name, session_expires_at, client_secret_expires_at, api_key_id,
// session_driver, credential_source.
var redactQualifiersAfter = wordSet(
	"at", "on", "date", "time", "timestamp", "ts", "in", "by",
	"count", "counts", "counter", "length", "len", "size", "min", "max", "limit", "limits",
	"quota", "usage", "type", "types", "kind", "policy", "policies", "rule", "rules",
	"required", "require", "requires", "enabled", "enable", "disabled", "set", "present",
	"exists", "expires", "expiry", "expiration", "expired", "exp", "ttl", "timeout", "duration",
	"lifetime", "age", "start", "started", "end", "ended", "changed", "change", "updated",
	"created", "sent", "rotated", "rotation", "used", "reuse", "id", "ids", "name", "names",
	"label", "description", "algorithm", "algorithms", "alg", "method", "methods", "format",
	"strength", "status", "version", "scope", "scopes", "prefix", "url", "uri", "urls",
	"endpoint", "path", "file", "ref", "arn", "mode", "valid", "invalid", "verified",
	"confirmed", "check", "checks", "attempts", "retries", "failures", "location", "field",
	"fields", "provider", "issuer", "audience", "source", "consent", "accepted", "samesite",
	"domain", "secure", "httponly", "driver", "store", "engine", "backend", "serializer",
	"validator", "validators", "helper", "helpers",
)

// redactQualifiersBefore are words that, anywhere before the first sensitive word of a key, make
// it a count, a limit or a flag: max_tokens, total_tokens, num_tokens, has_password,
// is_password_set.
var redactQualifiersBefore = wordSet(
	"max", "min", "num", "total", "count", "has", "is", "must", "require", "requires", "needs",
	"no", "without",
)

func wordSet(words ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(words))
	for _, w := range words {
		m[w] = struct{}{}
	}
	return m
}

// redactPattern is a pattern compiled by NewRedactor: the concatenation of its words.
type redactPattern struct {
	text     string
	lastOnly bool // matches only when it ends the key's last word
}

// NewRedactor returns a Redactor for DefaultRedactFields merged with fields. Patterns given in
// fields are split into words exactly like keys (see Sensitive): "Pin-Code", "pin_code",
// "pinCode" and "pin code" are the same pattern, matching the keys pin_code and PinCode; a
// pattern written as one word ("pincode") also matches the keys pin_code and PinCode, because
// a run of consecutive words is compared by its concatenation. Patterns without a letter or a
// digit are ignored.
//
// The keys in allow are normalised by lower-casing them and removing '-', '_', '.', white space
// and control characters; a key equal to an allow-listed key after that normalisation is not
// sensitive, although it matches a pattern. Its value is still walked, so secrets nested inside
// it, or recognised by their shape, are redacted.
func NewRedactor(fields, allow []string) *Redactor {
	r := &Redactor{verdicts: &redactVerdicts{}}
	seen := map[string]bool{}
	var buf []byte
	for i, f := range slices.Concat(DefaultRedactFields, fields) {
		buf, _ = redactWords(buf[:0], nil, f)
		p := string(buf)
		lastOnly := i < len(DefaultRedactFields) && redactLastWordOnly[p]
		key := p
		if lastOnly {
			key += "$"
		}
		if p == "" || seen[key] {
			continue
		}
		seen[key] = true
		r.patterns = append(r.patterns, redactPattern{text: p, lastOnly: lastOnly})
	}
	slices.SortFunc(r.patterns, func(a, b redactPattern) int {
		if a.text < b.text {
			return -1
		}
		if a.text > b.text {
			return 1
		}
		return 0
	})
	for _, p := range r.patterns {
		r.last[p.text[len(p.text)-1]] = append(r.last[p.text[len(p.text)-1]], p)
		r.first[p.text[0]] = append(r.first[p.text[0]], p.text)
	}
	r.minLen = len(r.patterns[0].text)
	for _, p := range r.patterns {
		r.minLen = min(r.minLen, len(p.text))
	}
	if r.minLen >= 2 {
		r.starts = new([1 << 10]uint64)
		for _, p := range r.patterns {
			k := uint(p.text[0])<<8 | uint(p.text[1])
			r.starts[k>>6] |= 1 << (k & 63)
		}
	}
	for _, a := range allow {
		if n := string(redactNorm(nil, a)); n != "" {
			if r.allow == nil {
				r.allow = map[string]struct{}{}
			}
			r.allow[n] = struct{}{}
		}
	}
	return r
}

// redactDefault is the Redactor used through a nil or zero *Redactor. It is built on first use.
var redactDefault = sync.OnceValue(func() *Redactor { return NewRedactor(nil, nil) })

// rules returns the Redactor to apply: r itself, or the default for a nil or zero Redactor.
func (r *Redactor) rules() *Redactor {
	if r == nil || r.patterns == nil {
		return redactDefault()
	}
	return r
}

// redactNorm appends the normalised form of an allow-listed key to dst: lower-cased, without
// '-', '_', '.', white space and control characters. Invalid UTF-8 becomes U+FFFD.
func redactNorm(dst []byte, key string) []byte {
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case 'A' <= c && c <= 'Z':
				dst = append(dst, c+('a'-'A'))
			case c == '-' || c == '_' || c == '.' || c == ' ' || c < 0x20 || c == 0x7f:
			default:
				dst = append(dst, c)
			}
			continue
		}
		ru, n := utf8.DecodeRuneInString(key[i:])
		i += n
		if unicode.IsSpace(ru) || unicode.IsControl(ru) {
			continue
		}
		dst = utf8.AppendRune(dst, unicode.ToLower(ru))
	}
	return dst
}

// Character classes of redactWords.
const (
	rwSep = iota
	rwLower
	rwUpper
	rwDigit
)

// redactASCIIClass is the class of each ASCII byte.
var redactASCIIClass = func() (t [utf8.RuneSelf]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = rwLower
		t[c-'a'+'A'] = rwUpper
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = rwDigit
	}
	return t
}()

func redactRuneClass(ru rune) int {
	if ru < utf8.RuneSelf {
		return int(redactASCIIClass[ru])
	}
	switch {
	case unicode.IsUpper(ru):
		return rwUpper
	case unicode.IsLetter(ru):
		return rwLower
	case unicode.IsDigit(ru):
		return rwDigit
	}
	return rwSep
}

func redactDecodeRune(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// redactWords appends the lower-cased letters and digits of key to dst and the end offset (in
// dst) of each of its words to ends. Words are separated by anything that is not a letter or a
// digit, by a change between letters and digits, by a lower-case letter followed by an upper-case
// one (camelCase), and before the last of several upper-case letters followed by a lower-case one
// (APIKey is API, Key).
func redactWords(dst []byte, ends []int, key string) ([]byte, []int) {
	prev := rwSep
	open := false
	for i := 0; i < len(key); {
		var ru rune
		var c, n int
		if b := key[i]; b < utf8.RuneSelf {
			ru, c, n = rune(b), int(redactASCIIClass[b]), 1
		} else {
			ru, n = utf8.DecodeRuneInString(key[i:])
			c = redactRuneClass(ru)
		}
		if c == rwSep {
			if open {
				ends = append(ends, len(dst))
				open = false
			}
			prev = rwSep
			i += n
			continue
		}
		boundary := false
		switch {
		case prev == rwSep:
		case (prev == rwDigit) != (c == rwDigit):
			boundary = true
		case prev == rwLower && c == rwUpper:
			boundary = true
		case prev == rwUpper && c == rwUpper && i+n < len(key):
			next, _ := redactDecodeRune(key, i+n)
			boundary = redactRuneClass(next) == rwLower
		}
		if boundary && open {
			ends = append(ends, len(dst))
		}
		open = true
		switch {
		case ru >= utf8.RuneSelf:
			dst = utf8.AppendRune(dst, unicode.ToLower(ru))
		case c == rwUpper:
			dst = append(dst, byte(ru)+'a'-'A')
		default:
			dst = append(dst, byte(ru))
		}
		prev = c
		i += n
	}
	if open {
		ends = append(ends, len(dst))
	}
	return dst, ends
}

// containsPattern reports whether the letters and digits n of a text contain a pattern anywhere.
// It is the cheap filter before Text looks for pairs.
func (r *Redactor) containsPattern(n []byte) bool {
	for i := 0; i+r.minLen <= len(n); i++ {
		if r.starts != nil {
			// No pattern begins with these two bytes (n[i+1] exists: minLen >= 2).
			if k := uint(n[i])<<8 | uint(n[i+1]); r.starts[k>>6]&(1<<(k&63)) == 0 {
				continue
			}
		}
		for _, p := range r.first[n[i]] {
			if len(n)-i >= len(p) && string(n[i:i+len(p)]) == p {
				return true
			}
		}
	}
	return false
}

// Sensitive reports whether values under key must be redacted.
//
// The key is split into words: at anything that is not a letter or a digit (snake_case,
// kebab-case, dotted.names, card[number], spaces), between letters and digits (ssnLast4 is ssn,
// last, 4), and at case changes (newPassword is new, password; APIKey is api, key; userSSN is
// user, ssn). Words are lower-cased. A pattern (see DefaultRedactFields and NewRedactor) matches
// a run of consecutive words whose concatenation equals the pattern's words concatenated, so
// "api key" matches api_key, apiKey, x-api-key and APIKEY. Besides:
//
//   - a pattern of 4 or more letters also matches with a plural "s" (tokens, credentials);
//   - a pattern of 5 or more letters may also start inside a word, as the tail of a glued
//     compound (rolpassword, accesstoken, jsessionid, xapi_key), but must end with a word: the
//     head of a word never matches (secretary, tokenizer and passwordless are not sensitive);
//   - "auth" matches only as the last word (X-Registry-Auth, basic_auth; not auth_type).
//
// A key that matches is still not sensitive when it names a property of the secret rather than
// the secret: when a qualifier word follows its last matching word (token_count,
// password_changed_at, token_type, secret_name, api_key_id, token_expires_in; the list is
// redactQualifiersAfter: times, counts, lengths, limits, types, policies, flags, ids, names,
// algorithms, URLs and paths), or when a count or flag word comes before its first matching word
// (max_tokens, total_tokens, has_password, is_password_set). A qualifier that a pattern itself
// contains does not count: session_id and access_key_id are sensitive, token_id is not. So ssn,
// user_ssn, SSN, ssnLast4, password_hash, newPassword, x-api-key, accessToken, client-secret,
// privateKey, Authorization, Cookie and Set-Cookie are sensitive; business_name, classname and
// token_count are not.
//
// A key equal, after normalisation, to a key of the allow list given to NewRedactor is never
// sensitive.
func (r *Redactor) Sensitive(key string) bool {
	r = r.rules()
	c := r.verdicts
	if c == nil || len(key) > redactVerdictKeyMax {
		return r.sensitive(key)
	}
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
	}
	v := r.sensitive(key)
	c.add(key, v)
	return v
}

// redactVerdictMax and redactVerdictKeyMax bound the keys whose verdicts a Redactor remembers:
// the columns and fields a program uses over and over are then judged once, and keys made up by
// clients cannot make the memory grow.
const (
	redactVerdictMax    = 1024
	redactVerdictKeyMax = 64
)

// redactVerdicts remembers Sensitive's verdicts. Readers load an immutable map without locking;
// a new verdict replaces the map by a copy holding it, until the map is full.
type redactVerdicts struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]bool]
}

func (c *redactVerdicts) add(key string, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	n := 0
	if old != nil {
		n = len(*old)
	}
	if n >= redactVerdictMax {
		return
	}
	m := make(map[string]bool, n+1)
	if old != nil {
		maps.Copy(m, *old)
	}
	m[strings.Clone(key)] = v
	c.m.Store(&m)
}

// sensitive is Sensitive without the remembered verdicts.
func (r *Redactor) sensitive(key string) bool {
	var buf [96]byte
	var ends [24]int
	n, e := redactWords(buf[:0], ends[:0], key)
	if !r.matchWords(n, e) {
		return false
	}
	if r.allow != nil {
		var abuf [96]byte
		if _, ok := r.allow[string(redactNorm(abuf[:0], key))]; ok {
			return false
		}
	}
	return true
}

// matchWords applies the rules of Sensitive to the words of a key: n holds their letters, ends
// the end offset of each.
func (r *Redactor) matchWords(n []byte, ends []int) bool {
	if len(n) < r.minLen {
		return false
	}
	firstWord, lastWord := len(ends), -1
	start := 0
	for w, end := range ends {
		for _, e := range [2]int{end, end - 1} {
			if e == end-1 && (n[e] != 's' || e <= start) {
				continue
			}
			for _, p := range r.last[n[e-1]] {
				l := len(p.text)
				if l > e || string(n[e-l:e]) != p.text {
					continue
				}
				if e != end && l < redactPluralMin {
					continue
				}
				if p.lastOnly && (w != len(ends)-1 || e != end) {
					continue
				}
				s := e - l
				sw, atBoundary := redactWordAt(ends, w, s)
				if !atBoundary && l < redactTailMin {
					continue
				}
				firstWord = min(firstWord, sw)
				lastWord = max(lastWord, w)
			}
		}
		start = end
	}
	if lastWord < 0 {
		return false
	}
	for w := lastWord + 1; w < len(ends); w++ {
		if _, ok := redactQualifiersAfter[string(n[ends[w-1]:ends[w]])]; ok {
			return false
		}
	}
	for w := 0; w < firstWord; w++ {
		s := 0
		if w > 0 {
			s = ends[w-1]
		}
		if _, ok := redactQualifiersBefore[string(n[s:ends[w]])]; ok {
			return false
		}
	}
	return true
}

// redactWordAt returns the index of the word holding offset s, at or before word w, and whether
// s is its start. It walks back from w, at most one word per byte of a pattern.
func redactWordAt(ends []int, w, s int) (int, bool) {
	for {
		start := 0
		if w > 0 {
			start = ends[w-1]
		}
		if start <= s {
			return w, start == s
		}
		w--
	}
}

// redactLetters appends the lower-cased letters and digits of s to dst, as redactWords does
// without recording where words end.
func redactLetters(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			i++
			switch redactASCIIClass[b] {
			case rwSep:
			case rwUpper:
				dst = append(dst, b+'a'-'A')
			default:
				dst = append(dst, b)
			}
			continue
		}
		ru, n := utf8.DecodeRuneInString(s[i:]) // not ASCII: invalid bytes give U+FFFD
		i += n
		if redactRuneClass(ru) != rwSep {
			dst = utf8.AppendRune(dst, unicode.ToLower(ru))
		}
	}
	return dst
}

// redactKeyPlaceholder is the format of the placeholder that replaces a key carrying a secret.
const redactKeyPlaceholder = "[REDACTED KEY %d]"

// redactPlainKey reports whether k is too short and too plain (letters, fewer digits than a card
// number, '_', '-', '.', brackets) to carry a secret itself: the fast path of keySecret.
func redactPlainKey(k string) bool {
	if len(k) >= redactTokenMin {
		return false
	}
	digits := 0
	for i := 0; i < len(k); i++ {
		c := k[i]
		if redactDigit(c) {
			digits++
		} else if !redactAlnum(c) && c != '_' && c != '-' && c != '.' && c != '[' && c != ']' {
			return false
		}
	}
	return digits < redactShapeMin // else it may be a card number
}

// keySecret reports whether the sanitised key k is itself a secret or carries one: a JWT, a
// credential with a known prefix, a card number, a PEM block, credentials in text
// ("password=hunter2" parsed as a form key, a JSON document holding a password), or, for a key
// without a value (bare), a random token (a query string that is only a token).
func (r *Redactor) keySecret(k string, bare bool, depth int) bool {
	if redactPlainKey(k) {
		return false
	}
	if bare && redactTokenLike(k) {
		return true
	}
	out, _ := r.str(k, depth)
	return strings.Count(out, Redacted) > strings.Count(k, Redacted)
}

// redactKeyed is a map entry whose key carries a secret.
type redactKeyed[V any] struct {
	key string
	val V
}

// redactPlaceKeys stores the entries of bad in out under placeholders "[REDACTED KEY n]",
// numbered from 1 in the order of their keys, so that the same map always gives the same
// placeholders; a placeholder already used as a key is skipped.
func redactPlaceKeys[V any](out map[string]V, bad []redactKeyed[V]) {
	slices.SortFunc(bad, func(a, b redactKeyed[V]) int { return strings.Compare(a.key, b.key) })
	n := 0
	for _, b := range bad {
		var name string
		for {
			n++
			name = fmt.Sprintf(redactKeyPlaceholder, n)
			if _, taken := out[name]; !taken {
				break
			}
		}
		out[name] = b.val
	}
}

// redactNameMembers are the members (normalised like allow-listed keys) that name the entry of
// a name/value structure: {"name": "DB_PASSWORD", "value": ...} (Kubernetes env, HAR headers),
// {"Name": "/prod/db/password", "Value": ...} (AWS Parameter Store), {"Key": ..., "Value": ...}
// (AWS tags), {"ParameterKey": ..., "ParameterValue": ...} (CloudFormation), {"type":
// "password", "value": ...} (Keycloak credentials), {"kind": "Secret", "data": ...}.
var redactNameMembers = wordSet(
	"name", "key", "field", "variable", "var", "param", "parameter", "header", "property",
	"attribute", "setting", "option", "kind", "type", "keyname", "fieldname", "headername",
	"variablename", "propertyname", "attributename", "settingname", "optionname",
	"parameterkey", "parametername",
)

// redactNameFirst holds the lower-cased first bytes of redactNameMembers, a cheap filter.
var redactNameFirst = func() (t [256]bool) {
	for m := range redactNameMembers {
		t[m[0]] = true
	}
	return t
}()

// redactValueMembers are the members (normalised like allow-listed keys) holding the value of a
// name/value structure; they are redacted when a name member names a sensitive key.
var redactValueMembers = wordSet(
	"value", "values", "val", "data", "stringdata", "content", "contents", "text",
	"parametervalue", "stringvalue", "secretstring", "secretvalue", "binarydata",
)

// redactMaxNamedMembers bounds the size of the objects checked as name/value structures.
const redactMaxNamedMembers = 16

// namesSecret reports whether m is a name/value structure whose name member (redactNameMembers)
// holds a string naming a sensitive key: a key-like string without white space, at most 256
// bytes long, for which Sensitive is true. Its value members (redactValueMembers) must then be
// redacted.
func (r *Redactor) namesSecret(m map[string]any) bool {
	return redactNamesSecret(r, m, func(v any) (string, bool) { s, ok := v.(string); return s, ok })
}

// redactNamesSecret is namesSecret for maps of any value type; str returns a value's string.
func redactNamesSecret[V any](r *Redactor, m map[string]V, str func(V) (string, bool)) bool {
	if len(m) < 2 || len(m) > redactMaxNamedMembers {
		return false
	}
	for k, v := range m {
		if redactNamesSecretKey(k) {
			if s, ok := str(v); ok && r.namesSecretValue(s) {
				return true
			}
		}
	}
	return false
}

// namesSecretPairs is namesSecret of the map whose members are pairs.
func (r *Redactor) namesSecretPairs(pairs []encodePair) bool {
	if len(pairs) < 2 || len(pairs) > redactMaxNamedMembers {
		return false
	}
	for _, p := range pairs {
		if redactNamesSecretKey(p.key) {
			if s, ok := p.val.(string); ok && r.namesSecretValue(s) {
				return true
			}
		}
	}
	return false
}

// redactNamesSecretKey reports whether namesSecret looks at the value under k: k names the name
// member of a name/value structure.
func redactNamesSecretKey(k string) bool {
	var buf [32]byte
	if len(k) < 3 || len(k) > len(buf) || !redactNameFirst[k[0]|0x20] {
		return false
	}
	_, ok := redactNameMembers[string(redactNorm(buf[:0], k))]
	return ok
}

// namesSecretValue reports whether s, the value of a name member, names a secret for namesSecret.
func (r *Redactor) namesSecretValue(s string) bool {
	return len(s) <= 256 && strings.IndexFunc(s, unicode.IsSpace) < 0 && r.Sensitive(s)
}

// redactValueMember reports whether k names the value member of a name/value structure.
func redactValueMember(k string) bool {
	var buf [32]byte
	if len(k) > len(buf) {
		return false
	}
	_, ok := redactValueMembers[string(redactNorm(buf[:0], k))]
	return ok
}
