package core_test

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

// rdJSON encodes v the way the writer does and fails the test when that is impossible.
func rdJSON(t testing.TB, v any) string {
	t.Helper()
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("json.Marshal(%#v): %v", v, err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestRedactSensitive(t *testing.T) {
	r := core.NewRedactor([]string{"Pin-Code", "  "}, []string{"token_count", "Secret-Santa"})
	tests := []struct {
		key  string
		want bool
	}{
		{"password", true},
		{"PASSWORD", true},
		{"password_hash", true},
		{"newPassword", true},
		{"Pass_Word", true},
		{"pass-word", true},
		{"pass.word", true},
		{"pass word", true},
		{"pass\tword", true},
		{"pass\x00word", true},
		{"passwd", true},
		{"X-API-Key", true},
		{"api_key", true},
		{"x-auth-token", true},
		{"accessToken", true},
		{"client-secret", true},
		{"client_secret", true},
		{"Authorization", true},
		{"Proxy-Authorization", true},
		{"Set-Cookie", true},
		{"private_key", true},
		{"credit_card", true},
		{"card-number", true},
		{"CVV", true},
		{"ssn", true},
		{"user.ssn", true},
		{"secretary", false}, // a word of its own, not the word secret
		{"pincode", true},    // user pattern, normalised
		{"pin_code", true},
		{"token_count", false},  // allow-listed
		{"Token-Count", false},  // allow-listed after normalisation
		{"secret_santas", true}, // allow is an exact match
		{"secret_santa", false}, // allow-listed
		{"email", false},
		{"name", false},
		{"", false},
		{"passage", false},
		{"tok", false},
		{"ſecret", false}, // no Unicode case folding beyond lower-casing
		{"PÄSSWORD", false},
		{"ПАРОЛЬ", false},
		{"tOKEN", true},
		{"\u212Aey", false},
		{"to\u212Aen", true}, // KELVIN SIGN lower-cases to k
	}
	for _, tt := range tests {
		if got := r.Sensitive(tt.key); got != tt.want {
			t.Errorf("Sensitive(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestRedactNilAndZeroRedactorUseDefaults(t *testing.T) {
	for name, r := range map[string]*core.Redactor{"nil": nil, "zero": {}} {
		if !r.Sensitive("password") || r.Sensitive("email") {
			t.Errorf("%s Redactor: wrong default patterns", name)
		}
		got := rdJSON(t, r.Map(map[string]any{"token": "x", "a": 1}))
		if got != `{"a":1,"token":"[REDACTED]"}` {
			t.Errorf("%s Redactor: Map = %s", name, got)
		}
	}
}

func TestRedactDefaultFieldsAreAllSensitive(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	for _, f := range core.DefaultRedactFields {
		keys := []string{f, strings.ToUpper(f), "x_" + f}
		if f != "auth" { // auth names a credential only as the last word of a key
			keys = append(keys, "x_"+f+"_y")
		}
		for _, k := range keys {
			if !r.Sensitive(k) {
				t.Errorf("Sensitive(%q) = false", k)
			}
		}
	}
}

type rdUser struct {
	Name     string            `json:"name"`
	Password string            `json:"password"`
	Nested   map[string]string `json:"nested"`
	Skip     string            `json:"-"`
}

type rdPanics struct{}

func (rdPanics) MarshalJSON() ([]byte, error) { panic("boom") }

type rdEmail string

func TestRedactValue(t *testing.T) {
	r := core.NewRedactor([]string{"pin"}, []string{"token_type"})
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name string
		in   func() any
		want string // JSON of the result
	}{
		{"nil", func() any { return nil }, `null`},
		{"plain string", func() any { return "hello" }, `"hello"`},
		{"number", func() any { return 42 }, `42`},
		{"json number", func() any { return json.Number("1e400") }, `1e400`},
		{"bool", func() any { return true }, `true`},
		{"time", func() any { return when }, `"2024-05-06T07:08:09Z"`},
		{"flat map", func() any {
			return map[string]any{"user": "bob", "password": "hunter2", "pin": 1234, "token_type": "bearer"}
		}, `{"password":"[REDACTED]","pin":"[REDACTED]","token_type":"bearer","user":"bob"}`},
		{"nil stays nil under a sensitive key", func() any {
			return map[string]any{"password": nil, "api_key": ""}
		}, `{"api_key":"[REDACTED]","password":null}`},
		{"sensitive object replaced wholesale", func() any {
			return map[string]any{"credentials": map[string]any{"user": "bob"}, "secret": map[string]any{"a": []any{1, 2}}}
		}, `{"credentials":"[REDACTED]","secret":"[REDACTED]"}`},
		{"nested maps and slices", func() any {
			return map[string]any{"a": []any{map[string]any{"b": map[string]any{"newPassword": "x", "ok": 1.5}}}}
		}, `{"a":[{"b":{"newPassword":"[REDACTED]","ok":1.5}}]}`},
		{"map[string]string", func() any {
			return map[string]string{"Authorization": "Bearer abc", "host": "example.com"}
		}, `{"Authorization":"[REDACTED]","host":"example.com"}`},
		{"[]string", func() any { return []string{"a", `{"token":"t"}`} }, `["a","{\"token\":\"[REDACTED]\"}"]`},
		{"[]map[string]any", func() any {
			return []map[string]any{{"ssn": "123"}, nil}
		}, `[{"ssn":"[REDACTED]"},null]`},
		{"map[string][]string", func() any {
			return map[string][]string{"token": {"a", "b"}, "q": {"x"}}
		}, `{"q":["x"],"token":["[REDACTED]","[REDACTED]"]}`},
		{"url.Values", func() any { return url.Values{"password": {"p"}} }, `{"password":["[REDACTED]"]}`},
		{"json.RawMessage", func() any {
			return json.RawMessage(`{"user":"bob","cookie":"c=1","n":12345678901234567890}`)
		}, `{"cookie":"[REDACTED]","n":12345678901234567890,"user":"bob"}`},
		{"[]byte JSON", func() any { return []byte(`[{"cvv":"123"}]`) }, `[{"cvv":"[REDACTED]"}]`},
		{"[]byte text", func() any { return []byte("password=x") }, `"password=[REDACTED]"`},
		{"[]byte binary", func() any { return []byte{0xff, 0xfe, 0} }, `"[binary: 3 bytes]"`},
		{"invalid RawMessage", func() any { return json.RawMessage(`{"token":"abc`) }, `"{\"token\":\"[REDACTED]"`},
		{"JSON object in a string", func() any {
			return map[string]any{"payload": `{"user":"bob","password":"p","inner":"{\"token\":\"t\"}"}`}
		}, `{"payload":"{\"inner\":\"{\\\"token\\\":\\\"[REDACTED]\\\"}\",\"password\":\"[REDACTED]\",\"user\":\"bob\"}"}`},
		{"JSON array in a string", func() any { return ` [{"secret":1}] ` }, `"[{\"secret\":\"[REDACTED]\"}]"`},
		{"not JSON in a string", func() any { return "{not json}" }, `"{not json}"`},
		{"URL with query", func() any {
			return "https://api.example.com/v1/items?limit=10&access_token=abc&Api-Key=k#frag"
		}, `"https://api.example.com/v1/items?limit=10&access_token=[REDACTED]&Api-Key=[REDACTED]#frag"`},
		{"URL with userinfo", func() any {
			return "postgres://app:s3cr%40t@db.internal:5432/app?sslmode=require"
		}, `"postgres://app:[REDACTED]@db.internal:5432/app?sslmode=require"`},
		{"URL with user only", func() any { return "ssh://git@github.com/x" }, `"ssh://git@github.com/x"`},
		{"URL with token in fragment", func() any {
			return "https://app.example.com/cb#access_token=abc&state=s"
		}, `"https://app.example.com/cb#access_token=[REDACTED]&state=s"`},
		{"URL nested in a query value", func() any {
			return "https://a.example.com/login?next=" + url.QueryEscape("https://b.example.com/?token=t&x=1")
		}, `"https://a.example.com/login?next=https%3A%2F%2Fb.example.com%2F%3Ftoken%3D[REDACTED]%26x%3D1"`},
		{"URL without secrets", func() any { return "https://example.com/a?b=c" }, `"https://example.com/a?b=c"`},
		{"credential in free text", func() any {
			return map[string]any{"note": "login with password=hunter2 failed", "hdr": "Bearer abc.def"}
		}, `{"hdr":"Bearer [REDACTED]","note":"login with password=[REDACTED] failed"}`},
		{"struct through encoding/json", func() any {
			return rdUser{Name: "bob", Password: "p", Nested: map[string]string{"apikey": "k"}, Skip: "s"}
		}, `{"name":"bob","nested":{"apikey":"[REDACTED]"},"password":"[REDACTED]"}`},
		{"pointer to struct", func() any { return &rdUser{Name: "bob"} }, `{"name":"bob","nested":null,"password":"[REDACTED]"}`},
		{"nil pointer", func() any { return (*rdUser)(nil) }, `null`},
		{"typed string", func() any { return rdEmail("a@b.c") }, `"a@b.c"`},
		{"typed map", func() any { return map[string]int{"token": 1, "n": 2} }, `{"n":2,"token":"[REDACTED]"}`},
		{"int keys", func() any { return map[int]string{1: "a"} }, `{"1":"a"}`},
		{"unencodable", func() any { return map[string]any{"c": make(chan int)} }, `{"c":"[unencodable: chan int]"}`},
		{"panicking MarshalJSON", func() any { return rdPanics{} }, `"[unencodable: core_test.rdPanics]"`},
		{"struct with NaN", func() any { return struct{ F float64 }{math.NaN()} }, `"[unencodable: struct { F float64 }]"`},
		{"NaN and infinities", func() any {
			return []any{math.NaN(), math.Inf(1), math.Inf(-1), float32(math.Inf(-1)), 1.25}
		}, `["NaN","+Inf","-Inf","-Inf",1.25]`},
		{"invalid json.Number", func() any { return json.Number("12abc") }, `"12abc"`},
		{"time out of JSON range", func() any {
			return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		}, `"10000-01-01 00:00:00 +0000 UTC"`},
		{"NUL and invalid UTF-8 in keys and values", func() any {
			return map[string]any{"na\x00me": "a\x00b\xffc", "pass\x00word": "x"}
		}, `{"name":"ab` + "\uFFFD" + `c","password":"[REDACTED]"}`},
		{"body in metadata", func() any {
			return map[string]any{"b": &core.Body{ContentType: "application/json", Data: []byte(`{"token":"t"}`), Size: 13}}
		}, `{"b":{"token":"[REDACTED]"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			got := rdJSON(t, r.Value(in))
			if got != tt.want {
				t.Errorf("Value:\n got %s\nwant %s", got, tt.want)
			}
			if fresh := tt.in(); !rdDeepEqual(in, fresh) {
				t.Errorf("Value modified its input: %#v, was %#v", in, fresh)
			}
		})
	}
}

// rdDeepEqual is reflect.DeepEqual, except that channels and NaN compare by kind.
func rdDeepEqual(a, b any) bool {
	return reflect.DeepEqual(a, b) || rdJSONish(a) == rdJSONish(b)
}

func rdJSONish(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return reflect.TypeOf(v).String()
	}
	return string(b)
}

func TestRedactValueDoesNotMutate(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	build := func() map[string]any {
		return map[string]any{
			"password": "p",
			"list":     []any{map[string]any{"token": "t", "ok": "\x00"}, "a\xff"},
			"ms":       map[string]string{"secret": "s"},
			"ss":       []string{"Bearer x"},
			"raw":      json.RawMessage(`{"cvv":1}`),
			"bytes":    []byte(`{"ssn":1}`),
			"vals":     map[string][]string{"cookie": {"c"}},
			"maps":     []map[string]any{{"apikey": "k"}},
		}
	}
	in := build()
	out := r.Map(in)
	if !reflect.DeepEqual(in, build()) {
		t.Fatalf("Map modified its input: %#v", in)
	}
	// The output shares nothing mutable with the input.
	out["list"].([]any)[0].(map[string]any)["ok"] = "changed"
	out["ms"].(map[string]string)["x"] = "y"
	out["ss"].([]string)[0] = "z"
	out["vals"].(map[string][]string)["cookie"][0] = "z"
	out["maps"].([]map[string]any)[0]["k"] = "v"
	if !reflect.DeepEqual(in, build()) {
		t.Fatalf("the output of Map aliases its input")
	}
}

func TestRedactDepthCap(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	var v any = map[string]any{"password": "hidden", "x": "hidden"}
	for range 200 {
		v = map[string]any{"a": []any{v}}
	}
	got := rdJSON(t, r.Value(v))
	if strings.Contains(got, "hidden") || !strings.Contains(got, `"[too deep]"`) {
		t.Fatalf("deep value not cut: %.200s", got)
	}
	if n := strings.Count(got, "{"); n > 64 {
		t.Errorf("kept %d levels of objects, want at most 64", n)
	}

	// Shallow enough content is kept whole.
	v = map[string]any{"password": "p", "x": 1}
	for range 20 {
		v = map[string]any{"a": v}
	}
	if got := rdJSON(t, r.Value(v)); strings.Contains(got, "too deep") || !strings.Contains(got, `"x":1`) {
		t.Errorf("shallow value cut: %s", got)
	}

	// JSON nested in strings counts too.
	// (Escaping doubles at each level of string, so nest objects too.)
	s := `{"x":"hidden"}`
	for range 10 {
		var o any = s
		for range 9 {
			o = map[string]any{"a": o}
		}
		b, _ := json.Marshal(o)
		s = string(b)
	}
	if got := rdJSON(t, r.Value(s)); strings.Contains(got, "hidden") || !strings.Contains(got, "too deep") {
		t.Errorf("deep JSON in strings not cut: %.200s", got)
	}

	// A hostile document far deeper than the cap does not exhaust the stack.
	raw := strings.Repeat("[", 9000) + strings.Repeat("]", 9000)
	if got := rdJSON(t, r.Value(json.RawMessage(raw))); !strings.Contains(got, "too deep") {
		t.Errorf("deep RawMessage not cut: %.100s", got)
	}
}

func TestRedactSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"a\x00b", "ab"},
		{"\x00\x00", ""},
		{"a\xffb", "a\uFFFDb"},
		{"\xe2\x82", "\uFFFD"},
		{"ok ü €", "ok ü €"},
		{"\x00\xff\x00", "\uFFFD"},
	}
	for _, tt := range tests {
		if got := core.Sanitize(tt.in); got != tt.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactMapNil(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	if r.Map(nil) != nil || r.Diff(nil) != nil || r.Values(nil) != nil || r.Header(nil) != nil ||
		r.Body(nil) != nil || r.Record(nil) != nil {
		t.Fatal("nil input did not give nil output")
	}
	if m := r.Map(map[string]any{}); m == nil || len(m) != 0 {
		t.Fatalf("Map(empty) = %#v", m)
	}
}

func TestRedactDiff(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	in := map[string]core.Change{
		"password_hash": {From: "old", To: "new"},
		"api_key":       {From: nil, To: "k"},
		"token":         {From: "t", To: nil},
		"email":         {From: "a@x", To: "b@x"},
		"settings":      {From: map[string]any{"theme": "dark"}, To: map[string]any{"theme": "light", "secret": "s"}},
		"name\x00":      {From: math.NaN(), To: "a"},
	}
	got := r.Diff(in)
	want := map[string]core.Change{
		"password_hash": {From: core.Redacted, To: core.Redacted},
		"api_key":       {From: nil, To: core.Redacted},
		"token":         {From: core.Redacted, To: nil},
		"email":         {From: "a@x", To: "b@x"},
		"settings":      {From: map[string]any{"theme": "dark"}, To: map[string]any{"theme": "light", "secret": core.Redacted}},
		"name":          {From: "NaN", To: "a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff:\n got %#v\nwant %#v", got, want)
	}
	if in["password_hash"].From != "old" || in["settings"].To.(map[string]any)["secret"] != "s" {
		t.Error("Diff modified its input")
	}
}

func TestRedactValuesAndHeader(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	q := url.Values{
		"page":         {"2"},
		"access_token": {"abc", "def"},
		"redirect":     {"https://u:p@example.com/"},
		"filter":       {`{"password":"x"}`},
		"empty":        nil,
		"k\x00":        {"v\xff"},
	}
	got := r.Values(q)
	want := map[string][]string{
		"page":         {"2"},
		"access_token": {core.Redacted, core.Redacted},
		"redirect":     {"https://u:[REDACTED]@example.com/"},
		"filter":       {`{"password":"[REDACTED]"}`},
		"empty":        nil,
		"k":            {"v\uFFFD"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Values:\n got %#v\nwant %#v", got, want)
	}
	if q.Get("access_token") != "abc" {
		t.Error("Values modified its input")
	}

	h := http.Header{}
	h.Set("Authorization", "Bearer abc")
	h.Set("Proxy-Authorization", "Basic dXNlcjpwYXNz")
	h.Set("Cookie", "session=1")
	h.Add("Set-Cookie", "a=1")
	h.Add("Set-Cookie", "b=2")
	h.Set("X-Api-Key", "k")
	h.Set("X-Auth-Token", "t")
	h.Set("X-CSRF-Token", "c")
	h.Set("Content-Type", "application/json")
	h.Set("Referer", "https://example.com/?token=t")
	h.Set("User-Agent", "curl/8")
	gotH := r.Header(h)
	wantH := map[string][]string{
		"Authorization":       {core.Redacted},
		"Proxy-Authorization": {core.Redacted},
		"Cookie":              {core.Redacted},
		"Set-Cookie":          {core.Redacted, core.Redacted},
		"X-Api-Key":           {core.Redacted},
		"X-Auth-Token":        {core.Redacted},
		"X-Csrf-Token":        {core.Redacted},
		"Content-Type":        {"application/json"},
		"Referer":             {"https://example.com/?token=[REDACTED]"},
		"User-Agent":          {"curl/8"},
	}
	if !reflect.DeepEqual(gotH, wantH) {
		t.Errorf("Header:\n got %#v\nwant %#v", gotH, wantH)
	}
	if h.Get("Authorization") != "Bearer abc" {
		t.Error("Header modified its input")
	}
}

func TestRedactText(t *testing.T) {
	r := core.NewRedactor([]string{"pin"}, []string{"token_type"})
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"nothing to redact", "GET /users/42 took 3ms: ok", "GET /users/42 took 3ms: ok"},
		{"query string", "a=1&password=hunter2&b=2", "a=1&password=[REDACTED]&b=2"},
		{"semicolons", "user=bob;Pass_Word=x;y=1", "user=bob;Pass_Word=[REDACTED];y=1"},
		{"commas and spaces", "user=bob, token=abc, api-key = k2 done", "user=bob, token=[REDACTED], api-key = [REDACTED] done"},
		{"quoted pair", `password="hunter 2" user="bob"`, `password="[REDACTED]" user="bob"`},
		{"single quoted", `{'secret': 'x y', 'a': 1}`, `{'secret': '[REDACTED]', 'a': 1}`},
		{"ruby hash", `{"password" => "x"}`, `{"password" => "[REDACTED]"}`},
		{"form brackets", "user[password]=x&user[name]=bob", "user[password]=[REDACTED]&user[name]=bob"},
		{"JSON", `{"user":"bob","password":"hunter2","n":1}`, `{"user":"bob","password":"[REDACTED]","n":1}`},
		{"JSON escapes", `{"token":"a\"b\\","x":1}`, `{"token":"[REDACTED]","x":1}`},
		{"JSON number", `{"pin": 1234, "n": 5}`, `{"pin": [REDACTED], "n": 5}`},
		{"JSON object value", `{"secret": {"a": "b}", "c": [1]}, "x": 1}`, `{"secret": [REDACTED], "x": 1}`},
		{"truncated JSON", `{"user":"bob","password":"hun`, `{"user":"bob","password":"[REDACTED]`},
		{"truncated object", `{"credentials":{"client_secret":"abc`, `{"credentials":[REDACTED]`},
		{"truncated object value", `{"secret":{"a":"b","c`, `{"secret":[REDACTED]`},
		{"JSON in a JSON string", `{"body":"{\"token\":\"t0k\",\"a\":1}"}`, `{"body":"{\"token\":\"[REDACTED]\",\"a\":1}"}`},
		{"allow-listed", `{"token_type":"bearer","access_token":"x"}`, `{"token_type":"bearer","access_token":"[REDACTED]"}`},
		{"header lines", "Host: example.com\r\nAuthorization: Bearer abc def\r\nCookie: a=1; b=2\r\nAccept: */*",
			"Host: example.com\r\nAuthorization: [REDACTED]\r\nCookie: [REDACTED]\r\nAccept: */*"},
		{"yaml", "db:\n  user: app\n  password: s3cret\n  port: 5432", "db:\n  user: app\n  password: [REDACTED]\n  port: 5432"},
		{"label of words", "Credit card number: 4111 1111 1111 1111\nName: Bob", "Credit card number: [REDACTED]\nName: Bob"},
		{"bearer anywhere", "calling upstream with bearer eyJhbGciOi.eyJzdWIi.sig-_x now", "calling upstream with bearer [REDACTED] now"},
		{"basic anywhere", "sent Basic dXNlcjpwYXNz== to proxy", "sent Basic [REDACTED] to proxy"},
		{"URL userinfo", "connect postgres://app:s3cr3t@db:5432/x failed", "connect postgres://app:[REDACTED]@db:5432/x failed"},
		{"URL query", "GET https://x.example.com/cb?code=1&client_secret=abc HTTP/1.1", "GET https://x.example.com/cb?code=1&client_secret=[REDACTED] HTTP/1.1"},
		{"XML", `<login><user>bob</user><password>hunter2</password><pin><![CDATA[1<2]]></pin></login>`,
			`<login><user>bob</user><password>[REDACTED]</password><pin>[REDACTED]</pin></login>`},
		{"XML attribute", `<auth token="abc" user="bob"/>`, `<auth token="[REDACTED]" user="bob"/>`},
		{"empty value kept", "password=&a=1", "password=&a=1"},
		{"idempotent", "password=[REDACTED]&a=1", "password=[REDACTED]&a=1"},
		{"times are not keys", "at 12:30:45 token: x", "at 12:30:45 token: [REDACTED]"},
		{"NUL and invalid UTF-8", "a\x00b \xff password=x\x00y", "ab \uFFFD password=[REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Text(tt.in); got != tt.want {
				t.Errorf("Text(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactBody(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	tests := []struct {
		name string
		body core.Body
		want string
	}{
		{"JSON", core.Body{ContentType: "application/json; charset=utf-8", Data: []byte(`{"user":"bob","password":"p","n":1.50}`), Size: 38},
			`{"n":1.50,"password":"[REDACTED]","user":"bob"}`},
		{"+json", core.Body{ContentType: "application/vnd.api+json", Data: []byte(`[{"token":"t"}]`), Size: 15},
			`[{"token":"[REDACTED]"}]`},
		{"JSON keeps HTML characters", core.Body{ContentType: "application/json", Data: []byte(`{"q":"<a&b>"}`), Size: 13},
			`{"q":"<a&b>"}`},
		{"JSON with NUL escape", core.Body{ContentType: "application/json", Data: []byte(`{"a\u0000":"b\u0000c"}`), Size: 20},
			`{"a":"bc"}`},
		{"JSON scalar", core.Body{ContentType: "application/json", Data: []byte(`"password=x"`), Size: 12},
			`"password=[REDACTED]"`},
		{"truncated JSON", core.Body{ContentType: "application/json", Data: []byte(`{"user":"bob","password":"hun`), Size: 100, Truncated: true},
			`{"content_type":"application/json","size":100,"truncated":true,"format":"json","value":{"password":"[REDACTED]","user":"bob"}}`},
		{"invalid JSON", core.Body{ContentType: "application/json", Data: []byte(`{token: abc}`), Size: 12},
			`{"content_type":"application/json","size":12,"truncated":false,"format":"yaml","value":{"token":"[REDACTED]"}}`},
		{"form", core.Body{ContentType: "application/x-www-form-urlencoded", Data: []byte("user=bob&password=p&tag=a&tag=b&next=%2Fhome"), Size: 44},
			`{"next":"/home","password":"[REDACTED]","tag":["a","b"],"user":"bob"}`},
		{"form repeated secret", core.Body{ContentType: "application/x-www-form-urlencoded", Data: []byte("token=a&token=b"), Size: 15},
			`{"token":["[REDACTED]","[REDACTED]"]}`},
		{"truncated form", core.Body{ContentType: "application/x-www-form-urlencoded", Data: []byte("user=bob&password=hun"), Size: 99, Truncated: true},
			`{"content_type":"application/x-www-form-urlencoded","size":99,"truncated":true,"format":"form","value":{"user":"bob"}}`},
		{"malformed form", core.Body{ContentType: "application/x-www-form-urlencoded", Data: []byte("a=%zz;password=p"), Size: 16},
			`{"content_type":"application/x-www-form-urlencoded","size":16,"omitted":"unparsed"}`},
		{"text", core.Body{ContentType: "text/plain", Data: []byte("token=abc\nhello"), Size: 15},
			`{"content_type":"text/plain","size":15,"truncated":false,"text":"token=[REDACTED]\nhello"}`},
		{"XML", core.Body{ContentType: "application/soap+xml", Data: []byte("<a><Password>x</Password></a>"), Size: 29},
			`{"content_type":"application/soap+xml","size":29,"truncated":false,"format":"xml","text":"<a><Password>[REDACTED]</Password></a>"}`},
		{"no content type, UTF-8", core.Body{Data: []byte(`{"secret":"s"}`), Size: 14},
			`{"secret":"[REDACTED]"}`},
		{"no content type, truncated in a character", core.Body{Data: []byte("password=x é")[:12], Size: -1, Truncated: true},
			`{"content_type":"","size":-1,"truncated":true,"text":"password=[REDACTED] [truncated]"}`},
		{"no content type, binary", core.Body{Data: []byte{0x89, 'P', 'N', 'G', 0, 0xff}, Size: 6},
			`{"content_type":"","size":6,"omitted":"binary"}`},
		{"binary", core.Body{ContentType: "image/png", Data: []byte("password=x"), Size: 10},
			`{"content_type":"image/png","size":10,"omitted":"binary"}`},
		{"octet-stream", core.Body{ContentType: "application/octet-stream", Data: []byte{1, 2, 3}, Size: 3},
			`{"content_type":"application/octet-stream","size":3,"omitted":"binary"}`},
		{"bad content type", core.Body{ContentType: "Text/Plain;;\x00", Data: []byte("ok"), Size: 2},
			`{"content_type":"Text/Plain;;","size":2,"truncated":false,"text":"ok"}`},
		{"compressed JSON", core.Body{ContentType: "application/json", Encoding: "gzip", Data: []byte(`{"password":"p"}`), Size: 36},
			`{"content_type":"application/json","content_encoding":"gzip","size":36,"omitted":"encoded"}`},
		{"empty JSON body", core.Body{ContentType: "application/json", Size: 0},
			`{"content_type":"application/json","size":0,"truncated":false,"text":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := append([]byte(nil), tt.body.Data...)
			got := r.Body(&tt.body)
			if string(got) != tt.want {
				t.Errorf("Body:\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("Body returned invalid JSON: %s", got)
			}
			if string(data) != string(tt.body.Data) {
				t.Error("Body modified its input")
			}
		})
	}
}

func rdRecord() *core.Record {
	return &core.Record{
		ID:           core.NewID(),
		OccurredAt:   time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		Kind:         core.KindHTTP,
		Action:       "http.request\x00",
		Tenant:       core.Tenant{ID: "t1", Slug: "acme\xff"},
		Actor:        core.Actor{ID: "u1", Type: core.ActorTenantUser, Email: "a@x\x00", Auth: "jwt:HS256"},
		ResourceType: "user",
		ResourceID:   "42",
		Before:       map[string]any{"name": "a", "password": "old"},
		After:        map[string]any{"name": "b", "password": "new"},
		Diff:         map[string]core.Change{"name": {From: "a", To: "b"}, "password": {From: "old", To: "new"}},
		RequestID:    "req-1",
		Method:       "POST",
		Route:        "/users/:id",
		Path:         "/users/42",
		Query:        map[string][]string{"token": {"t"}, "x": {"1"}},
		Status:       200,
		Duration:     time.Millisecond,
		UserAgent:    "agent\x00",
		RequestBody:  &core.Body{ContentType: "application/json", Data: []byte(`{"password":"p"}`), Size: 16},
		ResponseBody: &core.Body{ContentType: "text/plain", Data: []byte("token=abc"), Size: 9, Truncated: true},
		Metadata:     map[string]any{"secret": "s", "k": "v"},
	}
}

func TestRedactRecord(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	in := rdRecord()
	in.ID = rdRecord().ID // two calls give different ids
	orig := *in
	origCopy := rdRecord()
	origCopy.ID = in.ID
	got := r.Record(in)

	if !reflect.DeepEqual(in, origCopy) || !reflect.DeepEqual(*in, orig) {
		t.Fatal("Record modified its input")
	}
	if got == in {
		t.Fatal("Record returned its input")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ID", got.ID, in.ID},
		{"OccurredAt", got.OccurredAt, in.OccurredAt},
		{"Action", got.Action, "http.request"},
		{"Tenant", got.Tenant, core.Tenant{ID: "t1", Slug: "acme\uFFFD"}},
		{"Actor", got.Actor, core.Actor{ID: "u1", Type: core.ActorTenantUser, Email: "a@x", Auth: "jwt:HS256"}},
		{"UserAgent", got.UserAgent, "agent"},
		{"Status", got.Status, 200},
		{"Before", got.Before, map[string]any{"name": "a", "password": core.Redacted}},
		{"After", got.After, map[string]any{"name": "b", "password": core.Redacted}},
		{"Diff", got.Diff, map[string]core.Change{"name": {From: "a", To: "b"}, "password": {From: core.Redacted, To: core.Redacted}}},
		{"Query", got.Query, map[string][]string{"token": {core.Redacted}, "x": {"1"}}},
		{"Metadata", got.Metadata, map[string]any{"secret": core.Redacted, "k": "v"}},
		{"RequestBody", *got.RequestBody, core.Body{ContentType: "application/json", Data: []byte(`{"password":"[REDACTED]"}`), Size: 16}},
		{"ResponseBody", *got.ResponseBody, core.Body{ContentType: "application/json",
			Data: []byte(`{"content_type":"text/plain","size":9,"truncated":true,"text":"token=[REDACTED]"}`), Size: 9}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}

	// The copy shares no map with the input: changing it leaves the input alone.
	got.Before["name"] = "x"
	got.After["x"] = 1
	got.Metadata["k"] = "x"
	got.Diff["name"] = core.Change{}
	got.Query["x"][0] = "x"
	if !reflect.DeepEqual(in, origCopy) {
		t.Fatal("the redacted record aliases the input's maps")
	}

	// Nil maps and bodies stay nil.
	empty := r.Record(&core.Record{Kind: core.KindCustom})
	if empty.Before != nil || empty.Diff != nil || empty.Query != nil || empty.Metadata != nil || empty.RequestBody != nil {
		t.Errorf("nil fields became non-nil: %#v", empty)
	}
}

func TestRedactConcurrentUse(t *testing.T) {
	r := core.NewRedactor([]string{"pin"}, []string{"token_type"})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				rec := r.Record(rdRecord())
				if rec.Before["password"] != core.Redacted {
					t.Errorf("goroutine %d: password not redacted", i)
					return
				}
				_ = r.Text(`{"pin":"1"} Bearer x`)
			}
		}()
	}
	wg.Wait()
}

func TestParseTag(t *testing.T) {
	tests := []struct {
		tag     string
		want    core.FieldPolicy
		wantErr string
	}{
		{"", core.FieldPolicy{}, ""},
		{"  ", core.FieldPolicy{}, ""},
		{"-", core.FieldPolicy{Omit: true}, ""},
		{"redact", core.FieldPolicy{Redact: true}, ""},
		{" redact ", core.FieldPolicy{Redact: true}, ""},
		{"redact,-", core.FieldPolicy{Omit: true, Redact: true}, ""},
		{"mask", core.FieldPolicy{}, `unknown option "mask"`},
		{"redact,omitempty", core.FieldPolicy{}, `unknown option "omitempty"`},
		{"Redact", core.FieldPolicy{}, `unknown option "Redact"`},
		{"redact,", core.FieldPolicy{}, `empty option`},
	}
	for _, tt := range tests {
		got, err := core.ParseTag(tt.tag)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseTag(%q) = %+v, %v; want %+v", tt.tag, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, core.ErrInvalidTag) {
			t.Errorf("ParseTag(%q) error = %v, want one containing %q wrapping ErrInvalidTag", tt.tag, err, tt.wantErr)
		}
	}
	if core.TagName != "audit" {
		t.Errorf("TagName = %q", core.TagName)
	}
	type model struct {
		Hash string `audit:"redact"`
	}
	f, _ := reflect.TypeOf(model{}).FieldByName("Hash")
	if p, err := core.ParseTag(f.Tag.Get(core.TagName)); err != nil || !p.Redact {
		t.Errorf("ParseTag of a struct tag = %+v, %v", p, err)
	}
}

func rdBenchMap() map[string]any {
	return map[string]any{
		"id":         int64(42),
		"name":       "Alice Example",
		"email":      "alice@example.com",
		"active":     true,
		"score":      98.5,
		"role":       "admin",
		"created_at": "2024-01-02T03:04:05Z",
		"tenant_id":  "t-123",
		"locale":     "en-GB",
		"visits":     json.Number("17"),
	}
}

func BenchmarkRedactMap(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	m := rdBenchMap()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Value(m)
	}
}

func BenchmarkRedactMapWithSecrets(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	m := rdBenchMap()
	m["password"] = "p"
	m["meta"] = map[string]any{"api_key": "k", "note": "password=x"}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Value(m)
	}
}

func BenchmarkSensitive(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	keys := []string{"id", "email", "created_at", "password_hash", "X-Api-Key", "tenantIdentifier"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = r.Sensitive(keys[i%len(keys)])
	}
}

func BenchmarkRedactText(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	s := `{"user":"bob","password":"hunter2","items":[1,2,3],"note":"Authorization: Bearer abc"}`
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Text(s)
	}
}

func BenchmarkRedactBodyJSON(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	body := &core.Body{ContentType: "application/json", Data: []byte(`{"user":"bob","password":"hunter2","items":[1,2,3],"profile":{"city":"Oslo"}}`), Size: 79}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Body(body)
	}
}

func TestRedactTextIsLinear(t *testing.T) {
	// Inputs that would make a naive scanner quadratic: every separator opens a sensitive value
	// that runs to the end of the text.
	r := core.NewRedactor(nil, nil)
	for _, unit := range []string{"token: ", `"token":"x`, "password=", `{"secret":[`, `\"token\":\"x`, "a a a:", `"` + strings.Repeat("k", 900) + `":`} {
		s := strings.Repeat(unit, 1<<20/len(unit))
		start := time.Now()
		out := r.Text(s)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Text(%q × %d) took %v", unit, len(s)/len(unit), d)
		}
		if strings.Count(out, core.Redacted) == 0 && strings.Contains(unit, "t") {
			t.Errorf("Text(%q × n) redacted nothing", unit)
		}
	}
}
