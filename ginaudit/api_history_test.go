package ginaudit_test

import (
	"bytes"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// apiRowRecords writes the history of row items/7 in a tenant: an insert and an update of its name.
func apiRowRecords(e *apiEnv, tenant, name1, name2 string, at time.Time) (first, second *core.Record) {
	mk := func(kind core.Kind, at time.Time, before, after map[string]any) *core.Record {
		return &core.Record{Kind: kind, Action: "items." + string(kind), OccurredAt: at, Tenant: core.Tenant{ID: tenant},
			Actor: core.Actor{ID: "writer-" + tenant, Type: core.ActorTenantUser}, ResourceType: "items", ResourceID: "7",
			Before: before, After: after, Diff: core.Diff(before, after, nil), RequestID: "req-" + tenant}
	}
	first = mk(core.KindInsert, at, nil, map[string]any{"id": 7, "name": name1})
	second = mk(core.KindUpdate, at.Add(time.Second), first.After, map[string]any{"id": 7, "name": name2})
	e.write(first, second)
	return first, second
}

// GET /resources/{type}/{id}/history: pages, one field's changes, the row at a time, and the
// refusals.
func TestAPIResourceHistory(t *testing.T) {
	e := apiNewEnv(t, nil)
	e.registerTenants(apiTenantA)
	tok := apiToken(t, "user-a", core.ActorTenantUser, apiTenantA)
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	first, second := apiRowRecords(e, apiTenantA, "old", "new", at)

	var page struct {
		History    []store.Record `json:"history"`
		NextCursor string         `json:"next_cursor"`
	}
	r := e.do(http.MethodGet, "/resources/items/7/history?limit=1", tok, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r.decode(t, &page)
	if len(page.History) != 1 || page.History[0].ID != second.ID || page.NextCursor == "" {
		t.Fatalf("first page: %s", r.body)
	}
	r = e.do(http.MethodGet, "/resources/items/7/history?limit=1&cursor="+page.NextCursor, tok, nil)
	page.NextCursor = ""
	r.decode(t, &page)
	if len(page.History) != 1 || page.History[0].ID != first.ID || page.NextCursor != "" {
		t.Fatalf("second page: %s", r.body)
	}

	var changes struct {
		Changes []store.FieldChange `json:"changes"`
	}
	r = e.do(http.MethodGet, "/resources/items/7/history?field=name&sort=oldest", tok, nil)
	r.decode(t, &changes)
	if len(changes.Changes) != 2 || string(changes.Changes[0].To) != `"old"` || string(changes.Changes[1].From) != `"old"` ||
		string(changes.Changes[1].To) != `"new"` {
		t.Fatalf("field history: %s", r.body)
	}

	var sn store.Snapshot
	r = e.do(http.MethodGet, "/resources/items/7/history?as_of="+url.QueryEscape(at.Add(500*time.Millisecond).Format(time.RFC3339Nano)), tok, nil)
	r.decode(t, &sn)
	if r.status != 200 || sn.Deleted || sn.Record.ID != first.ID || !bytes.Contains(sn.Image, []byte(`"name":"old"`)) {
		t.Fatalf("as of: %d %s", r.status, r.body)
	}
	r = e.do(http.MethodGet, "/resources/items/7/history?as_of="+url.QueryEscape(at.Add(-time.Second).Format(time.RFC3339Nano)), tok, nil)
	if r.status != 404 || r.errCode() != "before_history" || !bytes.Contains(r.body, []byte("history_starts")) {
		t.Fatalf("before the history: %d %s", r.status, r.body)
	}
	e.flush()
	if n := e.count("action = 'auditlog.history' AND tenant_id = $1", apiTenantA); n != 5 {
		t.Fatalf("%d auditlog.history records, want 5", n)
	}

	for _, c := range []struct {
		path, code string
		status     int
	}{
		{"/resources/items/8/history?as_of=2020-01-01", "not_found", 404},
		{"/resources/items/7/history?as_of=yesterday", "invalid_parameter", 400},
		{"/resources/items/7/history?as_of=2020-01-01&limit=2", "invalid_parameter", 400},
		{"/resources/items/7/history?as_of=", "invalid_parameter", 400},
		{"/resources/items/7/history?field=a%20b", "invalid_parameter", 400},
		{"/resources/items/7/history?limit=0", "invalid_parameter", 400},
		{"/resources/items/7/history?sort=sideways", "invalid_parameter", 400},
		{"/resources/items/7/history?cursor=abc", "invalid_cursor", 400},
		{"/resources/items/7/history?q=x", "unknown_parameter", 400},
		{"/resources/items/7/history?tenant_id=" + apiTenantB, "forbidden", 403},
	} {
		if r := e.do(http.MethodGet, c.path, tok, nil); r.status != c.status || r.errCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.path, r.status, r.body, c.status, c.code)
		}
	}
}

// Tenant B asking for the history of the same table and id as tenant A's row, with A's cursors and
// times, sees only its own row; a platform administrator sees both without tenant_id and one
// with it.
func TestAPIResourceHistoryIsolation(t *testing.T) {
	e := apiNewEnv(t, nil)
	e.registerTenants(apiTenantA, apiTenantB)
	tokA := apiToken(t, "user-a", core.ActorTenantUser, apiTenantA)
	tokB := apiToken(t, "user-b", core.ActorTenantUser, apiTenantB)
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	aFirst, aSecond := apiRowRecords(e, apiTenantA, apiDeepMark, apiDeepMark+"-2", at)
	apiRowRecords(e, apiTenantB, "b-1", "b-2", at.Add(time.Minute))
	forbidden := [][]byte{[]byte(apiDeepMark), []byte(apiTenantA), []byte(aFirst.ID.String()), []byte(aSecond.ID.String())}
	leaks := func(what string, r apiResp) {
		t.Helper()
		for _, f := range forbidden {
			if bytes.Contains(r.body, f) {
				t.Errorf("%s: tenant B reads %q: %s", what, f, r.body)
			}
		}
	}

	var pageA struct {
		NextCursor string `json:"next_cursor"`
	}
	r := e.do(http.MethodGet, "/resources/items/7/history?limit=1", tokA, nil)
	r.decode(t, &pageA)
	if r.status != 200 || pageA.NextCursor == "" || !bytes.Contains(r.body, []byte(apiDeepMark)) {
		t.Fatalf("tenant A's own history: %d %s", r.status, r.body)
	}
	for _, p := range []string{
		"/resources/items/7/history", "/resources/items/7/history?sort=oldest&limit=1000",
		"/resources/items/7/history?field=name", "/resources/items/7/history?field=id&sort=oldest",
		"/resources/items/7/history?as_of=" + url.QueryEscape(at.Add(30*time.Second).Format(time.RFC3339Nano)),
		"/resources/items/7/history?as_of=" + url.QueryEscape(time.Now().Format(time.RFC3339Nano)),
		"/resources/items/7/history?limit=1&cursor=" + pageA.NextCursor,
		"/resources/items/7/history?tenant_id=" + apiTenantA,
	} {
		r := e.do(http.MethodGet, p, tokB, nil)
		leaks(p, r)
		if r.status == 200 && !bytes.Contains(r.body, []byte("b-")) {
			t.Errorf("%s: tenant B's answer shows nothing of its own row: %s", p, r.body)
		}
	}
	// The cursor of A's page is refused, the time before B's row starts says so without A's
	// times, and B's own row is there.
	if r := e.do(http.MethodGet, "/resources/items/7/history?limit=1&cursor="+pageA.NextCursor, tokB, nil); r.errCode() != "invalid_cursor" {
		t.Errorf("A's cursor used by B: %d %s", r.status, r.body)
	}
	r = e.do(http.MethodGet, "/resources/items/7/history?as_of="+url.QueryEscape(at.Add(30*time.Second).Format(time.RFC3339Nano)), tokB, nil)
	if r.errCode() != "before_history" || bytes.Contains(r.body, []byte(at.Format("15:04:05"))) {
		t.Errorf("B before its history: %d %s", r.status, r.body)
	}

	var all struct {
		History []store.Record `json:"history"`
	}
	e.do(http.MethodGet, "/resources/items/7/history", admin, nil).decode(t, &all)
	if len(all.History) != 4 {
		t.Fatalf("the administrator across tenants: %d records", len(all.History))
	}
	e.do(http.MethodGet, "/resources/items/7/history?tenant_id="+apiTenantB, admin, nil).decode(t, &all)
	if len(all.History) != 2 || all.History[0].TenantID != apiTenantB {
		t.Fatalf("the administrator in tenant B: %+v", all.History)
	}
}
