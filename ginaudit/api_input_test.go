package ginaudit_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// Malformed filters, times, cursors, bodies, oversized requests, unknown fields and invalid UTF-8
// each get a clear 4xx JSON error; nothing is ever written by a refused request.
func TestAPIBadInput(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.MaxBodyBytes = 64 << 10; o.MaxBulkRecords = 3 })
	e.registerTenants("acme")
	apiSeed(e, "acme", 3)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	e.flush()
	rows := e.count("TRUE")
	long := strings.Repeat("x", 5000)
	type req struct {
		method, path, body string
		headers            []string
		token              string
	}
	var reqs []req
	get := func(paths ...string) {
		for _, p := range paths {
			reqs = append(reqs, req{method: "GET", path: p})
		}
	}
	for _, base := range []string{"/logs?", "/logs/export?format=csv&", "/logs/stats?", "/logs/stream?"} {
		for _, q := range []string{
			"from=yesterday", "from=2026-02-30", "to=1700000000", "from=2026-01-02&to=2026-01-01", "kind=http,unknown",
			"severity=fatal", "actor_type=root", "status_min=99", "status_max=abc", "status_min=500&status_max=200",
			"ip=300.1.1.1", "ip=10.0.0.0/40", "ip=fe80::1%25en0", "action=a&action=b", "action=", "q=%ff%fe",
			"actor_id=a%00b", "resource_id=" + long, "unknown=1", "Action=x", "tenant_id=", "tenant_id=a%20b",
			"q=" + strings.Repeat("w", 600), "from=%zz", "limitt=5", "changed=e%20mail", "changed=a,,b",
			"changed=" + strings.Repeat("f", 129),
		} {
			get(base + q)
		}
	}
	get("/logs?limit=0", "/logs?limit=-1", "/logs?limit=201", "/logs?limit=abc", "/logs?limit=1&limit=2", "/logs?sort=sideways",
		"/logs?cursor=garbage", "/logs?cursor="+strings.Repeat("A", 55), "/logs?cursor="+strings.Repeat("A", 5000), "/logs?cursor=%ff",
		"/logs?cursor=", "/logs/export", "/logs/export?format=xml", "/logs/export?format=csv&format=ndjson", "/logs/export?format=csv&sort=up",
		"/logs/stats?bucket=week", "/logs/stats?top=0", "/logs/stats?top=1000", "/logs/stats?bucket=hour&from=2000-01-01",
		"/logs/not-a-uuid", "/logs/%7B01900000-0000-7000-8000-000000000001%7D", "/logs/"+long, "/logs/%ff",
		"/logs/01900000-0000-7000-8000-000000000001?unknown=1")
	reqs = append(reqs, req{method: "GET", path: "/logs/stream", headers: []string{"Accept", "application/json"}})

	bodies := []string{
		"", "null", "[]", "{", `{"action":"a"} trailing`, "{\"action\":\"\xff\"}", `{"action":"a","unknown":1}`,
		`{"action":1}`, `{"action":"a","status":"200"}`, `{"action":"a","metadata":[1]}`, `{"action":"a","metadata":{"k":"\u0000"}}`,
		`{"action":"a","occurred_at":"2026-13-01T00:00:00Z"}`, `{"action":"a","occurred_at":"3000-01-01T00:00:00Z"}`,
		`{"action":"a","ip":"nope"}`, `{"action":"a","kind":"mystery"}`, `{"action":"` + long + `"}`, `{"action":"a","diff":{"f":1}}`,
		`{"action":"a","query":{"k":"not-a-list"}}`, `{"action":"a","duration_us":1.5}`, `{"action":"\u0007"}`,
		`{"action":"a","metadata":{"big":"` + strings.Repeat("y", 70<<10) + `"}}`,
	}
	for _, b := range bodies {
		reqs = append(reqs, req{method: "POST", path: "/logs", body: b})
	}
	for _, b := range []string{
		`{"logs":null}`, `{"logs":{}}`, `{"logs":[]}`, `[{"action":"a"}]`, `{"logs":[{"action":"a"}],"extra":1}`,
		`{"logs":[{"action":"a"},{"action":"b"},{"action":"c"},{"action":"d"}]}`, `{"logs":[{"action":"ok"},{"kind":"custom"}]}`,
		`{"logs":[{"action":"ok"},{"action":"x","severity":"loud"}]}`, `{"logs":[1,2]}`,
	} {
		reqs = append(reqs, req{method: "POST", path: "/logs/bulk", body: b})
	}
	for _, h := range [][]string{
		{"Content-Type", "text/plain"}, {"Content-Type", ""}, {"Content-Type", "application/json; charset"},
		{"Idempotency-Key", "has space"}, {"Idempotency-Key", strings.Repeat("k", 256)}, {"Idempotency-Key", "clé"},
	} {
		reqs = append(reqs, req{method: "POST", path: "/logs", body: `{"action":"fine"}`, headers: h})
	}
	reqs = append(reqs, req{method: "POST", path: "/logs?tenant_id=x&tenant_id=y", body: `{"action":"fine"}`})
	for _, q := range []string{"", "?tenant_id=acme", "?tenant_id=acme&older_than=", "?tenant_id=acme&older_than=soon",
		"?tenant_id=acme&older_than=-5h", "?tenant_id=acme&older_than=2999-01-01T00:00:00Z", "?tenant_id=acme&older_than=1h",
		"?tenant_id=acme&older_than=99999999d", "?tenant_id=acme&older_than=30d&older_than=40d", "?tenant_id=acme&older_than=30d&x=1"} {
		reqs = append(reqs, req{method: "DELETE", path: "/logs/cleanup" + q, token: admin})
	}
	for _, b := range []string{"", "nope", `{"id":""}`, `{"id":"a b"}`, `{"id":"ok","name":"` + long + `"}`, `{"id":"ok","status":1}`,
		`{"id":"ok","retention_days":-2}`, `{"id":"ok","slug":"sl ug"}`, "{\"id\":\"\xff\"}"} {
		reqs = append(reqs, req{method: "POST", path: "/tenants", body: b, token: admin})
	}
	for _, b := range []string{`{"status":"zombie"}`, `{"retention_days":99999999}`, `{"name":5}`, `{"unknown":true}`} {
		reqs = append(reqs, req{method: "PATCH", path: "/tenants/acme", body: b, token: admin})
	}
	reqs = append(reqs, req{method: "GET", path: "/tenants?limit=0", token: admin}, req{method: "GET", path: "/tenants?after=a%20b", token: admin},
		req{method: "GET", path: "/tenants?bogus=1", token: admin})

	for _, r := range reqs {
		tok := r.token
		if tok == "" {
			tok = user
		}
		var body []byte
		if r.method == "POST" || r.method == "PATCH" {
			body = []byte(r.body)
		}
		resp := e.do(r.method, r.path, tok, body, r.headers...)
		what := r.method + " " + apiTruncateTest(r.path) + " " + apiTruncateTest(r.body)
		if resp.status < 400 || resp.status > 499 {
			t.Errorf("%s: status %d %s", what, resp.status, apiTruncateTest(string(resp.body)))
			continue
		}
		var eb struct {
			Error struct {
				Code, Message string
			}
		}
		if err := json.Unmarshal(resp.body, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Errorf("%s: %d without a JSON error: %s", what, resp.status, apiTruncateTest(string(resp.body)))
		}
		if !strings.HasPrefix(resp.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: content type %q", what, resp.header.Get("Content-Type"))
		}
	}
	e.flush()
	if n := e.count("action NOT LIKE 'auditlog.%' AND action NOT LIKE 'tenant.%'"); n != rows {
		t.Fatalf("refused requests wrote %d rows", n-rows)
	}
	if n := e.count("action LIKE 'tenant.%'"); n != 0 {
		t.Fatalf("refused tenant requests were recorded as changes: %d", n)
	}
}

func apiTruncateTest(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
