package ginaudit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

type apiPage struct {
	Logs       []store.Record `json:"logs"`
	NextCursor string         `json:"next_cursor"`
}

func apiSeed(e *apiEnv, tenant string, n int) []*core.Record {
	var recs []*core.Record
	for i := range n {
		recs = append(recs, &core.Record{
			Kind: []core.Kind{core.KindHTTP, core.KindUpdate}[i%2], Action: []string{"invoice.sent", "user.login"}[i%2],
			Severity: []core.Severity{core.SeverityInfo, core.SeverityError}[i%2],
			Tenant:   core.Tenant{ID: tenant}, Actor: core.Actor{ID: fmt.Sprintf("u-%d", i%3), Type: core.ActorTenantUser},
			ResourceType: "invoices", ResourceID: fmt.Sprint(i), OccurredAt: time.Now().Add(-time.Duration(i) * time.Minute),
			Metadata: map[string]any{"note": "hello world"},
		})
	}
	e.write(recs...)
	return recs
}

func TestAPIAuthentication(t *testing.T) {
	e := apiNewEnv(t, nil)
	expired := apiToken(t, "u", core.ActorTenantUser, "acme", "exp", time.Now().Add(-time.Hour).Unix())
	cases := []struct {
		name   string
		header []string
		status int
		code   string
	}{
		{"no token", nil, 401, "unauthorized"},
		{"basic auth", []string{"Authorization", "Basic dTpw"}, 401, "unauthorized"},
		{"empty bearer", []string{"Authorization", "Bearer "}, 401, "unauthorized"},
		{"garbage", []string{"Authorization", "Bearer not.a.jwt"}, 401, "invalid_token"},
		{"expired", []string{"Authorization", "Bearer " + expired}, 401, "invalid_token"},
		{"other key", []string{"Authorization", "Bearer " + apiForeignToken(t)}, 401, "invalid_token"},
		{"anonymous type", []string{"Authorization", "Bearer " + apiToken(t, "x", core.ActorAnonymous, "acme")}, 403, "forbidden"},
		{"no tenant", []string{"Authorization", "Bearer " + apiToken(t, "svc", core.ActorService, "")}, 403, "tenant_required"},
	}
	for _, c := range cases {
		r := e.do(http.MethodGet, "/logs", "", nil, c.header...)
		if r.status != c.status || r.errCode() != c.code {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
		if r.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate challenge", c.name)
		}
	}
	// access_token works on the stream only.
	r := e.do(http.MethodGet, "/logs?access_token="+apiToken(t, "u", core.ActorTenantUser, "acme"), "", nil)
	if r.status != 401 {
		t.Fatalf("access_token on GET /logs: %d %s", r.status, r.body)
	}
	// The description is public.
	if r := e.do(http.MethodGet, "/openapi.yaml", "", nil); r.status != 200 || !strings.HasPrefix(string(r.body), "openapi: 3") {
		t.Fatalf("openapi.yaml: %d", r.status)
	}
}

func apiForeignToken(t testing.TB) string {
	t.Helper()
	tok := apiToken(t, "u", core.ActorTenantUser, "acme")
	parts := strings.Split(tok, ".")
	return parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
}

func TestAPIListGetAndScopes(t *testing.T) {
	e := apiNewEnv(t, nil)
	acme := apiSeed(e, "acme", 30)
	apiSeed(e, "globex", 10)
	e.write(&core.Record{Kind: core.KindCustom, Action: "platform.thing"}) // no tenant
	user := apiToken(t, "u-1", core.ActorTenantUser, "acme")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")

	var ids []string
	path := "/logs?limit=7&action=invoice.sent&sort=oldest"
	for pages := 0; ; pages++ {
		r := e.do(http.MethodGet, path, user, nil)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		var p apiPage
		r.decode(t, &p)
		for _, l := range p.Logs {
			if l.TenantID != "acme" || l.Action != "invoice.sent" {
				t.Fatalf("listed %+v", l)
			}
			ids = append(ids, l.ID.String())
		}
		if p.NextCursor == "" {
			break
		}
		path = "/logs?limit=7&action=invoice.sent&sort=oldest&cursor=" + url.QueryEscape(p.NextCursor)
	}
	if len(ids) != 15 {
		t.Fatalf("paged %d records, want 15", len(ids))
	}
	// Oldest first: the seed made later indexes older.
	if ids[0] != acme[28].ID.String() || ids[14] != acme[0].ID.String() {
		t.Fatalf("order: first %s last %s", ids[0], ids[14])
	}
	// Admin: across tenants (including rows without a tenant), or one named tenant.
	var all apiPage
	e.do(http.MethodGet, "/logs?limit=200&kind=http,update", admin, nil).decode(t, &all)
	tenants := map[string]int{}
	for _, l := range all.Logs {
		tenants[l.TenantID]++
	}
	if tenants["acme"] != 30 || tenants["globex"] != 10 {
		t.Fatalf("admin across tenants: %v", tenants)
	}
	var platform apiPage
	e.do(http.MethodGet, "/logs?action=platform.thing", admin, nil).decode(t, &platform)
	if len(platform.Logs) != 1 || platform.Logs[0].TenantID != "" {
		t.Fatalf("admin sees records without a tenant: %+v", platform.Logs)
	}
	var hidden apiPage
	e.do(http.MethodGet, "/logs?action=platform.thing", user, nil).decode(t, &hidden)
	if len(hidden.Logs) != 0 {
		t.Fatalf("a tenant user sees records without a tenant: %+v", hidden.Logs)
	}
	var named apiPage
	e.do(http.MethodGet, "/logs?limit=200&tenant_id=globex&kind=http,update", admin, nil).decode(t, &named)
	if len(named.Logs) != 10 {
		t.Fatalf("admin naming globex: %d", len(named.Logs))
	}
	// A tenant user may name its own tenant, not another.
	if r := e.do(http.MethodGet, "/logs?tenant_id=acme", user, nil); r.status != 200 {
		t.Fatalf("own tenant named: %d", r.status)
	}
	if r := e.do(http.MethodGet, "/logs?tenant_id=globex", user, nil); r.status != 403 || r.errCode() != "forbidden" {
		t.Fatalf("other tenant named: %d %s", r.status, r.body)
	}
	// Get by id.
	r := e.do(http.MethodGet, "/logs/"+acme[3].ID.String(), user, nil)
	var got store.Record
	r.decode(t, &got)
	if r.status != 200 || got.ID != acme[3].ID {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/logs/"+uuid.NewString(), user, nil); r.status != 404 || r.errCode() != "not_found" {
		t.Fatalf("get missing: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/logs/not-a-uuid", user, nil); r.status != 400 {
		t.Fatalf("get malformed id: %d %s", r.status, r.body)
	}
	// A suspended tenant's users are refused reads; administrators are not.
	suspended := store.TenantSuspended
	if _, err := e.st.CreateTenant(context.Background(), store.Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.UpdateTenant(context.Background(), "acme", store.TenantUpdate{Status: &suspended}); err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodGet, "/logs", user, nil); r.status != 403 || r.errCode() != "tenant_suspended" {
		t.Fatalf("suspended tenant read: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/logs?tenant_id=acme", admin, nil); r.status != 200 {
		t.Fatalf("admin reading a suspended tenant: %d", r.status)
	}
}

func TestAPIIngest(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.MaxBulkRecords = 5 })
	e.registerTenants("acme", "globex")
	svc := apiToken(t, "svc-billing", core.ActorService, "acme")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")

	r := e.do(http.MethodPost, "/logs", svc, []byte(`{"action":"invoice.sent","resource_type":"invoices","resource_id":"7"}`))
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created struct{ ID uuid.UUID }
	r.decode(t, &created)
	rec, err := e.st.Get(context.Background(), store.TenantScope("acme"), created.ID)
	if err != nil || rec.ActorID != "svc-billing" || rec.ActorType != core.ActorService || rec.ActorAuth != "jwt:HS256" {
		t.Fatalf("stored: %v %+v", err, rec)
	}

	body := []byte(`{"logs":[{"action":"a"},{"action":"b","actor_id":"u-9"}]}`)
	r = e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "batch-1")
	var bulk struct {
		IDs   []uuid.UUID `json:"ids"`
		Count int         `json:"count"`
	}
	r.decode(t, &bulk)
	if r.status != 201 || bulk.Count != 2 {
		t.Fatalf("bulk: %d %s", r.status, r.body)
	}
	before := e.count("TRUE")
	r = e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "batch-1")
	var again struct {
		IDs []uuid.UUID `json:"ids"`
	}
	r.decode(t, &again)
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" || again.IDs[1] != bulk.IDs[1] || e.count("TRUE") != before {
		t.Fatalf("replay: %d %s, rows %d -> %d", r.status, r.body, before, e.count("TRUE"))
	}
	if r := e.do(http.MethodPost, "/logs/bulk", svc, []byte(`{"logs":[{"action":"c"}]}`), "Idempotency-Key", "batch-1"); r.status != 422 || r.errCode() != "idempotency_key_reused" {
		t.Fatalf("reused key: %d %s", r.status, r.body)
	}
	// Per-item errors, nothing written.
	r = e.do(http.MethodPost, "/logs/bulk", svc, []byte(`{"logs":[{"action":"ok"},{"action":"x","kind":"bad"},{"nope":1}]}`))
	var fail struct {
		Error struct {
			Code  string            `json:"code"`
			Items []store.ItemError `json:"items"`
		} `json:"error"`
	}
	r.decode(t, &fail)
	if r.status != 422 || fail.Error.Code != "invalid_records" || len(fail.Error.Items) != 2 || fail.Error.Items[0].Index != 1 || fail.Error.Items[1].Field != "nope" {
		t.Fatalf("invalid items: %d %s", r.status, r.body)
	}
	if e.count("TRUE") != before {
		t.Fatal("a refused bulk request wrote rows")
	}
	if r := e.do(http.MethodPost, "/logs/bulk", svc, []byte(`{"logs":[{"action":"1"},{"action":"2"},{"action":"3"},{"action":"4"},{"action":"5"},{"action":"6"}]}`)); r.status != 413 || r.errCode() != "too_many_records" {
		t.Fatalf("oversized bulk: %d %s", r.status, r.body)
	}
	// Tenants: unknown, inactive, suspended are refused; admins may name a tenant or write without one.
	for _, c := range []struct {
		token, query, code string
	}{
		{apiToken(t, "s", core.ActorService, "unregistered"), "", "tenant_unknown"},
		{svc, "?tenant_id=globex", "forbidden"},
		{admin, "?tenant_id=nobody", "tenant_unknown"},
	} {
		if r := e.do(http.MethodPost, "/logs"+c.query, c.token, []byte(`{"action":"a"}`)); r.status != 403 || r.errCode() != c.code {
			t.Errorf("%s%s: %d %s", c.code, c.query, r.status, r.body)
		}
	}
	for status, code := range map[store.TenantStatus]string{store.TenantInactive: "tenant_inactive", store.TenantSuspended: "tenant_suspended"} {
		s := status
		if _, _, err := e.st.UpdateTenant(context.Background(), "globex", store.TenantUpdate{Status: &s}); err != nil {
			t.Fatal(err)
		}
		if r := e.do(http.MethodPost, "/logs?tenant_id=globex", admin, []byte(`{"action":"a"}`)); r.status != 403 || r.errCode() != code {
			t.Errorf("%s: %d %s", status, r.status, r.body)
		}
	}
	if r := e.do(http.MethodPost, "/logs?tenant_id=acme", admin, []byte(`{"action":"a"}`)); r.status != 201 {
		t.Fatalf("admin naming acme: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodPost, "/logs", admin, []byte(`{"action":"platform.event"}`)); r.status != 201 || e.count("tenant_id IS NULL AND action = 'platform.event'") != 1 {
		t.Fatalf("admin without tenant: %d %s", r.status, r.body)
	}
}

func TestAPIExportStatsCleanup(t *testing.T) {
	e := apiNewEnv(t, nil)
	apiSeed(e, "acme", 40)
	e.write(&core.Record{Kind: core.KindCustom, Action: "=cmd|' /C calc'!A0", Tenant: core.Tenant{ID: "acme"}})
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")

	res, err := apiClient.Do(apiReq(t, e.base+"/logs/export?format=csv&severity=error,info", user))
	if err != nil {
		t.Fatal(err)
	}
	b := apiReadAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v", res.StatusCode, res.Header)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\r\n")
	if len(lines) != 42 || !strings.HasPrefix(lines[0], "id,occurred_at,kind,action") {
		t.Fatalf("csv: %d lines, header %q", len(lines), lines[0])
	}
	if !strings.Contains(string(b), `,'=cmd|' /C calc'!A0,`) {
		t.Fatal("formula not defused")
	}
	if res.Trailer.Get("X-Export-Status") != "complete" || res.Trailer.Get("X-Export-Records") != "41" {
		t.Fatalf("trailers: %v", res.Trailer)
	}
	r := e.do(http.MethodGet, "/logs/export?format=ndjson&action=invoice.sent", user, nil)
	if r.status != 200 || strings.Count(string(r.body), "\n") != 20 {
		t.Fatalf("ndjson: %d, %d lines", r.status, strings.Count(string(r.body), "\n"))
	}
	for _, q := range []string{"", "?format=xml", "?format=csv&format=csv", "?format=csv&sort=", "?format=csv&sort=sideways"} {
		if r := e.do(http.MethodGet, "/logs/export"+q, user, nil); r.status != 400 || r.header.Get("Content-Disposition") != "" {
			t.Errorf("export%s: %d %s", q, r.status, r.body)
		}
	}
	// An empty sort is refused alike by the search and the export, for administrators too.
	for _, path := range []string{"/logs?sort=", "/logs/export?format=csv&sort="} {
		for _, tok := range []string{user, admin} {
			var e2 struct {
				Error struct{ Code, Param string } `json:"error"`
			}
			r := e.do(http.MethodGet, path, tok, nil)
			r.decode(t, &e2)
			if r.status != 400 || e2.Error.Code != "invalid_parameter" || e2.Error.Param != "sort" {
				t.Errorf("%s: %d %s", path, r.status, r.body)
			}
		}
	}

	var st store.Stats
	r = e.do(http.MethodGet, "/logs/stats?bucket=hour&resource_type=invoices&from="+url.QueryEscape(time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339)), user, nil)
	r.decode(t, &st)
	if r.status != 200 || st.Total != 40 || len(st.Buckets) < 2 || len(st.ByAction) != 2 || st.ByKind[0].Count != 20 {
		t.Fatalf("stats: %d %s", r.status, r.body)
	}

	old := time.Now().Add(-72 * time.Hour)
	e.write(&core.Record{Kind: core.KindCustom, Action: "old", Tenant: core.Tenant{ID: "acme"}, OccurredAt: old},
		&core.Record{Kind: core.KindCustom, Action: "old", Tenant: core.Tenant{ID: "globex"}, OccurredAt: old})
	if r := e.do(http.MethodDelete, "/logs/cleanup?tenant_id=acme&older_than=48h", user, nil); r.status != 403 {
		t.Fatalf("cleanup by a tenant user: %d", r.status)
	}
	if r := e.do(http.MethodDelete, "/logs/cleanup?older_than=48h", admin, nil); r.status != 400 {
		t.Fatalf("cleanup without a tenant: %d", r.status)
	}
	if r := e.do(http.MethodDelete, "/logs/cleanup?tenant_id=acme&older_than=1h", admin, nil); r.status != 400 || !strings.Contains(r.errCode(), "invalid_parameter") {
		t.Fatalf("cleanup of recent records: %d %s", r.status, r.body)
	}
	r = e.do(http.MethodDelete, "/logs/cleanup?tenant_id=acme&older_than=2d", admin, nil)
	var cl struct{ Deleted int }
	r.decode(t, &cl)
	if r.status != 200 || cl.Deleted != 1 || e.count("action = 'old'") != 1 {
		t.Fatalf("cleanup: %d %s", r.status, r.body)
	}
	if _, err := e.st.CreateTenant(context.Background(), store.Tenant{ID: "globex", LegalHold: true}); err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodDelete, "/logs/cleanup?tenant_id=globex&older_than=2026-01-01T00:00:00Z", admin, nil); r.status != 409 || r.errCode() != "legal_hold" {
		t.Fatalf("legal hold: %d %s", r.status, r.body)
	}
}

func apiReq(t testing.TB, u, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

func apiReadAll(t testing.TB, res *http.Response) []byte {
	t.Helper()
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return []byte(b.String())
}

func TestAPITenants(t *testing.T) {
	e := apiNewEnv(t, nil)
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	r := e.do(http.MethodPost, "/tenants", admin, []byte(`{"id":"acme","slug":"acme","name":"Acme"}`))
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/tenants", `{"id":"acme"}`, 409, "tenant_exists"},
		{"POST", "/tenants", `{"id":"bad id"}`, 400, "invalid_tenant"},
		{"POST", "/tenants", `{"id":"x","created_at":"2020-01-01T00:00:00Z"}`, 400, "unknown_field"},
		{"POST", "/tenants", `{"id":"x","status":"deleted"}`, 400, "invalid_tenant"},
		{"PATCH", "/tenants/nobody", `{"status":"inactive"}`, 404, "not_found"},
		{"PATCH", "/tenants/acme", `{"status":"gone"}`, 400, "invalid_tenant"},
		{"GET", "/tenants/nobody", "", 404, "not_found"},
		{"GET", "/tenants?status=weird", "", 400, "invalid_parameter"},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		if r := e.do(c.method, c.path, admin, body); r.status != c.status || r.errCode() != c.code {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, r.status, r.body)
		}
	}
	r = e.do(http.MethodPatch, "/tenants/acme", admin, []byte(`{"status":"suspended","retention_days":90}`))
	var tn store.Tenant
	r.decode(t, &tn)
	if r.status != 200 || tn.Status != store.TenantSuspended || tn.RetentionDays != 90 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	var list struct{ Tenants []store.Tenant }
	e.do(http.MethodGet, "/tenants", admin, nil).decode(t, &list)
	if len(list.Tenants) != 1 || list.Tenants[0].ID != "acme" {
		t.Fatalf("list: %+v", list)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/tenants", ""}, {"POST", "/tenants", `{"id":"mine"}`}, {"GET", "/tenants/acme", ""}, {"PATCH", "/tenants/acme", `{"status":"active"}`},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		if r := e.do(c.method, c.path, user, body); r.status != 403 || r.errCode() != "forbidden" {
			t.Errorf("tenant user %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}

// The API records its own use: who searched, read, exported, streamed, cleaned up or changed
// tenants, with which tenant and filters.
func TestAPIRecordsItsOwnUse(t *testing.T) {
	e := apiNewEnv(t, nil)
	recs := apiSeed(e, "acme", 3)
	user := apiToken(t, "u-auditor", core.ActorTenantUser, "acme", "email", "auditor@example.com")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	e.do(http.MethodGet, "/logs?actor_id=u-1&q=hello", user, nil)
	e.do(http.MethodGet, "/logs/"+recs[0].ID.String(), user, nil)
	e.do(http.MethodGet, "/logs/export?format=csv&action=invoice.sent", user, nil)
	e.do(http.MethodGet, "/logs/stats", user, nil)
	e.do(http.MethodGet, "/logs?kind=http", admin, nil)
	e.do(http.MethodPost, "/tenants", admin, []byte(`{"id":"globex"}`))
	e.do(http.MethodPatch, "/tenants/globex", admin, []byte(`{"status":"suspended"}`))
	e.write(&core.Record{Kind: core.KindCustom, Action: "old", Tenant: core.Tenant{ID: "acme"}, OccurredAt: time.Now().AddDate(0, 0, -10)})
	e.do(http.MethodDelete, "/logs/cleanup?tenant_id=acme&older_than=5d", admin, nil)
	e.flush()

	type meta struct {
		Action, Tenant, Actor string
		Meta                  map[string]any
	}
	rows, err := e.db.Pool.Query(context.Background(), `SELECT action, coalesce(tenant_id, ''), actor_id, coalesce(metadata, '{}')
		FROM audit_logs WHERE action LIKE 'auditlog.%' OR action LIKE 'tenant.%' ORDER BY occurred_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []meta
	for rows.Next() {
		var m meta
		var raw []byte
		if err := rows.Scan(&m.Action, &m.Tenant, &m.Actor, &raw); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(raw, &m.Meta)
		got = append(got, m)
	}
	rows.Close()
	want := []struct{ action, tenant, actor string }{
		{"auditlog.search", "acme", "u-auditor"}, {"auditlog.read", "acme", "u-auditor"}, {"auditlog.export", "acme", "u-auditor"},
		{"auditlog.stats", "acme", "u-auditor"}, {"auditlog.search", "", "root"}, {"tenant.created", "globex", "root"},
		{"tenant.updated", "globex", "root"}, {"auditlog.cleanup", "acme", "root"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records of the API's use: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].Action != w.action || got[i].Tenant != w.tenant || got[i].Actor != w.actor {
			t.Errorf("record %d: %+v, want %+v", i, got[i], w)
		}
	}
	filters, _ := got[0].Meta["filters"].(map[string]any)
	if filters["actor_id"] != "u-1" || filters["q"] != "hello" || got[0].Meta["scope"] != "tenant" {
		t.Errorf("search metadata: %v", got[0].Meta)
	}
	if got[2].Meta["records"] != float64(2) || got[2].Meta["format"] != "csv" || got[4].Meta["scope"] != "all_tenants" {
		t.Errorf("export metadata %v, admin search %v", got[2].Meta, got[4].Meta)
	}
	if got[7].Meta["deleted"] != float64(1) {
		t.Errorf("cleanup metadata: %v", got[7].Meta)
	}
}

func TestAPIRateLimit(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.RateLimit = 0.5; o.RateBurst = 3 })
	acme := apiToken(t, "u", core.ActorTenantUser, "acme")
	acme2 := apiToken(t, "u2", core.ActorTenantUser, "acme")
	globex := apiToken(t, "g", core.ActorTenantUser, "globex")
	for i := range 3 {
		if r := e.do(http.MethodGet, "/logs", acme, nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := e.do(http.MethodGet, "/logs", acme2, nil) // same tenant, other user: same bucket
	if r.status != 429 || r.errCode() != "rate_limited" || r.header.Get("Retry-After") != "2" {
		t.Fatalf("over the limit: %d %v %s", r.status, r.header, r.body)
	}
	if r := e.do(http.MethodGet, "/logs", globex, nil); r.status != 200 {
		t.Fatalf("another tenant is limited too: %d", r.status)
	}
}

// Each case reaches the check it names: the error must say what is wrong.
func TestAPIOptionsValidation(t *testing.T) {
	e := apiNewEnv(t, nil)
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{Secret: apiSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	unsafe, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{UnsafeSkipVerification: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	group := func() *gin.RouterGroup { return gin.New().Group("/api") }
	for _, c := range []struct {
		name  string
		group *gin.RouterGroup
		st    *store.Store
		opts  ginaudit.APIOptions
		want  string
	}{
		{"no group", nil, e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w}, "router group"},
		{"no store", group(), nil, ginaudit.APIOptions{Verifier: v, Writer: e.w}, "store"},
		{"no verifier", group(), e.st, ginaudit.APIOptions{Writer: e.w}, "Verifier is required"},
		{"unverified tokens", group(), e.st, ginaudit.APIOptions{Verifier: unsafe, Writer: e.w}, "UnsafeAllowUnverifiedTokens"},
		{"no writer", group(), e.st, ginaudit.APIOptions{Verifier: v}, "Writer is required"},
		{"infinite rate", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, RateLimit: math.Inf(1)}, "finite"},
		{"NaN rate", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, RateLimit: math.NaN()}, "finite"},
		{"negative streams", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, MaxStreams: -1}, "negative"},
		{"negative burst", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, RateBurst: -1}, "negative"},
		{"negative exports", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, MaxExports: -1}, "negative"},
		{"negative total exports", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, MaxExportsTotal: -1}, "negative"},
		{"bad origin pattern", group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, WebSocketOrigins: []string{"ok.example", "[bad"}}, "WebSocketOrigins"},
	} {
		err := ginaudit.MountAPI(c.group, c.st, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.want)
		}
	}
	if err := ginaudit.MountAPI(group(), e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w}); err != nil {
		t.Fatalf("valid options: %v", err)
	}
}

// A Verifier that skips signature checks lets anyone forge a platform administrator's token:
// MountAPI takes one only when told so by name, and then such a forged token is indeed accepted.
func TestAPIUnverifiedTokensNeedExplicitConsent(t *testing.T) {
	e := apiNewEnv(t, nil)
	unsafe, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{UnsafeSkipVerification: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	if err := ginaudit.MountAPI(r.Group("/api/v1"), e.st, ginaudit.APIOptions{Verifier: unsafe, Writer: e.w}); err == nil {
		t.Fatal("MountAPI accepted a Verifier that does not check signatures")
	}
	if len(r.Routes()) != 0 {
		t.Fatalf("a refused MountAPI registered routes: %v", r.Routes())
	}
	err = ginaudit.MountAPI(r.Group("/api/v1"), e.st, ginaudit.APIOptions{Verifier: unsafe, Writer: e.w, UnsafeAllowUnverifiedTokens: true, RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	forged := apiForeignToken(t) // a tenant user's claims with a wrong signature
	req := apiReq(t, srv.URL+"/api/v1/logs", forged)
	res, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("with UnsafeAllowUnverifiedTokens an unsigned token is accepted (the gateway's job): %d", res.StatusCode)
	}
}
