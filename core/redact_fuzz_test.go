package core_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
)

// rdMarker is the prefix of the values planted under secret keys; none may survive redaction.
const rdMarker = "MARKER"

// rdSecretKeys are the keys the fuzz targets plant secrets under: every default pattern and
// spellings of them that must still match.
var rdSecretKeys = append(append([]string(nil), core.DefaultRedactFields...),
	"Pass_Word", "x-auth-token", "X-Api-Key", "newPassword", "client-secret", "credit.card",
	"Set-Cookie", "PRIVATE KEY", "user_ssn", "Card-Number", "passwd_old", "Authorization")

// rdSecrets returns a structure holding unique markers in every place Value must redact.
// Calling it twice with the same tag gives equal structures.
func rdSecrets(tag string) map[string]any {
	n := 0
	mk := func() string {
		n++
		return fmt.Sprintf("%s%s%dZ", rdMarker, tag, n)
	}
	m := map[string]any{}
	for _, k := range rdSecretKeys {
		m[k] = mk()
	}
	m["nested"] = map[string]any{
		"password": map[string]any{"inner": mk(), "list": []any{mk()}},
		"token":    []any{mk(), map[string]any{"x": mk()}},
	}
	m["raw"] = json.RawMessage(`{"token":"` + mk() + `","ok":1}`)
	m["bytes"] = []byte(`[{"apikey":"` + mk() + `"}]`)
	m["json_in_string"] = `{"secret":"` + mk() + `","inner":"{\"cvv\":\"` + mk() + `\"}"}`
	m["url"] = "https://user:" + mk() + "@example.com/p?access_token=" + mk() + "&x=1#id_token=" + mk()
	m["note"] = "login failed: password=" + mk() + ", retry"
	m["header_line"] = "Authorization: Bearer " + mk()
	m["bearer"] = "sent bearer " + mk()
	m["list"] = []any{map[string]any{"x-auth-token": mk()}, []any{map[string]any{"Cookie": mk()}}}
	m["strmap"] = map[string]string{"cookie": mk(), "ok": "fine"}
	m["strs"] = []string{`{"ssn":"` + mk() + `"}`, "token=" + mk()}
	m["maps"] = []map[string]any{{"privateKey": mk()}}
	m["values"] = map[string][]string{"client_secret": {mk(), mk()}}
	// Secrets recognised by their shape, under neutral keys, as keys and in name/value pairs.
	m["jwt"] = rdJWTPrefix + mk()
	m["pem"] = "-----BEGIN PRIVATE KEY-----\n" + mk() + "\n-----END PRIVATE KEY-----"
	m["github"] = "ghp_" + mk() + strings.Repeat("a", 30)
	m["ghp_"+mk()+strings.Repeat("b", 30)] = "under a key that is a token"
	m["note "+rdJWTPrefix+mk()] = 1
	m["env"] = []any{map[string]any{"name": "DB_PASSWORD", "value": mk()}}
	m["struct"] = struct {
		Password string `json:"password"`
		Inner    any    `json:"inner"`
	}{mk(), map[string]string{"apiKey": mk()}}
	return m
}

// rdJWTPrefix is the header and payload of a JWT; a marker appended to it is its signature.
const rdJWTPrefix = "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ."

// rdInput interprets fuzz bytes as JSON when they are valid JSON, else as a string.
func rdInput(data []byte) any {
	if json.Valid(data) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) == nil {
			return v
		}
	}
	return string(data)
}

// rdEmbed puts input and planted secrets at a depth chosen by the input.
func rdEmbed(data []byte) map[string]any {
	input := rdInput(data)
	depth := 0
	if len(data) > 0 {
		depth = int(data[0]) % 80
	}
	var v any = map[string]any{
		"data":           input,
		string(data):     input,
		"secrets":        rdSecrets("d"),
		"text_prefix":    string(data) + " token=" + rdMarker + "tp1Z",
		"text_suffix":    "password=" + rdMarker + "ts1Z" + string(data),
		"json_prefix":    string(data) + `"token":"` + rdMarker + "jp1Z",
		"secret_wrapper": map[string]any{"password": input},
	}
	for i := range depth {
		if i%2 == 0 {
			v = map[string]any{"level": v, "d": input, "Pass_Word": fmt.Sprintf("%sl%dZ", rdMarker, i),
				"raw": json.RawMessage(fmt.Sprintf(`{"x-auth-token":"%sr%dZ"}`, rdMarker, i))}
		} else {
			v = []any{input, v}
		}
	}
	return map[string]any{"root": v, "top": rdSecrets("t")}
}

// rdCheck fails when out cannot be encoded or contains a planted marker.
func rdCheck(t *testing.T, what string, out any) {
	t.Helper()
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatalf("%s: output cannot be encoded: %v", what, err)
	}
	if i := bytes.Index(b, []byte(rdMarker)); i >= 0 {
		t.Fatalf("%s: a secret survived: ...%s...", what, b[max(i-80, 0):min(i+40, len(b))])
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"text"`, `12.5e3`, `true`,
		`{"a":{"b":[1,2,{"c":"d"}]}}`,
		`{"password":{"x":"y"}}`,
		`"password=x&token=y"`,
		`{"url":"https://u:p@h/?token=t"}`,
		"plain text \x00 with NUL and \xff invalid",
		`{"truncated":"`,
		`Authorization: Bearer abc`,
		`<password>x</password>`,
		strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100),
		"\x7f" + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70),
		`{"\u0000":"\ud800"}`,
		`https://example.com/?a=b#c=d`,
		`{"b":"` + strings.Repeat(`\\`, 10) + `"}`,
		// Secrets recognised by their shape.
		rdJWT, rdPEM, rdAWSKey, rdGitHub, rdSlack, rdStripe, rdGoogle, rdVisa, "4111 1111 1111 1111",
		`{"name":"API_TOKEN","value":"v"}`, `{"` + rdJWT + `":1}`, "?" + rdJWT, "/reset/" + rdJWT,
		"LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2UUlCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND",
	} {
		f.Add([]byte(s))
	}
	r := core.NewRedactor([]string{"pin"}, []string{"token_type"})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The markers are constants, so inputs that hold one anyway (in any encoding) are skipped.
		base, err := json.Marshal(r.Value(rdInput(data)))
		if err != nil {
			t.Fatalf("Value(input) cannot be encoded: %v", err)
		}
		if bytes.Contains(base, []byte(rdMarker)) || bytes.Contains(bytes.ReplaceAll(data, []byte{0}, nil), []byte(rdMarker)) {
			t.Skip()
		}

		in := rdEmbed(data)
		rdCheck(t, "Value", r.Value(in))
		rdCheck(t, "Map", r.Map(in))
		if !reflect.DeepEqual(in, rdEmbed(data)) {
			t.Fatal("Value modified its input")
		}

		diff := map[string]core.Change{string(data): {From: rdInput(data), To: in}}
		for i, k := range rdSecretKeys {
			diff[k] = core.Change{From: fmt.Sprintf("%sdf%dZ", rdMarker, i), To: rdInput(data)}
		}
		rec := &core.Record{
			Kind:        core.KindHTTP,
			Action:      string(data),
			Route:       "/reset/:token",
			Path:        string(data) + "/" + rdJWTPrefix + rdMarker + "p1Z",
			UserAgent:   string(data) + " " + rdJWTPrefix + rdMarker + "ua1Z",
			Before:      in,
			After:       rdSecrets("a"),
			Diff:        diff,
			Query:       map[string][]string{"access_token": {rdMarker + "q1Z"}, string(data): {string(data)}},
			Metadata:    map[string]any{"m": in},
			RequestBody: &core.Body{ContentType: "application/json", Data: rdMustJSON(t, in), Size: -1},
			ResponseBody: &core.Body{ContentType: "text/plain", Truncated: true, Size: -1,
				Data: []byte(string(data) + "\npassword=" + rdMarker + "rb1Z\n" + string(data))},
		}
		out := r.Record(rec)
		rdCheck(t, "Record.Before", out.Before)
		rdCheck(t, "Record.After", out.After)
		rdCheck(t, "Record.Diff", out.Diff)
		rdCheck(t, "Record.Query", out.Query)
		rdCheck(t, "Record.Metadata", out.Metadata)
		rdCheck(t, "Record.Path", out.Path)
		rdCheck(t, "Record.UserAgent", out.UserAgent)
		for name, b := range map[string]*core.Body{"request": out.RequestBody, "response": out.ResponseBody} {
			if !json.Valid(b.Data) {
				t.Fatalf("%s body is not JSON: %q", name, b.Data)
			}
			if bytes.Contains(b.Data, []byte(rdMarker)) {
				t.Fatalf("%s body leaks a secret: %s", name, b.Data)
			}
		}
		for _, s := range []string{out.Action, out.Path} {
			if strings.IndexByte(s, 0) >= 0 || !rdValidUTF8(s) {
				t.Fatalf("string field not sanitised: %q", s)
			}
		}
		for _, ct := range []string{"", "application/json", "application/x-www-form-urlencoded", "text/xml", "image/png"} {
			for _, trunc := range []bool{false, true} {
				b := r.Body(&core.Body{ContentType: ct, Data: data, Truncated: trunc, Size: int64(len(data))})
				if !json.Valid(b) {
					t.Fatalf("Body(%q, truncated=%v) is not JSON: %q", ct, trunc, b)
				}
			}
		}
	})
}

func rdMustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rdValidUTF8(s string) bool { return strings.ToValidUTF8(s, "") == s }

func FuzzText(f *testing.F) {
	for _, p := range [][2]string{
		{"", ""}, {"a=1&", "&b=2"}, {`{"user":"bob",`, `,"x":1}`}, {`"`, `"`}, {`\`, `\"`},
		{"token=", ""}, {"Bearer ", " x"}, {`{"secret":{`, `}}`}, {"x\x00", "\xff"}, {"<a>", "</a>"},
		{"https://u:", "@host/"}, {"password: ", "\n"}, {`'`, `'`}, {"[", "]"}, {"basic", ""},
		{rdJWT + " ", ""}, {"eyJ", ".x"}, {"-----BEGIN PRIVATE KEY-----\n", "\n-----END"}, {"ghp_", "_"}, {"4111 ", " 1111"},
	} {
		f.Add(p[0], p[1])
	}
	r := core.NewRedactor(nil, nil)
	templates := []string{"password=", `"token":"`, "Bearer ", `\"token\":\"`, "Cookie: ", "api_key = ",
		// Secrets recognised by their shape: the marker is a JWT's signature, a line of a PEM
		// block, the body of a GitHub token or of an AWS key id.
		" " + rdJWTPrefix, "\n-----BEGIN PRIVATE KEY-----\n", " ghp_" + strings.Repeat("a", 30), " AKIAABCDEFGH"}
	f.Fuzz(func(t *testing.T, prefix, suffix string) {
		if strings.Contains(core.Sanitize(prefix), rdMarker) || strings.Contains(core.Sanitize(suffix), rdMarker) {
			t.Skip()
		}
		for _, tpl := range templates {
			in := prefix + tpl + rdMarker + "42" + suffix
			out := r.Text(in)
			if strings.Contains(out, rdMarker) && !rdGluedKey(r, core.Sanitize(prefix), tpl) {
				t.Fatalf("Text(%q) = %q: the secret after %q survived", in, out, tpl)
			}
			if strings.IndexByte(out, 0) >= 0 || !rdValidUTF8(out) {
				t.Fatalf("Text(%q) = %q: not sanitised", in, out)
			}
		}
	})
}

// rdGluedKey reports whether prefix, glued to the key that starts tpl, makes a key that is not
// sensitive: "is" and "Cookie: " make "isCookie", a flag, as "max" and "tokens" make a limit.
// Keys are matched by their words, so such a key is not the template's key any more.
func rdGluedKey(r *core.Redactor, prefix, tpl string) bool {
	k := strings.IndexAny(tpl, "=: ")
	if k <= 0 || !rdKeyByte(tpl[0]) || prefix == "" || !rdKeyByte(prefix[len(prefix)-1]) {
		return false
	}
	w := len(prefix)
	for w > 0 && rdKeyByte(prefix[w-1]) {
		w--
	}
	return !r.Sensitive(prefix[w:] + tpl[:k])
}

// rdKeyByte reports whether c can be part of a key in free text.
func rdKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '[' || c == ']' || c == '%' || c >= 0x80
}
