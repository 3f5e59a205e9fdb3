package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Redacted replaces a secret value.
const Redacted = "[REDACTED]"

// redactMaxDepth bounds how deep Value descends, so that hostile input cannot exhaust the stack
// or the CPU; deeper content is replaced by redactTooDeep.
const redactMaxDepth = 64

const redactTooDeep = "[too deep]"

// redactMaxQuotedKey bounds how far Text looks back for the opening quote of a quoted key.
const redactMaxQuotedKey = 1024

// Redactor removes secrets from audit data before it is stored: values under sensitive keys
// (see Sensitive), values that are secrets by their shape wherever they appear (see Value),
// credentials in free text, keys that carry secrets, URLs, paths and bodies. It also sanitises
// what PostgreSQL would reject in text and jsonb (NUL bytes, invalid UTF-8, NaN and infinite
// numbers).
//
// A Redactor's rules are fixed at construction and it is safe for concurrent use; it remembers
// Sensitive's verdicts on up to 1024 keys of up to 64 bytes. Its methods never modify their
// arguments: they return copies. A nil *Redactor, and the zero Redactor, behave like
// NewRedactor(nil, nil).
//
// Keys are matched by their words, so that ssn matches user_ssn and SSN but not classname, and
// token_count or password_changed_at, which name properties of a secret, are kept. Use the allow
// list of NewRedactor for keys that still match by accident.
type Redactor struct {
	patterns []redactPattern      // compiled patterns, deduplicated, sorted
	last     [256][]redactPattern // patterns by their last byte
	first    [256][]string        // pattern texts by their first byte
	starts   *[1 << 10]uint64     // bit a<<8|b set when a pattern begins with the bytes a, b
	minLen   int                  // length of the shortest pattern
	allow    map[string]struct{}  // normalised keys exempt from redaction
	verdicts *redactVerdicts      // Sensitive's verdicts on keys seen before
}

// Sanitize returns s without NUL bytes and with invalid UTF-8 replaced by U+FFFD, which
// PostgreSQL requires of text and jsonb values. It returns s itself when s is already clean.
func Sanitize(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}

// Value returns a redacted, sanitised deep copy of v.
//
// Maps, slices, JSON documents (json.RawMessage, []byte holding JSON, strings holding a JSON
// object or array) and absolute URLs are walked: values under sensitive keys (see Sensitive)
// become Redacted (nil stays nil), URL passwords, sensitive query parameters and token-like path
// segments are redacted, and other strings that look like they may carry a credential go
// through Text. Other types (structs, pointers, typed maps and slices) are converted through
// encoding/json first; a value encoding/json cannot encode becomes the string
// "[unencodable: <type>]". Numbers, bools and time.Time are kept; NaN and infinities become the
// strings "NaN", "+Inf" and "-Inf". Content nested deeper than 64 levels becomes "[too deep]".
// The result can always be encoded with encoding/json.
//
// Values are also judged by their shape, under any key: a string that is a JWT, a private key
// PEM block (also base64-encoded), a credential with a well-known prefix (AWS AKIA/ASIA key ids,
// GitHub ghp_/gho_/ghu_/ghs_/ghr_/github_pat_, GitLab glpat-, Slack xox?-, Stripe sk_/rk_
// live/test and whsec_, Google AIza/ya29./GOCSPX-, OpenAI and Anthropic sk-, npm, PyPI, Hugging
// Face, Shopify, DigitalOcean, Databricks, Vault, SendGrid, age) or a card number (13 to 19
// digits, optionally grouped by spaces or dashes, passing the Luhn check and starting with the
// issuer prefix of a card scheme for that length) becomes Redacted; such a secret inside a
// longer string is replaced in place, the rest of the text kept. Integers and JSON numbers that
// are card numbers become Redacted too.
//
// Keys are scrubbed like values: a map key (also of query, form and header maps and of diffs)
// that is itself a secret by its shape, or that carries one ("password=hunter2" or a JSON
// document parsed as a form key; a random token as a query key without a value) is not stored:
// its entry moves to the placeholder key "[REDACTED KEY n]", n counting from 1 in the order of
// the original keys, with its value redacted whole.
//
// An object of 2 to 16 members that is a name/value structure is judged by the name it carries:
// when a name member (name, key, field, variable, var, param, parameter, header, property,
// attribute, setting, option, kind, type, the same followed by "name" such as keyName or
// OptionName, and ParameterKey; compared lower-cased without '-', '_' and '.') holds a key-like
// string (no white space, at most 256 bytes) that Sensitive matches, its value members (value,
// values, val, data, stringData, binaryData, content, contents, text, ParameterValue,
// StringValue, SecretString, SecretValue) become Redacted: {"name":"DB_PASSWORD","value":"..."},
// Kubernetes env entries, AWS Parameter Store parameters, HAR header lists, Keycloak
// credentials ({"type":"password","value":"..."}), {"kind":"Secret","data":{...}}.
func (r *Redactor) Value(v any) any {
	return r.rules().walk(v, 0)
}

// Map returns a redacted, sanitised deep copy of m (see Value); nil for nil.
func (r *Redactor) Map(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return r.rules().walkMap(m, 0)
}

// Diff returns a redacted copy of d. A sensitive field keeps its entry, so that the diff still
// shows that it changed, but both sides become Redacted (a nil side stays nil). The values of
// other fields are redacted as by Value. It returns nil for nil.
func (r *Redactor) Diff(d map[string]Change) map[string]Change {
	if d == nil {
		return nil
	}
	r = r.rules()
	out := make(map[string]Change, len(d))
	var bad []redactKeyed[Change]
	lose := redactLosers(d)
	for k, c := range d {
		if lose[k] {
			continue
		}
		k = Sanitize(k)
		if r.keySecret(k, false, 1) {
			bad = append(bad, redactKeyed[Change]{k, Change{From: redactMask(c.From), To: redactMask(c.To)}})
			continue
		}
		if r.Sensitive(k) {
			out[k] = Change{From: redactMask(c.From), To: redactMask(c.To)}
			continue
		}
		out[k] = Change{From: r.walk(c.From, 1), To: r.walk(c.To, 1)}
	}
	if bad != nil {
		redactPlaceKeys(out, bad)
	}
	return out
}

// Values returns a redacted copy of query parameters or form values: every value of a sensitive
// key becomes Redacted, and so does the value member of a name/value pair whose name is
// sensitive (name=DB_PASSWORD&value=...), other values are redacted as strings by Value, and keys carrying a
// secret (a bare token as the whole query string) are replaced as described on Value. It returns
// nil for nil.
func (r *Redactor) Values(v map[string][]string) map[string][]string {
	if v == nil {
		return nil
	}
	return r.rules().walkValues(v, 0)
}

// Header returns a redacted copy of h. Header names are matched like keys, so Authorization,
// Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key and X-Auth-Token are redacted. It returns nil
// for nil.
func (r *Redactor) Header(h http.Header) map[string][]string {
	if h == nil {
		return nil
	}
	return r.rules().walkValues(h, 0)
}

// Record returns a redacted and sanitised copy of rec, ready to be stored: a shallow copy of the
// struct with new maps. Before, After and Metadata are redacted by Map, Diff by Diff, Query by
// Values (when Query is nil, the query SetRawQuery gave is parsed first); bodies are converted by Body to a JSON document (ContentType "application/json", Size
// kept); UserAgent goes through Text; every string field is sanitised. rec is not modified. It
// returns nil for nil.
//
// Path is redacted by segment, Route being left as it is: a segment bound by the route template
// (Gin ":name" and "*name", net/http "{name}" and "{name...}") to a parameter whose name is
// sensitive ("/reset/:token") becomes Redacted, a catch-all parameter's whole rest becoming one
// Redacted; a literal segment of the template is kept; any other segment becomes Redacted when
// it is a secret by its shape (see Value) or token-like: 20 or more base64url characters mixing
// upper case, lower case and digits that change class in at least a third of their characters,
// as random tokens do. UUIDs, numbers, hex digests, ULIDs, slugs, camelCase names and ids with a
// lower-case type prefix (cus_..., pi_...) are kept. A query string inside Path is redacted like
// a query.
func (r *Redactor) Record(rec *Record) *Record {
	if rec == nil {
		return nil
	}
	r = r.rules()
	out := r.recordFields(rec)
	out.Before = r.Map(rec.Before)
	out.After = r.Map(rec.After)
	out.Metadata = r.Map(rec.Metadata)
	out.Diff = r.Diff(rec.Diff)
	return &out
}

// recordFields returns the copy Record makes of rec, less its maps of values: Before, After,
// Metadata and Diff are nil, for the caller to redact (the row encoder redacts them while it
// encodes them).
func (r *Redactor) recordFields(rec *Record) Record {
	out := *rec
	out.Before, out.After, out.Metadata, out.Diff = nil, nil, nil, nil
	out.Kind = Kind(Sanitize(string(rec.Kind)))
	out.Action = Sanitize(rec.Action)
	out.Severity = Severity(Sanitize(string(rec.Severity)))
	out.Tenant.ID = Sanitize(rec.Tenant.ID)
	out.Tenant.Slug = Sanitize(rec.Tenant.Slug)
	out.Actor.ID = Sanitize(rec.Actor.ID)
	out.Actor.Type = ActorType(Sanitize(string(rec.Actor.Type)))
	out.Actor.Email = Sanitize(rec.Actor.Email)
	out.Actor.Auth = Sanitize(rec.Actor.Auth)
	out.ResourceType = Sanitize(rec.ResourceType)
	out.ResourceID = Sanitize(rec.ResourceID)
	out.RequestID = Sanitize(rec.RequestID)
	out.Method = Sanitize(rec.Method)
	out.Route = Sanitize(rec.Route)
	out.Path = Sanitize(rec.Path)
	if out.Path == "" {
		// Nothing to redact (the records of row changes have no path).
	} else if p, ok := r.path(out.Path, out.Route); ok {
		out.Path = p
	}
	out.UserAgent = r.Text(rec.UserAgent)
	out.Query = r.Values(rec.queryValues())
	out.rawQuery = ""
	out.RequestBody = r.storedBody(rec.RequestBody)
	out.ResponseBody = r.storedBody(rec.ResponseBody)
	return out
}

func (r *Redactor) storedBody(b *Body) *Body {
	if b == nil {
		return nil
	}
	return &Body{ContentType: "application/json", Data: r.Body(b), Size: b.Size}
}

// Body returns the JSON document to store for a captured body, redacted; nil for nil. The format
// is decided from the bytes first, the declared content type being only a hint (a JSON body sent
// as a form is stored as JSON). Every parsed format is walked like Value, so keys and values are
// both judged.
//
//   - JSON (optionally after a byte order mark and white space, an object or array that parses;
//     a scalar only when declared JSON) becomes the redacted JSON value.
//   - A URL-encoded form ('&'-joined k=v pairs without raw white space) becomes an object of its
//     redacted fields: a field given once maps to a string, a repeated field to an array. Keys
//     are redacted too; a form whose only key is a JSON document with no value is that document.
//   - Multipart (a first line "--<boundary>" followed by part headers, whatever the declared type
//     or boundary parameter) becomes {"content_type", "size", "format": "multipart", "parts":
//     [{"name", "filename", "content_type", "size", "value"}]}: form fields with their values
//     redacted by name and shape, files by size only ("omitted": "file").
//   - XML (a declaration or one root element, well-formed) becomes {"content_type", "size",
//     "truncated", "format": "xml", "text"}: the XML text with the content of sensitive elements,
//     of entries named by a sensitive name or key attribute (<entry key="db.password">) and of
//     value elements beside a sensitive <name>, and the values of sensitive attributes and of the
//     value attribute of such entries, replaced by Redacted.
//   - YAML (a mapping or sequence at the top; any document when declared YAML) becomes
//     {"content_type", "size", "truncated", "format": "yaml", "value"} with the redacted
//     structure; aliases are not expanded.
//   - Other text becomes {"content_type", "size", "truncated", "text"} redacted by Text.
//   - A declared binary type, or bytes without a content type that are not UTF-8:
//     {"content_type", "size", "omitted": "binary"}.
//   - A compressed body (Encoding set): {"content_type", "content_encoding", "size", "omitted":
//     "encoded"}.
//   - A body that was not captured (NotCaptured set): {"content_type", "size", "omitted":
//     "not_captured", "reason"}; a declared binary type stays "omitted": "binary".
//   - A declared JSON, form, XML, YAML or multipart body that parses as none of these:
//     {"content_type", "size", "omitted": "unparsed"}.
//
// A body truncated at the capture cap is kept only where its complete part can be parsed
// reliably, and then says "truncated": true: JSON keeps its complete tokens (containers closed
// where the data ends; a key whose value was cut, and a number at the very end, become
// "[truncated]"), a form its complete pairs (the last one is left out), multipart its complete
// parts (the cut one by name and size, marked truncated), YAML its complete lines, text its text
// with its last token, which may have been cut and so hide its shape, replaced by "[truncated]".
// Truncated XML, a truncated body of a declared structured type that none of these parse, and a
// truncated body with no byte kept are stored as {"content_type", "size", "truncated": true,
// "omitted": "truncated"}.
//
// Text holding URL-encoded pairs (a form broken by raw white space) is judged and stored decoded,
// with the whole value of a sensitive key hidden. A YAML parse that keeps something Text would
// hide in the same bytes is not trusted: the body is stored as text. The raw text of a body is
// never stored unredacted.
func (r *Redactor) Body(b *Body) []byte {
	if b == nil {
		return nil
	}
	if b.Encoding != "" {
		return redactEncodeJSON(redactBodyDoc{ContentType: Sanitize(b.ContentType),
			ContentEncoding: Sanitize(b.Encoding), Size: b.Size, Omitted: bodyOmittedEncoded})
	}
	return r.rules().body(b)
}

// formObject converts form values to a JSON object: one value as a string, several as an array.
// Keys are judged like values too (a key may be a JSON document, a token or text), and keys that
// become equal once redacted share one array.
func (r *Redactor) formObject(vals url.Values) map[string]any {
	out := make(map[string]any, len(vals))
	for k, vs := range r.walkValues(vals, 0) {
		if rk, changed := r.str(k, 1); changed {
			k = rk
		}
		if prev, ok := out[k]; ok {
			switch p := prev.(type) {
			case string:
				vs = append([]string{p}, vs...)
			case []string:
				vs = append(slices.Clone(p), vs...)
			}
		}
		if len(vs) == 1 {
			out[k] = vs[0]
		} else {
			out[k] = vs
		}
	}
	return out
}

// redactMediaType returns the lower-cased media type of a Content-Type header, without parameters.
func redactMediaType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// redactTextLike reports whether a body of media type mt holding data is text.
func redactTextLike(mt string, data []byte, truncated bool) bool {
	switch {
	case mt == "":
		if utf8.Valid(data) {
			return true
		}
		// A truncated body may end in the middle of a character.
		for k := 1; truncated && k < utf8.UTFMax && k <= len(data); k++ {
			if !utf8.FullRune(data[len(data)-k:]) && utf8.Valid(data[:len(data)-k]) {
				return true
			}
		}
		return false
	case strings.HasPrefix(mt, "text/"),
		strings.Contains(mt, "json"),
		strings.Contains(mt, "xml"),
		strings.Contains(mt, "javascript"),
		strings.Contains(mt, "yaml"),
		strings.Contains(mt, "graphql"),
		strings.Contains(mt, "csv"),
		mt == "application/x-www-form-urlencoded":
		return true
	}
	return false
}

// redactMask hides a non-nil value.
func redactMask(v any) any {
	if v == nil {
		return nil
	}
	return Redacted
}

// walk returns the redacted, sanitised copy of v found depth levels below the top.
func (r *Redactor) walk(v any, depth int) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if s, changed := r.str(x, depth); changed {
			return s
		}
		return v
	case bool, int8, int16, int32, uint8, uint16, uint32, uintptr:
		return v
	case int, int64, uint, uint64:
		return redactIntCard(x)
	case json.Number:
		if redactValidNumber(string(x)) {
			if redactIsCardNumber(string(x)) {
				return Redacted
			}
			return v
		}
		s, _ := r.str(string(x), depth)
		return s
	case float64:
		return redactFloat(x, v)
	case float32:
		return redactFloat(float64(x), v)
	case time.Time:
		return redactTime(x, v)
	case map[string]any:
		if depth >= redactMaxDepth {
			return redactTooDeep
		}
		if x == nil {
			return v
		}
		return r.walkMap(x, depth)
	case []any:
		if depth >= redactMaxDepth {
			return redactTooDeep
		}
		if x == nil {
			return v
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.walk(e, depth+1)
		}
		return out
	case map[string]string:
		if depth >= redactMaxDepth {
			return redactTooDeep
		}
		if x == nil {
			return v
		}
		out := make(map[string]string, len(x))
		var bad []redactKeyed[string]
		named := redactNamesSecret(r, x, func(s string) (string, bool) { return s, true })
		for k, s := range x {
			k = Sanitize(k)
			if r.keySecret(k, false, depth+1) {
				bad = append(bad, redactKeyed[string]{k, Redacted})
				continue
			}
			if r.Sensitive(k) || named && redactValueMember(k) {
				out[k] = Redacted
				continue
			}
			out[k], _ = r.str(s, depth+1)
		}
		if bad != nil {
			redactPlaceKeys(out, bad)
		}
		return out
	case []string:
		if depth >= redactMaxDepth {
			return redactTooDeep
		}
		if x == nil {
			return v
		}
		out := make([]string, len(x))
		for i, s := range x {
			out[i], _ = r.str(s, depth+1)
		}
		return out
	case []map[string]any:
		if depth >= redactMaxDepth {
			return redactTooDeep
		}
		if x == nil {
			return v
		}
		if depth+1 >= redactMaxDepth {
			return redactTooDeep
		}
		out := make([]map[string]any, len(x))
		for i, m := range x {
			if m != nil {
				out[i] = r.walkMap(m, depth+1)
			}
		}
		return out
	case map[string][]string:
		return r.walkValuesAny(x, depth)
	case url.Values:
		return r.walkValuesAny(x, depth)
	case http.Header:
		return r.walkValuesAny(x, depth)
	case json.RawMessage:
		return r.rawJSON(x, depth)
	case []byte:
		return r.rawJSON(x, depth)
	case *Body:
		// Through encoding/json its data would be stored as base64, unredacted.
		if x == nil {
			return nil
		}
		return r.rawJSON(r.Body(x), depth)
	case Body:
		return r.rawJSON(r.Body(&x), depth)
	}
	return r.viaJSON(v, depth)
}

// redactLosers returns the keys of m whose entry is left out because another key of m sanitizes
// to the same text, so that the entry kept does not depend on the order of a map's iteration: a
// key that is already clean wins, and among keys that are not, the smallest. It returns nil when no
// two keys collide.
func redactLosers[V any](m map[string]V) map[string]bool {
	var win map[string]string
	var lose map[string]bool
	for k0 := range m {
		if redactCleanKey(k0) {
			continue
		}
		k := Sanitize(k0)
		if _, clean := m[k]; clean {
			if lose == nil {
				lose = make(map[string]bool)
			}
			lose[k0] = true
			continue
		}
		w, ok := win[k]
		switch {
		case !ok:
			if win == nil {
				win = make(map[string]string)
			}
			win[k] = k0
			continue
		case k0 < w:
			win[k], k0 = k0, w
		}
		if lose == nil {
			lose = make(map[string]bool)
		}
		lose[k0] = true
	}
	return lose
}

func (r *Redactor) walkMap(m map[string]any, depth int) map[string]any {
	out := make(map[string]any, len(m))
	named := r.namesSecret(m)
	var bad []redactKeyed[any]
	lose := redactLosers(m)
	for k, e := range m {
		if lose[k] {
			continue
		}
		k = Sanitize(k)
		if r.keySecret(k, false, depth+1) {
			bad = append(bad, redactKeyed[any]{k, redactMask(e)})
			continue
		}
		if r.Sensitive(k) || named && redactValueMember(k) {
			out[k] = redactMask(e)
			continue
		}
		out[k] = r.walk(e, depth+1)
	}
	if bad != nil {
		redactPlaceKeys(out, bad)
	}
	return out
}

func (r *Redactor) walkValuesAny(v map[string][]string, depth int) any {
	if depth >= redactMaxDepth {
		return redactTooDeep
	}
	if v == nil {
		return map[string][]string(nil)
	}
	return r.walkValues(v, depth)
}

func (r *Redactor) walkValues(v map[string][]string, depth int) map[string][]string {
	out := make(map[string][]string, len(v))
	// name=DB_PASSWORD&value=... in a query or form is a name/value pair like its JSON form.
	named := redactNamesSecret(r, v, func(vs []string) (string, bool) {
		if len(vs) == 1 {
			return vs[0], true
		}
		return "", false
	})
	var bad []redactKeyed[[]string]
	lose := redactLosers(v)
	for k, vs := range v {
		if lose[k] {
			continue
		}
		k = Sanitize(k)
		secretKey := r.keySecret(k, redactBareValues(vs), depth+1)
		if vs == nil && !secretKey {
			out[k] = nil
			continue
		}
		c := make([]string, len(vs))
		if secretKey {
			for i := range c {
				c[i] = Redacted
			}
			bad = append(bad, redactKeyed[[]string]{k, c})
			continue
		}
		if r.Sensitive(k) || named && redactValueMember(k) {
			for i := range c {
				c[i] = Redacted
			}
		} else {
			for i, s := range vs {
				c[i], _ = r.str(s, depth+1)
			}
		}
		out[k] = c
	}
	if bad != nil {
		redactPlaceKeys(out, bad)
	}
	return out
}

// redactBareValues reports whether a query or form key has no value ("?token" or "?token="),
// as when a bare token is the whole query string.
func redactBareValues(vs []string) bool {
	for _, s := range vs {
		if s != "" {
			return false
		}
	}
	return true
}

// rawJSON decodes and redacts a JSON document held in bytes. Bytes that are not JSON are treated
// as text when they are UTF-8, and summarised otherwise.
func (r *Redactor) rawJSON(b []byte, depth int) any {
	if b == nil {
		return nil
	}
	if json.Valid(b) {
		if depth >= redactMaxDepth {
			return redactTooDeep
		}
		if v, err := redactDecodeJSON(b); err == nil {
			return r.walk(v, depth)
		}
	}
	if utf8.Valid(b) {
		s, _ := r.str(string(b), depth)
		return s
	}
	return fmt.Sprintf("[binary: %d bytes]", len(b))
}

// viaJSON redacts a value of a type walk does not know by converting it through encoding/json.
func (r *Redactor) viaJSON(v any, depth int) (out any) {
	defer func() {
		// A MarshalJSON method may panic; bad input must not crash the caller.
		if recover() != nil {
			out = redactUnencodable(v)
		}
	}()
	b, err := json.Marshal(v)
	if err != nil {
		return redactUnencodable(v)
	}
	x, err := redactDecodeJSON(b)
	if err != nil {
		return redactUnencodable(v)
	}
	return r.walk(x, depth)
}

func redactUnencodable(v any) string { return fmt.Sprintf("[unencodable: %T]", v) }

// str redacts and sanitises a string and reports whether it changed.
func (r *Redactor) str(s string, depth int) (string, bool) {
	clean := Sanitize(s)
	changed := len(clean) != len(s) || clean != s
	if redactLooksJSON(clean) && json.Valid([]byte(clean)) {
		if depth >= redactMaxDepth {
			return redactTooDeep, true
		}
		if v, err := redactDecodeJSON([]byte(clean)); err == nil {
			return string(redactEncodeJSON(r.walk(v, depth+1))), true
		}
	}
	if redactIsURL(clean) {
		if u, ok := r.url(clean, depth); ok {
			clean, changed = u, true
		}
	}
	var t string
	if r.mayLeak(clean) {
		t = r.text(clean)
	} else if h := redactShapeHint(clean); h != 0 {
		// Nothing but a shape can be hidden: skip the text detectors.
		t = redactApply(clean, redactShapes(clean, nil, h))
	} else {
		return clean, changed
	}
	if t != clean {
		if strings.TrimSpace(t) == Redacted {
			// The string is a secret (a JWT, a key, a card number), not text holding one.
			return Redacted, true
		}
		return t, true
	}
	return clean, changed
}

// redactLooksJSON reports whether s, trimmed, is delimited like a JSON object or array.
func redactLooksJSON(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) < 2 {
		return false
	}
	f, l := s[0], s[len(s)-1]
	return (f == '{' && l == '}') || (f == '[' && l == ']')
}

// redactIsURL reports whether s is one absolute URL ("scheme://...") without white space.
func redactIsURL(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for j := 0; j < i; j++ {
		c := s[j]
		alpha := 'a' <= c|0x20 && c|0x20 <= 'z'
		if !alpha && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// url redacts the password of an absolute URL's userinfo and its sensitive query and fragment
// parameters. It reports whether anything changed.
func (r *Redactor) url(s string, depth int) (string, bool) {
	i := strings.Index(s, "://") + len("://")
	rest := s[i:]
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	auth := rest[:authEnd]
	changed := false
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		if user, pass, ok := strings.Cut(auth[:at], ":"); ok && pass != "" {
			auth = user + ":" + Redacted + auth[at:]
			changed = true
		}
	}
	tail := rest[authEnd:]
	path, frag, hasFrag := strings.Cut(tail, "#")
	path, query, hasQuery := strings.Cut(path, "?")
	if p, ok := r.path(path, ""); ok {
		path, changed = p, true
	}
	if hasQuery {
		if q, ok := r.query(query, depth); ok {
			query, changed = q, true
		}
	}
	if hasFrag && strings.Contains(frag, "=") {
		if q, ok := r.query(frag, depth); ok {
			frag, changed = q, true
		}
	}
	if !changed {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s) + len(Redacted))
	b.WriteString(s[:i])
	b.WriteString(auth)
	b.WriteString(path)
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(query)
	}
	if hasFrag {
		b.WriteByte('#')
		b.WriteString(frag)
	}
	return b.String(), true
}

// query redacts a raw URL query ("a=1&token=x"), keeping its order and encoding where nothing
// changes. It reports whether anything changed.
func (r *Redactor) query(raw string, depth int) (string, bool) {
	parts := strings.Split(raw, "&")
	changed := false
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			key = k
		}
		if r.keySecret(Sanitize(key), v == "", depth+1) {
			// A key that is a secret, such as a bare token as the whole query string.
			parts[i] = Redacted
			if ok {
				parts[i] += "=" + Redacted
			}
			changed = true
			continue
		}
		if !ok || v == "" {
			continue
		}
		if r.Sensitive(key) {
			parts[i] = k + "=" + Redacted
			changed = true
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			// Not valid escaping: the value is judged as it is written, and kept so.
			if nv, ok := r.str(v, depth+1); ok && nv != v {
				parts[i] = k + "=" + nv
				changed = true
			}
			continue
		}
		if nv, ok := r.str(val, depth+1); ok && nv != val {
			parts[i] = k + "=" + strings.ReplaceAll(url.QueryEscape(nv), url.QueryEscape(Redacted), Redacted)
			changed = true
		}
	}
	if !changed {
		return raw, false
	}
	return strings.Join(parts, "&"), true
}

// mayLeak is a cheap filter for strings that Text could change.
func (r *Redactor) mayLeak(s string) bool {
	if strings.Contains(s, "://") || redactMentionsAuthScheme(s) {
		return true
	}
	// The blank is for secrets told in sentences (see prose). strings.IndexByte, unlike
	// ContainsAny, scans many bytes at a time.
	if strings.IndexByte(s, ' ') < 0 && strings.IndexByte(s, ':') < 0 && strings.IndexByte(s, '=') < 0 &&
		strings.IndexByte(s, '<') < 0 {
		return false
	}
	var buf [256]byte
	return r.containsPattern(redactLetters(buf[:0], s))
}

// redactMentionsAuthScheme reports whether s contains "bearer" or "basic" in any case.
func redactMentionsAuthScheme(s string) bool {
	// Both words begin with b or B, the only bytes c with c|0x20 == 'b'.
	return redactMentionsAuthSchemeAt(s, 'b') || redactMentionsAuthSchemeAt(s, 'B')
}

// redactMentionsAuthSchemeAt reports whether "bearer" or "basic", in any case, begins at one of
// the bytes b of s.
func redactMentionsAuthSchemeAt(s string, b byte) bool {
	for i := 0; i+5 <= len(s); i++ {
		j := strings.IndexByte(s[i:len(s)-4], b)
		if j < 0 {
			return false
		}
		i += j
		if len(s)-i >= 6 && strings.EqualFold(s[i:i+6], "bearer") || strings.EqualFold(s[i:i+5], "basic") {
			return true
		}
	}
	return false
}

// redactFloat keeps a finite float and spells out the others, which JSON cannot hold.
func redactFloat(f float64, v any) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return v
}

// redactTime keeps a time unless encoding/json cannot encode it (a year outside 0-9999, an
// offset of a day or more); then it becomes its string form.
func redactTime(t time.Time, v any) any {
	_, off := t.Zone()
	if y := t.Year(); y >= 0 && y <= 9999 && off > -24*3600 && off < 24*3600 {
		return v
	}
	if _, err := t.MarshalJSON(); err == nil {
		return v
	}
	return Sanitize(t.String())
}

// redactValidNumber reports whether s is a JSON number, which json.Number must hold to be encoded.
func redactValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		for s != "" && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for s != "" && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for s != "" && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

// redactDecodeJSON decodes one JSON document, keeping numbers as json.Number.
func redactDecodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// redactEncodeJSON encodes a redacted value, which walk guarantees to be encodable.
func redactEncodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Unreachable for walked values; store a marker rather than fail the record.
		return []byte(`"[unencodable]"`)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

var (
	// redactUserinfo matches a URL's userinfo in free text; group 1 is the password.
	redactUserinfo = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:([^\s/]*)@`)
	// redactXMLElement matches an XML element's name and its text content.
	redactXMLElement = regexp.MustCompile(`(?s)<([A-Za-z_][-\w.:]*)(?:\s[^<>]*)?>(<!\[CDATA\[.*?\]\]>|[^<]*)`)
)

// Text redacts credentials in free text (log lines, truncated or non-JSON bodies, error messages)
// and sanitises it. It redacts the value after a sensitive key in
//
//   - key=value pairs separated by '&', ';', ',' or white space (also key="quoted value"),
//   - "key": "value" and "key": 123 (JSON-like text, also truncated JSON and JSON escaped inside
//     a string; an object or array value is redacted whole),
//   - key: value lines (the rest of the line is redacted),
//   - <key>value</key> XML elements (up to the closing tag, nested elements included),
//   - name/value entries that name a sensitive key: {"name": "DB_PASSWORD", "value": ...} in
//     JSON-like text, "- name: DB_PASSWORD" / "value: ..." lines, <entry key="db.password">,
//     <property name="password" value="...">, and <value> beside <name>DB_PASSWORD</name>,
//   - everything indented under a sensitive "key:" line (YAML lists, nested mappings and block
//     scalars such as "private_key: |" in text that is not parsed as YAML),
//   - .netrc text ("machine h login u password p", also over several lines and "default"): the
//     token after password and account,
//   - .pgpass lines (host:port:database:user:password): the password field,
//   - secrets told in sentences: the word after a sensitive label of one to three words and
//     "is", "was", "are", "were", "is now" or "set/changed/reset/updated to" ("my password is
//     hunter2"), unless that word describes the secret instead ("the password is required"),
//
// and credentials after "Bearer " or "Basic " anywhere, passwords in URLs
// (scheme://user:password@host), and secrets recognised by their shape (JWTs, private key PEM
// blocks, credentials with a well-known prefix, card numbers; see Value) wherever they stand.
// Keys are matched as by Sensitive.
func (r *Redactor) Text(s string) string {
	return r.rules().text(Sanitize(s))
}

func (r *Redactor) text(s string) string {
	return redactApply(s, r.textSpans(s))
}

// redactApply returns s with each of spans, merged where they overlap, replaced by Redacted.
func redactApply(s string, spans []redactSpan) string {
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b redactSpan) int { return a.start - b.start })
	out := make([]byte, 0, len(s)+len(Redacted))
	last := 0 // s[:last] is done
	for i := 0; i < len(spans); {
		start, end := spans[i].start, spans[i].end
		for i++; i < len(spans) && spans[i].start <= end; i++ {
			end = max(end, spans[i].end)
		}
		out = append(out, s[last:start]...)
		out = append(out, Redacted...)
		last = end
	}
	return string(append(out, s[last:]...))
}

// textSpans returns the spans of s that text hides, unsorted and possibly overlapping.
func (r *Redactor) textSpans(s string) []redactSpan {
	// Every detector reads the original text and reports spans to hide, so that what one of
	// them replaces cannot hide a secret from another.
	spans := r.pairs(s, nil)
	spans = r.lineFormats(s, spans)
	if strings.IndexByte(s, ' ') >= 0 {
		spans = r.prose(s, spans)
	}
	if strings.IndexByte(s, '<') >= 0 {
		spans = r.xml(s, spans)
	}
	if strings.Contains(s, "://") {
		for _, m := range redactUserinfo.FindAllStringSubmatchIndex(s, -1) {
			if m[3] > m[2] {
				spans = append(spans, redactSpan{m[2], m[3]})
			}
		}
	}
	if redactMentionsAuthScheme(s) {
		spans = redactAuthSchemes(s, spans)
	}
	if h := redactShapeHint(s); h != 0 {
		spans = redactShapes(s, spans, h)
	}
	return spans
}

// redactSpan is a part of a text to replace by Redacted.
type redactSpan struct{ start, end int }

// pairs appends the spans of the values of key=value and key: value pairs with sensitive keys.
func (r *Redactor) pairs(s string, spans []redactSpan) []redactSpan {
	covered := 0 // end of the last value found
	for i := 0; i < len(s); {
		j := strings.IndexAny(s[i:], "=:")
		if j < 0 {
			break
		}
		j += i
		sep := s[j]
		vstart := j + 1
		if sep == '=' && vstart < len(s) && s[vstart] == '>' { // key => value
			vstart++
		}
		sensitive, quoted := r.keyBefore(s, j, sep)
		if !sensitive {
			i = j + 1
			continue
		}
		// The scan goes on inside the value, which can hold another pair ("token=Cookie: x"); a
		// value that starts inside one already hidden is not measured again, which keeps the
		// scan linear.
		if vstart >= covered {
			if vs, ve := redactValueSpan(s, vstart, sep, quoted); ve > vs {
				spans = append(spans, redactSpan{vs, ve})
				covered = ve
			}
		}
		i = j + 1
	}
	return spans
}

// redactAuthSchemes appends the spans of the credentials after "Bearer" and "Basic" (in any case,
// followed by blanks), wherever they occur.
func redactAuthSchemes(s string, spans []redactSpan) []redactSpan {
	for i := 0; i < len(s); i++ {
		if s[i]|0x20 != 'b' {
			continue
		}
		var j int
		switch {
		case len(s)-i >= 6 && strings.EqualFold(s[i:i+6], "bearer"):
			j = i + 6
		case len(s)-i >= 5 && strings.EqualFold(s[i:i+5], "basic"):
			j = i + 5
		default:
			continue
		}
		k := j
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		e := k
		for e < len(s) && redactCredentialByte(s[e]) {
			e++
		}
		if k > j && e > k {
			spans = append(spans, redactSpan{k, e})
		}
	}
	return spans
}

// redactCredentialByte reports whether c may be part of a bearer token or basic credentials.
func redactCredentialByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
}

// keyBefore finds the key before the separator at s[j] and reports whether it is sensitive and
// whether it was quoted.
func (r *Redactor) keyBefore(s string, j int, sep byte) (sensitive, quoted bool) {
	k := j
	for k > 0 && (s[k-1] == ' ' || s[k-1] == '\t') {
		k--
	}
	if k == 0 {
		return false, false
	}
	if q := s[k-1]; q == '"' || q == '\'' {
		end := k - 1
		for end > 0 && s[end-1] == '\\' { // a quote escaped inside a JSON string: \"key\":
			end--
		}
		lo := max(end-redactMaxQuotedKey, 0)
		if o := strings.LastIndexByte(s[lo:end], q); o >= 0 {
			return r.Sensitive(s[lo+o+1 : end]), true
		}
		k = end
	}
	w := k
	for w > 0 && redactKeyByte(s[w-1]) {
		w--
	}
	if w == k {
		return false, false
	}
	if r.Sensitive(s[w:k]) {
		return true, false
	}
	if sep != ':' {
		return false, false
	}
	// "Credit card number: ..." - a label of up to three words.
	start := w
	for n := 0; n < 2; n++ {
		if start < 2 || (s[start-1] != ' ' && s[start-1] != '\t') || !redactKeyByte(s[start-2]) {
			break
		}
		p := start - 1
		for p > 0 && redactKeyByte(s[p-1]) {
			p--
		}
		start = p
	}
	return start < w && r.Sensitive(s[start:k]), false
}

// redactKeyByte reports whether c may be part of a key in free text.
func redactKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '[' || c == ']' || c == '%' || c >= utf8.RuneSelf
}

const (
	redactStopPair   = "&;, \t\r\n\"'<>"
	redactStopQuoted = "&;, \t\r\n\"'<>}]"
)

// redactValueSpan returns the bounds of the value that starts at or after s[v].
func redactValueSpan(s string, v int, sep byte, quotedKey bool) (start, end int) {
	for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
		v++
	}
	if v >= len(s) {
		return v, v
	}
	q := v
	for q < len(s) && s[q] == '\\' {
		q++
	}
	if q < len(s) && (s[q] == '"' || s[q] == '\'') {
		quote, start := s[q], q+1
		if q > v { // \"value\" inside a JSON string: up to the next quote, whatever escapes it
			e := strings.IndexByte(s[start:], quote)
			if e < 0 {
				return start, len(s)
			}
			e += start
			for e > start && s[e-1] == '\\' {
				e--
			}
			return start, e
		}
		for e := start; e < len(s); e++ {
			switch s[e] {
			case '\\':
				e++
			case quote:
				return start, e
			}
		}
		return start, len(s)
	}
	if s[v] == '{' || s[v] == '[' {
		return v, redactBracketEnd(s, v)
	}
	stop := redactStopPair
	switch {
	case sep == ':' && !quotedKey:
		stop = "\r\n"
	case quotedKey:
		stop = redactStopQuoted
	}
	if e := strings.IndexAny(s[v:], stop); e >= 0 {
		return v, v + e
	}
	return v, len(s)
}

// redactBracketEnd returns the end of the JSON-like object or array starting at s[v], or len(s)
// when it is not closed.
func redactBracketEnd(s string, v int) int {
	depth, inString := 0, false
	for i := v; i < len(s); i++ {
		c := s[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(s)
}

// xml appends the spans of the text content of XML elements with sensitive names.
//
// In text that is not well-formed XML, the content of a sensitive element is hidden up to its
// closing tag (or to the next tag when there is none), so that nested elements are hidden too,
// and name/value entries are judged by their name (see xmlEntries).
func (r *Redactor) xml(s string, spans []redactSpan) []redactSpan {
	closes := &redactCloseTags{s: s}
	covered := 0
	for _, m := range redactXMLElement.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[2]:m[3]]
		if m[4] < covered || !r.Sensitive(name) {
			continue
		}
		end := m[5]
		if c := closes.after(name, m[4]); c >= 0 {
			end = c
		}
		if end > m[4] {
			spans = append(spans, redactSpan{m[4], end})
			covered = end
		}
	}
	return r.xmlEntries(s, closes, spans)
}

// TagName is the struct tag the ORM integrations read: `audit:"-"` leaves a field out of the
// before and after images, `audit:"redact"` stores it as Redacted.
const TagName = "audit"

// FieldPolicy is what an audit struct tag asks for a field.
type FieldPolicy struct {
	Omit   bool // leave the field out entirely
	Redact bool // store Redacted instead of the value (a nil value stays nil)
}

// ErrInvalidTag is wrapped by the errors ParseTag returns.
var ErrInvalidTag = errors.New("invalid audit struct tag")

// ParseTag parses the value of an audit struct tag: comma-separated options, "-" (omit the
// field) and "redact" (mask it). An empty tag is the zero policy. An unknown or empty option is
// an error wrapping ErrInvalidTag that names it.
func ParseTag(tag string) (FieldPolicy, error) {
	var p FieldPolicy
	if strings.TrimSpace(tag) == "" {
		return p, nil
	}
	for _, opt := range strings.Split(tag, ",") {
		switch strings.TrimSpace(opt) {
		case "-":
			p.Omit = true
		case "redact":
			p.Redact = true
		case "":
			return FieldPolicy{}, fmt.Errorf("%w %q: empty option (want \"-\" or \"redact\")", ErrInvalidTag, tag)
		default:
			return FieldPolicy{}, fmt.Errorf("%w %q: unknown option %q (want \"-\" or \"redact\")", ErrInvalidTag, tag, strings.TrimSpace(opt))
		}
	}
	return p, nil
}
