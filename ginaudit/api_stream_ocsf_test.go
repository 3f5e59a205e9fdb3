package ginaudit_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/core"
)

func TestAPIStreamOCSF(t *testing.T) {
	e := apiNewEnv(t, nil)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	s := e.openSSE(user, url.Values{"format": {"ocsf"}, "action_prefix": {"invoice."}})
	recs := []*core.Record{
		{Kind: core.KindHTTP, Action: "invoice.create", Tenant: core.Tenant{ID: "acme"}, Method: "POST", Path: "/invoices",
			Status: 201, IP: netip.MustParseAddr("10.0.0.1"), RequestID: "req-9", Actor: core.Actor{ID: "u1", Type: core.ActorTenantUser}},
		{Kind: core.KindUpdate, Action: "invoice.updated", Tenant: core.Tenant{ID: "acme"}, ResourceType: "invoices", ResourceID: "1",
			Before: map[string]any{"total": 1}, After: map[string]any{"total": 2}},
		{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}},
	}
	e.write(recs...)
	want := map[string]struct{ class, typ int }{
		recs[0].ID.String(): {6003, 600301}, recs[1].ID.String(): {3004, 300403}, recs[2].ID.String(): {0, 99},
	}
	for len(want) > 0 {
		ev := s.nextAny(t)
		if ev.name == ":" {
			continue
		}
		var o struct {
			ClassUID     int            `json:"class_uid"`
			TypeUID      int            `json:"type_uid"`
			Entity       map[string]any `json:"entity"`
			EntityResult map[string]any `json:"entity_result"`
		}
		if ev.name != "log" || json.Unmarshal([]byte(ev.data), &o) != nil {
			t.Fatalf("event %+v", ev)
		}
		var md map[string]any
		var raw map[string]json.RawMessage
		_ = json.Unmarshal([]byte(ev.data), &raw)
		_ = json.Unmarshal(raw["metadata"], &md)
		if md["uid"] != ev.id || md["version"] != "1.3.0" || md["tenant_uid"] != "acme" {
			t.Fatalf("event %s: metadata %v", ev.data, md)
		}
		w, ok := want[ev.id]
		if !ok {
			continue // the record of the stream's own opening
		}
		delete(want, ev.id)
		if o.ClassUID != w.class || o.TypeUID != w.typ {
			t.Fatalf("event %s: class_uid %d type_uid %d, want %d %d", ev.data, o.ClassUID, o.TypeUID, w.class, w.typ)
		}
		if o.ClassUID == 3004 && (o.Entity["data"] == nil || o.EntityResult["data"] == nil) {
			t.Fatalf("event %s: no before/after", ev.data)
		}
	}
	if r := e.doStream("/logs/stream?format=ndjson", user); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "format") {
		t.Fatalf("format=ndjson: %d %s", r.status, r.body)
	}
}

func TestAPIExportOCSF(t *testing.T) {
	e := apiNewEnv(t, nil)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	recs := []*core.Record{
		{Kind: core.KindHTTP, Action: "invoice.get", Tenant: core.Tenant{ID: "acme"}, Method: "GET", Path: "/invoices/1", Status: 200},
		{Kind: core.KindDelete, Action: "invoice.deleted", Tenant: core.Tenant{ID: "acme"}, ResourceType: "invoices", ResourceID: "1",
			Before: map[string]any{"total": 1}},
		{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "globex"}},
	}
	e.write(recs...)
	r := e.do(http.MethodGet, "/logs/export?format=ocsf&action_prefix=invoice.", user, nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d events, want 2 (the tenant's):\n%s", len(lines), r.body)
	}
	want := map[string]int{recs[0].ID.String(): 600302, recs[1].ID.String(): 300404}
	for _, l := range lines {
		var ev struct {
			TypeUID  int `json:"type_uid"`
			Metadata struct {
				UID       string `json:"uid"`
				TenantUID string `json:"tenant_uid"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if want[ev.Metadata.UID] != ev.TypeUID || ev.Metadata.TenantUID != "acme" {
			t.Fatalf("event %s", l)
		}
	}
}
