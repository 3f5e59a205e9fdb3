package core_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

// TestRedactBodyByWhatItIs: the stored document follows the body's bytes, whatever its
// Content-Type says, and no secret in it survives.
func TestRedactBodyByWhatItIs(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	const mp = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nreport\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nsecret file hunter2\r\n" +
		"--XyZ--\r\n"
	tests := []struct {
		name   string
		ct     string
		data   string
		trunc  bool
		size   int64
		want   string
		secret string // must not appear in the document
	}{
		{"JSON sent as a form (curl -d)", "application/x-www-form-urlencoded", `{"password":"hunter2"}`, false, 22,
			`{"password":"[REDACTED]"}`, "hunter2"},
		{"JSON without a content type", "", `{"user":"bob","token":"hunter2"}`, false, 32,
			`{"token":"[REDACTED]","user":"bob"}`, "hunter2"},
		{"JSON as text/plain with a BOM", "text/plain; charset=utf-8", "\ufeff  [{\"secret\":\"hunter2\"}]", false, 28,
			`[{"secret":"[REDACTED]"}]`, "hunter2"},
		{"URL-encoded JSON as the only form key", "application/x-www-form-urlencoded", "%7B%22password%22%3A%22hunter2%22%7D", false, 36,
			`{"password":"[REDACTED]"}`, "hunter2"},
		{"form as text/plain", "text/plain", "user=bob&password=hunter2", false, 25,
			`{"password":"[REDACTED]","user":"bob"}`, "hunter2"},
		{"form key holding a JSON document", "application/x-www-form-urlencoded", `a=1&%7B%22token%22%3A%22hunter2%22%7D=x`, false, 40,
			"", "hunter2"}, // how a sensitive key is stored is Sensitive's business
		{"truncated JSON keeps its complete tokens", "application/json", `{"user":"bob","n":[1,2],"password":"hun`, true, 100,
			`{"content_type":"application/json","size":100,"truncated":true,"format":"json","value":{"n":[1,2],"password":"[REDACTED]","user":"bob"}}`, "hun\""},
		{"truncated JSON, value cut under a neutral key", "application/json", `{"user":"bob","note":"card 4111 1111`, true, 100,
			`{"content_type":"application/json","size":100,"truncated":true,"format":"json","value":{"note":"[truncated]","user":"bob"}}`, "4111"},
		{"truncated JSON, number at the end", "", `{"user":"bob","card":4111111`, true, 100,
			`{"content_type":"","size":100,"truncated":true,"format":"json","value":{"card":"[truncated]","user":"bob"}}`, "4111"},
		{"truncated form keeps its complete pairs", "application/x-www-form-urlencoded", "user=bob&password=hunter2&x=hun", true, 99,
			`{"content_type":"application/x-www-form-urlencoded","size":99,"truncated":true,"format":"form","value":{"password":"[REDACTED]","user":"bob"}}`, "hunter2"},
		{"multipart as declared", "multipart/form-data; boundary=XyZ", mp, false, int64(len(mp)),
			`{"content_type":"multipart/form-data; boundary=XyZ","size":` + itoa(len(mp)) + `,"format":"multipart","parts":[` +
				`{"name":"title","size":6,"value":"report"},{"name":"password","size":7,"value":"[REDACTED]"},` +
				`{"content_type":"text/plain","filename":"a.txt","name":"file","omitted":"file","size":19}]}`, "hunter2"},
		{"multipart with a wrong content type and no boundary", "application/x-www-form-urlencoded", mp, false, int64(len(mp)),
			`{"content_type":"application/x-www-form-urlencoded","size":` + itoa(len(mp)) + `,"format":"multipart","parts":[` +
				`{"name":"title","size":6,"value":"report"},{"name":"password","size":7,"value":"[REDACTED]"},` +
				`{"content_type":"text/plain","filename":"a.txt","name":"file","omitted":"file","size":19}]}`, "hunter2"},
		{"multipart truncated in a part", "", mp[:strings.Index(mp, "hunter2")+3], true, int64(len(mp)),
			`{"content_type":"","size":` + itoa(len(mp)) + `,"truncated":true,"format":"multipart","parts":[` +
				`{"name":"title","size":6,"value":"report"},{"name":"password","size":3,"truncated":true}]}`, "hun"},
		{"XML entry named by a key attribute", "text/plain", `<config><entry key="db.password">hunter2</entry><entry key="db.user">app</entry></config>`, false, 86,
			`{"content_type":"text/plain","size":86,"truncated":false,"format":"xml","text":"<config><entry key=\"db.password\">[REDACTED]</entry><entry key=\"db.user\">app</entry></config>"}`, "hunter2"},
		{"XML property with a value attribute", "application/xml", `<?xml version="1.0"?><props><property name="password" value="hunter2"/><property name="x" value="1"/></props>`, false, 104,
			`{"content_type":"application/xml","size":104,"truncated":false,"format":"xml","text":"<?xml version=\"1.0\"?><props><property name=\"password\" value=\"[REDACTED]\"/><property name=\"x\" value=\"1\"/></props>"}`, "hunter2"},
		{"XML name and value elements", "", `<param><value>hunter2</value><name>api_key</name></param>`, false, 58,
			`{"content_type":"","size":58,"truncated":false,"format":"xml","text":"<param><value>[REDACTED]</value><name>api_key</name></param>"}`, "hunter2"},
		{"XML sensitive element with children", "application/xml", `<a><secrets><user>u</user><pw>hunter2</pw></secrets><b token="hunter2">ok</b></a>`, false, 77,
			`{"content_type":"application/xml","size":77,"truncated":false,"format":"xml","text":"<a><secrets>[REDACTED]</secrets><b token=\"[REDACTED]\">ok</b></a>"}`, "hunter2"},
		{"truncated XML", "application/xml", `<a><password>hunter2</pass`, true, 500,
			`{"content_type":"application/xml","size":500,"truncated":true,"omitted":"truncated"}`, "hunter2"},
		{"YAML list and block scalar", "text/plain", "db:\n  user: app\n  passwords:\n    - hunter2\n    - hunter3\nprivate_key: |\n  -----BEGIN KEY-----\n  hunter2\n", false, 97,
			`{"content_type":"text/plain","size":97,"truncated":false,"format":"yaml","value":{"db":{"passwords":"[REDACTED]","user":"app"},"private_key":"[REDACTED]"}}`, "hunter"},
		{"YAML name/value list, declared", "application/yaml", "env:\n  - name: HOME\n    value: /root\n  - name: x\n    secret: hunter2\n", false, 70,
			`{"content_type":"application/yaml","size":70,"truncated":false,"format":"yaml","value":{"env":[{"name":"HOME","value":"/root"},{"name":"x","secret":"[REDACTED]"}]}}`, "hunter2"},
		{"YAML aliases are not expanded", "application/yaml", "a: &x [1, 2]\nb: *x\n", false, 19,
			`{"content_type":"application/yaml","size":19,"truncated":false,"format":"yaml","value":{"a":[1,2],"b":"*x"}}`, ""},
		{"netrc", "text/plain", "machine api.example.com login bob password hunter2\ndefault\n  login anon\n  password hunter3\n", false, 90,
			`{"content_type":"text/plain","size":90,"truncated":false,"text":"machine api.example.com login bob password [REDACTED]\ndefault\n  login anon\n  password [REDACTED]\n"}`, "hunter"},
		{"pgpass", "", "db.example.com:5432:app:bob:hunter2\n*:*:*:ro:hunter:3\n", false, 55,
			`{"content_type":"","size":55,"truncated":false,"text":"db.example.com:5432:app:bob:[REDACTED]\n*:*:*:ro:[REDACTED]\n"}`, "hunter"},
		{"declared JSON that does not parse", "application/json", `hello hunter2`, false, 13,
			`{"content_type":"application/json","size":13,"omitted":"unparsed"}`, "hunter2"},
		{"declared form that does not parse", "application/x-www-form-urlencoded", "machine h login u password hunter2", false, 34,
			`{"content_type":"application/x-www-form-urlencoded","size":34,"omitted":"unparsed"}`, "hunter2"},
		{"declared multipart that does not parse", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhunter2", false, 54,
			`{"content_type":"multipart/form-data; boundary=b","size":54,"omitted":"unparsed"}`, "hunter2"},
		{"truncated text is kept as text", "text/plain", "user bob\ntoken: hunter2\nmore", true, 900,
			`{"content_type":"text/plain","size":900,"truncated":true,"text":"user bob\ntoken: [REDACTED]\n[truncated]"}`, "hunter2"},
		{"truncated text drops its cut token", "", "[log] ok\ndata=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ", true, 900,
			`{"content_type":"","size":900,"truncated":true,"text":"[log] ok\ndata=[truncated]"}`, "eyJzdWIi"},
		{"URL-encoded pairs in text", "text/plain", "id=1&note=x y&hdr=Bearer+hunter2&cfg=db_password%3Dhunter3", false, 58,
			`{"content_type":"text/plain","size":58,"truncated":false,"text":"id=1&note=x y&hdr=Bearer [REDACTED]&cfg=db_password=[REDACTED]"}`, "hunter"},
		{"truncated with nothing kept", "text/plain", "", true, 70,
			`{"content_type":"text/plain","size":70,"truncated":true,"omitted":"truncated"}`, ""},
		{"HTML stays text, its password inputs hidden", "text/html", `<html><body><input name="password" value="x"></body></html>`, false, 58,
			`{"content_type":"text/html","size":58,"truncated":false,"text":"<html><body><input name=\"password\" value=\"[REDACTED]\"></body></html>"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Body(&core.Body{ContentType: tt.ct, Data: []byte(tt.data), Truncated: tt.trunc, Size: tt.size})
			if tt.want != "" && string(got) != tt.want {
				t.Errorf("Body:\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("invalid JSON %s", got)
			}
			if tt.secret != "" && strings.Contains(string(got), tt.secret) {
				t.Errorf("secret %q stored: %s", tt.secret, got)
			}
		})
	}
}

// TestRedactBodyNotCaptured: a body whose bytes were not read is stored as what it is, never as
// an empty body.
func TestRedactBodyNotCaptured(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	tests := []struct {
		name string
		body core.Body
		want string
	}{
		{"event stream", core.Body{ContentType: "text/event-stream", Size: 120, NotCaptured: "streamed"},
			`{"content_type":"text/event-stream","size":120,"omitted":"not_captured","reason":"streamed"}`},
		{"unknown size", core.Body{ContentType: "application/json", Size: -1, NotCaptured: "not read by the handler"},
			`{"content_type":"application/json","size":-1,"omitted":"not_captured","reason":"not read by the handler"}`},
		{"binary stays binary", core.Body{ContentType: "image/png", Size: 9, NotCaptured: "unsupported content type"},
			`{"content_type":"image/png","size":9,"omitted":"binary"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Body(&tt.body); string(got) != tt.want {
				t.Errorf("Body:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestRedactTextLineFormats: Text hides what line formats put after or under a sensitive key.
func TestRedactTextLineFormats(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	tests := []struct{ name, in, want string }{
		{"YAML list under a sensitive key", "log line: x\ntokens:\n  - hunter2\n  - hunter3\nnext: 1\n\tbad",
			"log line: x\ntokens:\n  [REDACTED]\nnext: 1\n\tbad"},
		{"list items at the key's column", "api_keys:\n- hunter2\n- hunter3\nother: 1",
			"api_keys:\n[REDACTED]\nother: 1"},
		{"block scalar", "x: [\nprivate_key: |\n  -----BEGIN PRIVATE KEY-----\n  hunter2\n\n  hunter3\nuser: bob",
			"x: [\nprivate_key: [REDACTED]\n  [REDACTED]\nuser: bob"},
		{"nested mapping in a list item", "- name: a\n  secret:\n    x: hunter2\n  ok: 1",
			"- name: a\n  secret:\n    [REDACTED]\n  ok: 1"},
		{"folded scalar, quoted key", "\"password\": >-\n   hunter2\n   hunter3\nz",
			"\"password\": >-\n   [REDACTED]\nz"},
		{"continued plain scalar", "password: hunter2\n  hunter3\nz: 1", "password: [REDACTED]\n  [REDACTED]\nz: 1"},
		{"netrc on one line", "machine h login u password hunter2 account hunter3", "machine h login u password [REDACTED] account [REDACTED]"},
		{"not netrc", "my password is weak", "my password is weak"},
		{"pgpass with escapes", "h:5432:db:u:hun\\:ter2", "h:5432:db:u:[REDACTED]"},
		{"times are not pgpass", "at 12:30:45:01:02 ok", "at 12:30:45:01:02 ok"},
		{"neutral key keeps its block", "users:\n  - bob\n  - ann", "users:\n  - bob\n  - ann"},
		{"XML-like text", `<a>&<passwords><item>hunter1</item><item>hunter2</item></passwords><entry key="db.password">hunter3</entry>` +
			`<property name="DB_PASSWORD" value="hunter4"/><param><value>hunter5</value><name>api_key</name></param><b>ok</b>`,
			`<a>&<passwords>[REDACTED]</passwords><entry key="db.password">[REDACTED]</entry>` +
				`<property name="DB_PASSWORD" value="[REDACTED]"/><param><value>[REDACTED]</value><name>api_key</name></param><b>ok</b>`},
		{"name/value in broken JSON", `{"x":"" 1,"env":[{"name":"HOME","value":"/root"},{"value":"hunter2","name":"DB_PASSWORD"}]`,
			`{"x":"" 1,"env":[{"name":"HOME","value":"/root"},{"value":"[REDACTED]","name":"DB_PASSWORD"}]`},
		{"name/value in YAML-like lines", "[x\nenv:\n  - name: HOME\n    value: /root\n  - value: hunter2\n    name: DB_PASSWORD\n    data: |\n      hunter3\n  - name: API_TOKEN\n    value: hunter4\nnext: 1",
			"[x\nenv:\n  - name: HOME\n    value: /root\n  - value: [REDACTED]\n    name: DB_PASSWORD\n    data: [REDACTED]\n      [REDACTED]\n  - name: API_TOKEN\n    value: [REDACTED]\nnext: 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Text(tt.in); got != tt.want {
				t.Errorf("Text(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestRedactBodyIsLinear: inputs that would make the body and line-format detectors quadratic
// (every unit opens a block, an entry or an element that is never closed) take about eight times
// as long for eight times the size, not sixty-four. The best of three runs is compared, so that
// a loaded machine does not decide; under the race detector only the results are checked.
func TestRedactBodyIsLinear(t *testing.T) {
	r := core.NewRedactor(nil, nil)
	units := []struct{ ct, unit string }{
		{"text/plain", "<password>"},
		{"text/plain", `<e key="password">`},
		{"text/plain", "<name>password</name><x>1</x>"},
		{"text/plain", "name: password\n"},
		{"text/plain", "  value: x\n"},
		{"text/plain", "password:\n"},
		{"text/plain", "machine password "},
		{"text/plain", "h:1:d:u:p\n"},
		{"text/plain", `{"name":"password","value":"x",`},
		{"text/plain", "a=b&c=%41+"},
		{"application/yaml", "- name: password\n  value: x\n"},
		{"application/xml", "<a><password>x</password>"},
		{"multipart/form-data", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n"},
		{"application/json", `{"a":[`},
	}
	best := func(s string, ct string) time.Duration {
		var d time.Duration
		for i := range 3 {
			start := time.Now()
			out := r.Body(&core.Body{ContentType: ct, Data: []byte(s), Size: int64(len(s))})
			if e := time.Since(start); i == 0 || e < d {
				d = e
			}
			if !json.Valid(out) {
				t.Fatalf("Body(%.20q…) is not JSON", s)
			}
		}
		return d
	}
	// 8 times the input in 32 times the time is not linear (quadratic would be 64 times). A
	// machine busy with other work can stall one measurement, so a unit fails only when three
	// measurements in a row say so: a quadratic path says so every time.
	for _, u := range units {
		var small, large time.Duration
		for range 3 {
			small = best(strings.Repeat(u.unit, 1<<14/len(u.unit)), u.ct)
			large = best(strings.Repeat(u.unit, 1<<17/len(u.unit)), u.ct)
			if rdRace || large <= 32*small || large <= 100*time.Millisecond {
				break
			}
		}
		if !rdRace && large > 32*small && large > 100*time.Millisecond {
			t.Errorf("Body(%q × n): %v for 16 KiB, %v for 128 KiB", u.unit, small, large)
		}
	}
}

func BenchmarkRedactBodySniffed(b *testing.B) {
	r := core.NewRedactor(nil, nil)
	for _, bb := range []struct{ name, ct, data string }{
		{"json-as-form", "application/x-www-form-urlencoded", `{"user":"bob","password":"hunter2","items":[1,2,3],"profile":{"city":"Oslo"}}`},
		{"form", "application/x-www-form-urlencoded", "user=bob&password=hunter2&items=1&items=2&city=Oslo&next=%2Fhome"},
		{"yaml", "application/yaml", "user: bob\npassword: hunter2\nitems: [1, 2, 3]\nprofile:\n  city: Oslo\n"},
		{"xml", "application/xml", "<req><user>bob</user><password>hunter2</password><items><i>1</i><i>2</i></items></req>"},
		{"text", "text/plain", "user bob logged in from 10.0.0.1\nAuthorization: Bearer abc\nmachine h login u password p\n"},
	} {
		body := &core.Body{ContentType: bb.ct, Data: []byte(bb.data), Size: int64(len(bb.data))}
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Body(body)
			}
		})
	}
}
