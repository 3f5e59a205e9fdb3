package ginaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

const (
	apiTenantA  = "tenant-a-xq"
	apiTenantB  = "tenant-b-zr"
	apiDeepMark = "DEEPSECRETOFA" // only in tenant A's records; sent by tenant B only in the final probe
)

// apiTwin returns a record whose every field matches the isolation filters; tenant A's twin
// also carries apiDeepMark.
func apiTwin(tenant string, at time.Time) *core.Record {
	r := &core.Record{
		Kind: core.KindDelete, Action: "secret.op", Severity: core.SeverityCritical, OccurredAt: at,
		Tenant:       core.Tenant{ID: tenant},
		Actor:        core.Actor{ID: "shared-actor", Type: core.ActorService, Email: "Shared@Example.com"},
		ResourceType: "vault", ResourceID: "v-1", RequestID: "req-shared", Method: "DELETE", Path: "/vault/v-1",
		Status: 418, IP: netip.MustParseAddr("203.0.113.7"), Metadata: map[string]any{"word": "zebra"},
		Diff: map[string]core.Change{"email": {From: "old@example.com", To: "new@example.com"}},
	}
	if tenant == apiTenantA {
		r.Metadata["deep"] = apiDeepMark
		r.Before = map[string]any{"deep": apiDeepMark}
	}
	return r
}

// apiIsolationFilters match both twins.
var apiIsolationFilters = []string{
	"", "actor_id=shared-actor", "actor_type=service", "actor_email=shared%40example.com", "action=secret.op",
	"action_prefix=secret.", "kind=delete", "severity=critical", "resource_type=vault", "resource_type=vault&resource_id=v-1",
	"request_id=req-shared", "status_min=418&status_max=418", "ip=203.0.113.7", "ip=203.0.113.0%2F24", "q=zebra",
	"from=2020-01-01&to=2030-01-01", "changed=email", "changed=email,phone&resource_type=vault",
	"include_meta=true", "q=zebra&include_meta=true",
}

// Every endpoint, every filter, cursor, export and stream tried by tenant B with tenant A's ids,
// filters and cursors reveals nothing of A; the same requests do return B's own twin records, so
// each probe can tell.
func TestAPITenantIsolation(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.MaxStreams = 100 })
	e.registerTenants(apiTenantA, apiTenantB)
	tokA := apiToken(t, "user-a", core.ActorTenantUser, apiTenantA)
	tokB := apiToken(t, "user-b", core.ActorTenantUser, apiTenantB)
	svcB := apiToken(t, "svc-b", core.ActorService, apiTenantB)
	base := time.Now().Add(-time.Hour)
	var aIDs []string
	for i := range 5 {
		a, b := apiTwin(apiTenantA, base.Add(time.Duration(i)*time.Second)), apiTwin(apiTenantB, base.Add(time.Duration(i)*time.Second))
		e.write(a, b)
		aIDs = append(aIDs, a.ID.String())
	}
	// leaks reports whatever of A a response body shows.
	forbidden := append([]string{apiDeepMark, apiTenantA}, aIDs...)
	leaks := func(body []byte) string {
		for _, f := range forbidden {
			if bytes.Contains(body, []byte(f)) {
				return f
			}
		}
		return ""
	}
	check := func(what string, r apiResp) {
		t.Helper()
		if f := leaks(r.body); f != "" {
			t.Errorf("%s: the response shows %q of tenant A: %d %s", what, f, r.status, r.body)
		}
		if r.status >= 500 {
			t.Errorf("%s: %d %s", what, r.status, r.body)
		}
	}

	// A's cursors.
	var pageA apiPage
	e.do(http.MethodGet, "/logs?limit=1&action=secret.op", tokA, nil).decode(t, &pageA)
	if pageA.NextCursor == "" {
		t.Fatal("no cursor for tenant A")
	}
	e.flush() // A's own search is recorded in A's log
	rowsOfA := e.count("tenant_id = $1", apiTenantA)

	for _, f := range apiIsolationFilters {
		for _, extra := range []string{"", "&sort=oldest", "&limit=1"} {
			q := "?" + f + extra
			r := e.do(http.MethodGet, "/logs"+q, tokB, nil)
			check("GET /logs"+q, r)
			var p apiPage
			r.decode(t, &p)
			if r.status != 200 || len(p.Logs) == 0 {
				t.Errorf("GET /logs%s: %d, %d records; B's own twin was not found", q, r.status, len(p.Logs))
			}
			for _, l := range p.Logs {
				if l.TenantID != apiTenantB {
					t.Errorf("GET /logs%s returned a record of %q", q, l.TenantID)
				}
			}
			// A's cursor with B's token, with and without A's filters.
			r = e.do(http.MethodGet, "/logs"+q+"&cursor="+url.QueryEscape(pageA.NextCursor), tokB, nil)
			check("A's cursor", r)
			if r.status != 400 || r.errCode() != "invalid_cursor" {
				t.Errorf("A's cursor with %s: %d %s", q, r.status, r.body)
			}
		}
		for _, format := range []string{"csv", "ndjson"} {
			q := "?format=" + format + "&" + f
			r := e.do(http.MethodGet, "/logs/export"+q, tokB, nil)
			check("export"+q, r)
			if r.status != 200 || !bytes.Contains(r.body, []byte(apiTenantB)) {
				t.Errorf("export%s: %d, B's twin missing", q, r.status)
			}
		}
		r := e.do(http.MethodGet, "/logs/stats?"+f, tokB, nil)
		check("stats?"+f, r)
		var st store.Stats
		r.decode(t, &st)
		if r.status != 200 || st.Total == 0 {
			t.Errorf("stats?%s: %d total %d", f, r.status, st.Total)
		}
		// Naming A is refused outright.
		for _, path := range []string{"/logs", "/logs/export", "/logs/stats", "/logs/stream", "/logs/" + aIDs[0]} {
			q := "?tenant_id=" + apiTenantA
			if f != "" && !strings.HasPrefix(path, "/logs/"+aIDs[0]) {
				q += "&" + f
			}
			if strings.HasSuffix(path, "/export") {
				q += "&format=csv"
			}
			r := e.do(http.MethodGet, path+q, tokB, nil, "Accept", "text/event-stream")
			check(path+q, r)
			if r.status != 403 {
				t.Errorf("%s%s: %d %s", path, q, r.status, r.body)
			}
		}
	}
	for _, id := range aIDs {
		for _, tok := range []string{tokB, svcB} {
			r := e.do(http.MethodGet, "/logs/"+id, tok, nil)
			check("GET /logs/{A's id}", r)
			if r.status != 404 {
				t.Errorf("GET /logs/%s with B's token: %d", id, r.status)
			}
		}
	}
	// Writes and administration aimed at A.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/logs?tenant_id=" + apiTenantA, `{"action":"x"}`},
		{"POST", "/logs/bulk?tenant_id=" + apiTenantA, `{"logs":[{"action":"x"}]}`},
		{"DELETE", "/logs/cleanup?tenant_id=" + apiTenantA + "&older_than=2999-01-01T00:00:00Z", ""},
		{"DELETE", "/logs/cleanup?older_than=30d", ""},
		{"GET", "/tenants", ""}, {"GET", "/tenants/" + apiTenantA, ""},
		{"PATCH", "/tenants/" + apiTenantA, `{"status":"suspended"}`}, {"POST", "/tenants", `{"id":"x"}`},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		r := e.do(c.method, c.path, tokB, body)
		check(c.method+" "+c.path, r)
		if r.status != 403 {
			t.Errorf("%s %s with B's token: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// B's own writes land in B, whatever the body says.
	r := e.do(http.MethodPost, "/logs", tokB, []byte(`{"action":"x","tenant_id":"`+apiTenantA+`"}`))
	if r.status != 422 || r.errCode() != "invalid_records" {
		t.Errorf("a body naming a tenant: %d %s", r.status, r.body)
	}
	e.flush()
	if n := e.count("tenant_id = $1", apiTenantA); n != rowsOfA {
		t.Fatalf("tenant A has %d rows, had %d", n, rowsOfA)
	}

	// Streams: B subscribes with every filter; A's twins are written first, then B's. Each
	// stream must show B's twins and none of A's.
	e.flush()
	var streams []*apiSSE
	for _, f := range apiIsolationFilters {
		v, _ := url.ParseQuery(f)
		streams = append(streams, e.openSSE(tokB, v))
	}
	wsCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(wsCtx, strings.Replace(e.base, "http", "ws", 1)+"/logs/stream?action=secret.op&access_token="+tokB, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	now := time.Now()
	var aLive []*core.Record
	for i := range 3 {
		aLive = append(aLive, apiTwin(apiTenantA, now.Add(time.Duration(i)*time.Millisecond)))
	}
	e.write(aLive...)
	for _, r := range aLive {
		forbidden = append(forbidden, r.ID.String())
	}
	var bLive []*core.Record
	for i := range 3 {
		bLive = append(bLive, apiTwin(apiTenantB, now.Add(time.Duration(i)*time.Millisecond)))
	}
	e.write(bLive...)
	for i, s := range streams {
		got := map[string]bool{}
		for len(got) < len(bLive) {
			ev := s.next(t)
			if f := leaks([]byte(ev.data + ev.id)); f != "" {
				t.Fatalf("stream %q showed %q of tenant A: %+v", apiIsolationFilters[i], f, ev)
			}
			if ev.name != "log" {
				t.Fatalf("stream %q: event %+v", apiIsolationFilters[i], ev)
			}
			var rec store.Record
			if err := json.Unmarshal([]byte(ev.data), &rec); err != nil || rec.TenantID != apiTenantB {
				t.Fatalf("stream %q: %v %+v", apiIsolationFilters[i], err, rec)
			}
			if rec.Action == "secret.op" {
				got[rec.ID.String()] = true
			}
		}
	}
	for range bLive {
		_, msg, err := ws.Read(wsCtx)
		if err != nil {
			t.Fatal(err)
		}
		if f := leaks(msg); f != "" {
			t.Fatalf("WebSocket stream showed %q of tenant A: %s", f, msg)
		}
	}

	// Last, B searches for a word that only A's records hold. B's own records of these searches
	// then hold the word in their filters (and may match the next probe), so what must not show
	// is A: its tenant id, its record ids, its action.
	ofA := append([]string{apiTenantA, "secret.op"}, forbidden[2:]...)
	probe := func(what string, r apiResp) {
		t.Helper()
		if r.status != 200 {
			t.Errorf("%s: %d %s", what, r.status, r.body)
		}
		for _, f := range ofA {
			if bytes.Contains(r.body, []byte(f)) {
				t.Errorf("%s: the response shows %q of tenant A: %s", what, f, r.body)
			}
		}
	}
	q := "q=" + apiDeepMark
	var ownA apiPage
	e.do(http.MethodGet, "/logs?"+q, tokA, nil).decode(t, &ownA)
	if len(ownA.Logs) == 0 {
		t.Fatalf("tenant A's own search for %s finds nothing: the probe would prove nothing", apiDeepMark)
	}
	r = e.do(http.MethodGet, "/logs?"+q, tokB, nil)
	probe("GET /logs?"+q, r)
	var found apiPage
	r.decode(t, &found)
	if len(found.Logs) != 0 {
		t.Errorf("GET /logs?%s found %d records for tenant B", q, len(found.Logs))
	}
	for _, format := range []string{"csv", "ndjson"} {
		probe("export?"+q, e.do(http.MethodGet, "/logs/export?format="+format+"&"+q, tokB, nil))
	}
	r = e.do(http.MethodGet, "/logs/stats?"+q, tokB, nil)
	probe("stats?"+q, r)
	var st store.Stats
	r.decode(t, &st)
	for _, c := range st.ByAction {
		if !strings.HasPrefix(c.Value, "auditlog.") {
			t.Errorf("stats?%s counts %q", q, c.Value)
		}
	}
}
