package ginaudit_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

// TestAPILegalHoldAndRetention: a platform administrator places a legal hold; cleanup of the
// held tenant is refused and nothing is deleted; the tenant's user reads where its retained
// history begins (not who placed the hold, and not another tenant's); once the hold is lifted,
// cleanup deletes and retention says from when the history is kept. Only administrators manage
// holds.
func TestAPILegalHoldAndRetention(t *testing.T) {
	e := apiNewEnv(t, nil)
	e.registerTenants("acme", "globex")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	user := apiToken(t, "u1", core.ActorTenantUser, "acme")
	old := time.Now().Add(-90 * 24 * time.Hour)
	e.write(&core.Record{Kind: core.KindCustom, Action: "doc.touched", Tenant: core.Tenant{ID: "acme"}, OccurredAt: old})

	retention := func(token, tenant string) (int, map[string]any) {
		t.Helper()
		r := e.do(http.MethodGet, "/tenants/"+tenant+"/retention", token, nil)
		var out map[string]any
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &out); err != nil {
				t.Fatal(err)
			}
		}
		return r.status, out
	}
	if st, r := retention(user, "acme"); st != 200 || r["retained_from"] != nil || r["legal_hold"] != nil {
		t.Fatalf("retention before anything: %d %v", st, r)
	}
	if r := e.do(http.MethodPut, "/tenants/acme/legal-hold", user, []byte(`{"reason":"x"}`)); r.status != http.StatusForbidden {
		t.Fatalf("a tenant user placed a hold: %d", r.status)
	}
	if r := e.do(http.MethodGet, "/tenants/acme/legal-hold", admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("hold before placing: %d", r.status)
	}
	if r := e.do(http.MethodPut, "/tenants/acme/legal-hold", admin, []byte(`{"reason":"case 7"}`)); r.status != 200 ||
		!strings.Contains(string(r.body), `"placed_by":"root"`) {
		t.Fatalf("place: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodPut, "/tenants/acme/legal-hold", admin, []byte(`{"reason":"bad\u0001"}`)); r.status != 400 {
		t.Fatalf("a reason with a control character: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodPut, "/tenants/bad..id/legal-hold", admin, []byte(`{}`)); r.status != 400 {
		t.Fatalf("an invalid tenant id: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodDelete, "/logs/cleanup?tenant_id=acme&older_than=30d", admin, nil); r.status != http.StatusConflict {
		t.Fatalf("cleanup under hold: %d %s", r.status, r.body)
	}
	if n := e.count("tenant_id = 'acme' AND action = 'doc.touched'"); n != 1 {
		t.Fatalf("%d records left under hold, want 1", n)
	}
	st, r := retention(user, "acme")
	hold, _ := r["legal_hold"].(map[string]any)
	if st != 200 || hold == nil || hold["reason"] != "" || hold["placed_by"] != "" {
		t.Fatalf("the user's view of the hold: %d %v", st, r)
	}
	if st, _ := retention(user, "globex"); st != http.StatusForbidden {
		t.Fatalf("a user read another tenant's retention: %d", st)
	}
	if r := e.do(http.MethodDelete, "/tenants/acme/legal-hold", admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("release: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodDelete, "/tenants/acme/legal-hold", admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("second release: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodDelete, "/logs/cleanup?tenant_id=acme&older_than=30d", admin, nil); r.status != 200 {
		t.Fatalf("cleanup after the release: %d %s", r.status, r.body)
	}
	st, r = retention(admin, "acme")
	from, _ := r["retained_from"].(string)
	at, err := time.Parse(time.RFC3339Nano, from)
	if st != 200 || err != nil || time.Since(at) < 29*24*time.Hour || time.Since(at) > 31*24*time.Hour {
		t.Fatalf("retention after the cleanup: %d %v, want retained_from 30 days ago", st, r)
	}
}
