package ginaudit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// apiAuditedEnv is apiEnv with the API mounted behind Middleware (bodies captured), as
// examples/auditlog-service runs it, so that every request has its own http record besides the
// API's records of its own use. It returns the env to send requests through and the engine.
func apiAuditedEnv(t *testing.T, mutate func(*ginaudit.APIOptions)) (*apiEnv, *gin.Engine) {
	t.Helper()
	e := apiNewEnv(t, nil)
	v := apiVerifier(t)
	r := gin.New()
	api := r.Group("/api/v1")
	api.Use(ginaudit.Middleware(ginaudit.Options{Writer: e.w, Verifier: v,
		Config: core.Config{CaptureRequestBody: true, CaptureResponseBody: true}}))
	opts := ginaudit.APIOptions{Verifier: v, Writer: e.w, RateLimit: -1, MaxStreams: 100}
	if mutate != nil {
		mutate(&opts)
	}
	if err := ginaudit.MountAPI(api, e.st, opts); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		e.st.Close()
		srv.Close()
	})
	audited := *e
	audited.srv, audited.base = srv, srv.URL+"/api/v1"
	return &audited, r
}

const (
	apiHomeA    = "home-tenant-qa"  // the tenant claim of the administrator's token
	apiOtherB   = "acted-tenant-kb" // the tenant the administrator works on
	apiCreatedC = "created-tenant-wc"
	apiMarkB    = "BMARKZQ" // filter values and bodies of the work on B
)

// A platform administrator whose token carries tenant A's claim and who works on tenant B (by
// tenant_id, by the path of /tenants/{id}, by reading one of B's records, by creating a tenant)
// leaves no trace in tenant A: the request's own http record and the API's records of its use
// are written to the tenant worked on, and work on no single tenant to the platform scope (no
// tenant). Every route of the API has a case, so a new route without one fails the test.
func TestAPIAdminWorkIsRecordedInTheTenantWorkedOn(t *testing.T) {
	e, engine := apiAuditedEnv(t, nil)
	e.registerTenants(apiHomeA, apiOtherB)
	admin := apiToken(t, "root", core.ActorPlatformAdmin, apiHomeA)
	userA := apiToken(t, "user-a", core.ActorTenantUser, apiHomeA)
	recB := &core.Record{Kind: core.KindCustom, Action: "secret.op", Tenant: core.Tenant{ID: apiOtherB},
		OccurredAt: time.Now().Add(-48 * time.Hour), Metadata: map[string]any{"mark": apiMarkB}}
	e.write(recB)
	bID := recB.ID.String()
	forB := "tenant_id=" + apiOtherB + "&q=" + apiMarkB

	const platform = "" // recorded without a tenant
	cases := []struct {
		route  string // method and route template, as the router lists it
		method string
		path   string
		body   string
		status int
		tenant string // where the http record goes
		meta   string // the API's record of its own use, written to the same tenant; "" for none
	}{
		{"GET /openapi.yaml", "GET", "/openapi.yaml", "", 200, platform, ""},
		{"POST /logs", "POST", "/logs?tenant_id=" + apiOtherB, `{"action":"ingest.` + apiMarkB + `"}`, 201, apiOtherB, ""},
		{"POST /logs", "POST", "/logs", `{"action":"platform.` + apiMarkB + `"}`, 201, platform, ""},
		{"POST /logs/bulk", "POST", "/logs/bulk?tenant_id=" + apiOtherB, `{"logs":[{"action":"bulk.` + apiMarkB + `"}]}`, 201, apiOtherB, ""},
		{"GET /logs", "GET", "/logs?" + forB, "", 200, apiOtherB, "auditlog.search"},
		{"GET /logs", "GET", "/logs?q=" + apiMarkB, "", 200, platform, "auditlog.search"},
		{"GET /logs", "GET", "/logs?tenant_id=" + apiOtherB + "&bogus=" + apiMarkB, "", 400, apiOtherB, ""},
		{"GET /logs/export", "GET", "/logs/export?format=ndjson&" + forB, "", 200, apiOtherB, "auditlog.export"},
		{"GET /logs/stats", "GET", "/logs/stats?" + forB, "", 200, apiOtherB, "auditlog.stats"},
		{"GET /logs/stream", "SSE", "/logs/stream?" + forB, "", 200, apiOtherB, "auditlog.stream"},
		{"GET /logs/stream", "WS", "/logs/stream?" + forB, "", 101, apiOtherB, "auditlog.stream"},
		{"DELETE /logs/cleanup", "DELETE", "/logs/cleanup?tenant_id=" + apiOtherB + "&older_than=30d", "", 200, apiOtherB, "auditlog.cleanup"},
		{"GET /logs/:id", "GET", "/logs/" + bID, "", 200, apiOtherB, "auditlog.read"},
		{"GET /logs/:id", "GET", "/logs/" + bID + "?tenant_id=" + apiOtherB, "", 200, apiOtherB, "auditlog.read"},
		{"GET /resources/:type/:id/history", "GET", "/resources/items/" + apiMarkB + "/history?tenant_id=" + apiOtherB, "", 200, apiOtherB, "auditlog.history"},
		{"GET /logs/verify", "GET", "/logs/verify?tenant_id=" + apiOtherB, "", 200, apiOtherB, "auditlog.verify"},
		{"GET /chain/public-key", "GET", "/chain/public-key", "", 404, platform, ""}, // no key configured here
		{"GET /chain/checkpoints", "GET", "/chain/checkpoints?tenant_id=" + apiOtherB, "", 200, apiOtherB, "auditlog.checkpoints"},
		{"POST /subjects/erase", "POST", "/subjects/erase?tenant_id=" + apiOtherB, `{"subject":"actor:nobody-` + apiMarkB + `"}`, 200, apiOtherB, "audit.subject_erased"},
		{"POST /viewer/tokens", "POST", "/viewer/tokens?tenant_id=" + apiOtherB, `{"actor":"customer-` + apiMarkB + `"}`, 404, apiOtherB, ""}, // no ViewerTokens here
		{"GET /tenants", "GET", "/tenants", "", 200, platform, ""},
		{"POST /tenants", "POST", "/tenants", `{"id":"` + apiCreatedC + `","name":"` + apiMarkB + `"}`, 201, apiCreatedC, "tenant.created"},
		{"GET /tenants/:id", "GET", "/tenants/" + apiOtherB, "", 200, apiOtherB, ""},
		{"PATCH /tenants/:id", "PATCH", "/tenants/" + apiOtherB, `{"name":"` + apiMarkB + `"}`, 200, apiOtherB, "tenant.updated"},
		{"PUT /tenants/:id/legal-hold", "PUT", "/tenants/" + apiOtherB + "/legal-hold", `{"reason":"` + apiMarkB + `"}`, 200, apiOtherB, "tenant.legal_hold_placed"},
		{"GET /tenants/:id/legal-hold", "GET", "/tenants/" + apiOtherB + "/legal-hold", "", 200, apiOtherB, ""},
		{"GET /tenants/:id/retention", "GET", "/tenants/" + apiOtherB + "/retention", "", 200, apiOtherB, ""},
		{"DELETE /tenants/:id/legal-hold", "DELETE", "/tenants/" + apiOtherB + "/legal-hold", "", 204, apiOtherB, "tenant.legal_hold_released"},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.route] = true
	}
	for _, rt := range engine.Routes() {
		if r := rt.Method + " " + strings.TrimPrefix(rt.Path, "/api/v1"); !covered[r] {
			t.Errorf("route %s has no case", r)
		}
	}

	for i, c := range cases {
		reqID := "meta-case-" + strconv.Itoa(i)
		var status int
		switch c.method {
		case "SSE":
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+admin)
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("X-Request-ID", reqID)
			res, err := apiStreamClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			status = res.StatusCode
			cancel()
			res.Body.Close()
		case "WS":
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			ws, res, err := websocket.Dial(ctx, strings.Replace(e.base, "http", "ws", 1)+c.path,
				&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + admin}, "X-Request-Id": {reqID}}})
			if err != nil {
				t.Fatal(err)
			}
			status = res.StatusCode
			ws.Close(websocket.StatusNormalClosure, "")
			cancel()
		default:
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := e.do(c.method, c.path, admin, body, "X-Request-ID", reqID)
			status = r.status
		}
		if status != c.status {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, status, c.status)
		}
	}
	// Streams are recorded when they end.
	poll(t, "the records of every request", func() bool {
		e.flush()
		return e.count("kind = 'http' AND request_id LIKE 'meta-case-%'") == len(cases)
	})

	// Where each request was recorded.
	for i, c := range cases {
		reqID := "meta-case-" + strconv.Itoa(i)
		where := "tenant_id IS NULL"
		if c.tenant != platform {
			where = "tenant_id = '" + c.tenant + "'"
		}
		if n := e.count("kind = 'http' AND request_id = $1 AND "+where, reqID); n != 1 {
			var got *string
			_ = e.db.Pool.QueryRow(context.Background(), `SELECT tenant_id FROM audit_logs WHERE kind = 'http' AND request_id = $1`, reqID).Scan(&got)
			t.Errorf("%s %s: the http record is in %v, want %q", c.method, c.path, apiStrPtr(got), c.tenant)
		}
		if n := e.count("kind = 'http' AND request_id = $1 AND resource_type IN ('audit_logs', 'audit_tenants')", reqID); n != 1 {
			t.Errorf("%s %s: the http record is not marked as the service's own", c.method, c.path)
		}
		if c.meta == "" {
			continue
		}
		if n := e.count("kind = 'custom' AND action = $1 AND request_id = $2 AND "+where, c.meta, reqID); n != 1 {
			t.Errorf("%s %s: %d %s records in %q", c.method, c.path, n, c.meta, c.tenant)
		}
	}

	// Nothing in tenant A mentions B, the created tenant, B's record or the values used on B.
	mentions := "(to_jsonb(audit_logs)::text LIKE '%" + apiOtherB + "%' OR to_jsonb(audit_logs)::text LIKE '%" + apiCreatedC +
		"%' OR to_jsonb(audit_logs)::text LIKE '%" + bID + "%' OR to_jsonb(audit_logs)::text LIKE '%" + apiMarkB + "%')"
	if n := e.count("tenant_id = $1 AND "+mentions, apiHomeA); n != 0 {
		t.Errorf("%d records of tenant A mention the work on B", n)
	}
	if n := e.count("tenant_id = $1", apiHomeA); n != 0 {
		t.Errorf("the administrator's work wrote %d records into the home tenant of the token", n)
	}
	// Nor does what A's users read, with the service's own records included.
	for _, p := range []string{"/logs?include_meta=true&limit=200", "/logs/export?format=ndjson&include_meta=true",
		"/logs/stats?include_meta=true&top=100", "/logs?q=" + apiMarkB + "&include_meta=true"} {
		r := e.do(http.MethodGet, p, userA, nil)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
		for _, s := range []string{apiOtherB, apiCreatedC, bID, apiMarkB} {
			if strings.Contains(string(r.body), s) && !strings.Contains(p, s) {
				t.Errorf("tenant A's user reads %q in %s: %s", s, p, apiTruncateTest(string(r.body)))
			}
		}
	}
}

func apiStrPtr(s *string) string {
	if s == nil {
		return "no tenant"
	}
	return url.QueryEscape(*s)
}

// Suspending a tenant ends its users' open streams, SSE and WebSocket, within seconds, with a
// final event or close code saying why, whether the suspension comes through the API or from
// another process; new streams are refused. A platform administrator's stream of the tenant
// goes on.
func TestAPIStreamEndsWhenTenantSuspended(t *testing.T) {
	const bound = 5 * time.Second // the store checks every second
	for _, how := range []string{"PATCH /tenants/{id}", "another process"} {
		t.Run(how, func(t *testing.T) {
			e := apiNewEnv(t, nil)
			e.registerTenants("acme")
			user := apiToken(t, "u", core.ActorTenantUser, "acme")
			admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
			sse := e.openSSE(user, nil)
			adminSSE := e.openSSE(admin, url.Values{"tenant_id": {"acme"}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, apiWSURL(e, "access_token="+user), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			wsEnd := make(chan error, 1)
			go func() {
				for {
					if _, _, err := ws.Read(ctx); err != nil {
						wsEnd <- err
						return
					}
				}
			}()
			// Both streams deliver before the suspension.
			e.write(&core.Record{Kind: core.KindCustom, Action: "before", Tenant: core.Tenant{ID: "acme"}})
			if ev := sse.next(t); ev.name != "log" {
				t.Fatalf("event %+v", ev)
			}

			start := time.Now()
			if how == "PATCH /tenants/{id}" {
				if r := e.do(http.MethodPatch, "/tenants/acme", admin, []byte(`{"status":"suspended"}`)); r.status != 200 {
					t.Fatalf("suspend: %d %s", r.status, r.body)
				}
			} else if _, err := e.db.Pool.Exec(context.Background(), `UPDATE audit_tenants SET status = 'suspended' WHERE id = 'acme'`); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(bound)
		events:
			for {
				select {
				case ev, ok := <-sse.events:
					switch {
					case !ok:
						t.Fatal("the SSE stream ended without saying why")
					case ev.name == ":" || ev.name == "log":
						continue // keep-alives, records written before the suspension
					case ev.name != "error" || !strings.Contains(ev.data, `"tenant_suspended"`):
						t.Fatalf("SSE ended with %+v", ev)
					}
					break events
				case <-deadline:
					t.Fatalf("the SSE stream goes on %v after the suspension", bound)
				}
			}
			select {
			case err := <-wsEnd:
				if websocket.CloseStatus(err) != ginaudit.StreamCloseTenantSuspended {
					t.Fatalf("WebSocket ended with %v", err)
				}
			case <-time.After(bound):
				t.Fatalf("the WebSocket stream goes on %v after the suspension", bound)
			}
			t.Logf("SSE and WebSocket ended within %v", time.Since(start).Round(time.Millisecond))

			// New streams are refused; the administrator's goes on.
			if r := e.doStream("/logs/stream", user); r.status != http.StatusForbidden || r.errCode() != "tenant_suspended" {
				t.Errorf("a new stream: %d %s", r.status, r.body)
			}
			if _, res, err := websocket.Dial(ctx, apiWSURL(e, "access_token="+user), nil); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
				t.Errorf("a new WebSocket: %v", err)
			}
			e.write(&core.Record{Kind: core.KindCustom, Action: "after", Tenant: core.Tenant{ID: "acme"}})
			for {
				ev := adminSSE.next(t)
				if ev.name != "log" {
					t.Fatalf("the administrator's stream: %+v", ev)
				}
				if strings.Contains(ev.data, `"action":"after"`) {
					break
				}
			}
		})
	}
}

// The service's own records — the API's records of its use and, behind Middleware, the http
// records of requests to the API — are left out of pages, exports, stats and streams unless
// include_meta=true, which binds cursors like every filter.
func TestAPIIncludeMeta(t *testing.T) {
	e, _ := apiAuditedEnv(t, nil)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	app := apiSeed(e, "acme", 3)
	own := map[string]bool{}
	for _, r := range app {
		own[r.ID.String()] = true
	}
	sse := e.openSSE(user, nil)
	metaSSE := e.openSSE(user, url.Values{"include_meta": {"true"}})
	// Browse: each request leaves an auditlog.* record and an http record.
	for range 3 {
		for _, p := range []string{"/logs", "/logs/stats", "/logs/export?format=csv", "/logs/" + app[0].ID.String()} {
			if r := e.do(http.MethodGet, p, user, nil); r.status != 200 {
				t.Fatalf("%s: %d %s", p, r.status, r.body)
			}
		}
	}
	poll(t, "the records of the browsing", func() bool {
		e.flush()
		return e.count("tenant_id = 'acme' AND kind = 'http' AND route LIKE '/api/v1/logs%'") >= 12
	})

	var page apiPage
	e.do(http.MethodGet, "/logs?limit=200", user, nil).decode(t, &page)
	if len(page.Logs) != len(app) {
		t.Errorf("the default page has %d records, want the %d of the application", len(page.Logs), len(app))
	}
	for _, l := range page.Logs {
		if !own[l.ID.String()] {
			t.Errorf("the default page holds %s %s", l.Kind, l.Action)
		}
	}
	var all apiPage
	e.do(http.MethodGet, "/logs?limit=200&include_meta=true", user, nil).decode(t, &all)
	kinds := map[string]int{}
	for _, l := range all.Logs {
		switch {
		case strings.HasPrefix(l.Action, "auditlog."):
			kinds["meta"]++
		case l.Kind == "http" && strings.HasPrefix(l.Route, "/api/v1/"):
			kinds["http"]++
		}
	}
	if kinds["meta"] < 12 || kinds["http"] < 12 {
		t.Errorf("include_meta=true: %v of the service's own records", kinds)
	}
	if r := e.do(http.MethodGet, "/logs/export?format=ndjson", user, nil); strings.Count(string(r.body), "\n") != len(app) {
		t.Errorf("the default export has %d lines: %s", strings.Count(string(r.body), "\n"), apiTruncateTest(string(r.body)))
	}
	if r := e.do(http.MethodGet, "/logs/export?format=ndjson&include_meta=true", user, nil); strings.Count(string(r.body), "\n") < len(app)+24 {
		t.Errorf("the export with include_meta=true has %d lines", strings.Count(string(r.body), "\n"))
	}
	for q, want := range map[string]func(int64) bool{
		"":                  func(n int64) bool { return n == int64(len(app)) },
		"include_meta=true": func(n int64) bool { return n >= int64(len(app)+24) },
	} {
		var st struct{ Total int64 }
		e.do(http.MethodGet, "/logs/stats?"+q, user, nil).decode(t, &st)
		if !want(st.Total) {
			t.Errorf("stats?%s: total %d", q, st.Total)
		}
	}
	// Cursors are bound to it.
	var first apiPage
	e.do(http.MethodGet, "/logs?limit=1", user, nil).decode(t, &first)
	if r := e.do(http.MethodGet, "/logs?limit=1&include_meta=true&cursor="+url.QueryEscape(first.NextCursor), user, nil); r.status != 400 || r.errCode() != "invalid_cursor" {
		t.Errorf("a default page's cursor with include_meta=true: %d %s", r.status, r.body)
	}
	for _, bad := range []string{"include_meta=1", "include_meta=", "include_meta=yes"} {
		if r := e.do(http.MethodGet, "/logs?"+bad, user, nil); r.status != 400 || r.errCode() != "invalid_parameter" {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	// Clients cannot write records that pass for the service's own.
	svc := apiToken(t, "svc", core.ActorService, "acme")
	for _, rt := range []string{"audit_logs", "audit_tenants"} {
		r := e.do(http.MethodPost, "/logs", svc, []byte(`{"action":"auditlog.search","resource_type":"`+rt+`"}`))
		if r.status != http.StatusUnprocessableEntity || r.errCode() != "invalid_records" || !strings.Contains(string(r.body), "resource_type") {
			t.Errorf("ingest with resource_type %s: %d %s", rt, r.status, r.body)
		}
	}
	// Streams: the default one saw none of the browsing, only the record written after it.
	mark := &core.Record{Kind: core.KindCustom, Action: "after.browsing", Tenant: core.Tenant{ID: "acme"}}
	e.write(mark)
	for {
		ev := sse.nextAny(t)
		if ev.name == ":" {
			continue
		}
		if ev.id != mark.ID.String() {
			t.Fatalf("the default stream sent %s before the record written after the browsing", apiTruncateTest(ev.data))
		}
		break
	}
	seen := map[string]bool{}
	for !seen["meta"] || !seen["http"] {
		ev := metaSSE.nextAny(t)
		switch {
		case strings.Contains(ev.data, `"action":"auditlog.`):
			seen["meta"] = true
		case strings.Contains(ev.data, `"kind":"http"`):
			seen["http"] = true
		}
	}
}

// A platform administrator's work, on any tenant, is counted against the administrator, not
// against the tenant the administrator's token names: that tenant's users keep their stream,
// export and rate quota.
func TestAPIAdminWorkUsesNoTenantQuota(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) {
		o.MaxStreams, o.RateLimit, o.RateBurst = 1, 0.001, 3
	})
	admin := apiToken(t, "root", core.ActorPlatformAdmin, apiHomeA)
	userA := apiToken(t, "user-a", core.ActorTenantUser, apiHomeA)
	e.openSSE(admin, url.Values{"tenant_id": {apiOtherB}})
	if r := e.doStream("/logs/stream", userA); r.status != http.StatusOK {
		t.Errorf("tenant A's user while the administrator streams B: %d %s", r.status, r.body)
	}
	for range 2 { // the administrator's bucket: 3, one taken by the stream
		if r := e.do(http.MethodGet, "/logs?tenant_id="+apiOtherB, admin, nil); r.status != http.StatusOK {
			t.Fatalf("the administrator: %d %s", r.status, r.body)
		}
	}
	if r := e.do(http.MethodGet, "/logs?tenant_id="+apiOtherB, admin, nil); r.status != http.StatusTooManyRequests {
		t.Errorf("the administrator past the burst: %d", r.status)
	}
	// Tenant A's bucket: 3, one taken by its user's stream.
	for range 2 {
		if r := e.do(http.MethodGet, "/logs", userA, nil); r.status != http.StatusOK {
			t.Errorf("tenant A's user after the administrator's requests: %d %s", r.status, r.body)
		}
	}
}
