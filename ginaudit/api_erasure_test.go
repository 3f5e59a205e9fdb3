package ginaudit_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// TestAPIEraseSubject: POST /subjects/erase is for platform administrators only, needs a subject
// and a tenant, destroys the subject's key so that GET /logs/{id} shows [ERASED] where it showed
// the email, and records the erasure.
func TestAPIEraseSubject(t *testing.T) {
	t.Parallel()
	key := make([]byte, core.MasterKeySize)
	_, _ = rand.Read(key)
	pii, err := core.NewPIICipher(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := apiNewEnvWith(t, func(o *store.Options) { o.PII = pii }, nil)
	w := core.NewWriter(core.NewPostgresSink(e.db.Pool, core.PostgresSinkOptions{Schema: e.db.Schema, PII: pii}),
		core.WriterOptions{FlushInterval: time.Millisecond})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	rec := &core.Record{Kind: core.KindCustom, Action: "profile.viewed", Tenant: core.Tenant{ID: "acme"},
		Actor: core.Actor{ID: "u1", Email: "ada@example.test"}}
	if err := w.Enqueue(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	user := apiToken(t, "u1", core.ActorTenantUser, "acme")
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	email := func() string {
		t.Helper()
		r := e.do(http.MethodGet, "/logs/"+rec.ID.String()+"?tenant_id=acme", admin, nil)
		if r.status != http.StatusOK {
			t.Fatalf("get: %d %s", r.status, r.body)
		}
		var got store.Record
		r.decode(t, &got)
		return got.ActorEmail
	}
	if got := email(); got != "ada@example.test" {
		t.Fatalf("before the erasure the email reads %q", got)
	}
	for _, c := range []struct {
		token, body string
		status      int
		code        string
	}{
		{user, `{"subject":"actor:u1"}`, http.StatusForbidden, "forbidden"},
		{admin, `{"subject":"actor:u1"}`, http.StatusBadRequest, "invalid_parameter"},
		{admin, `{"tenant_id":"acme"}`, http.StatusBadRequest, "invalid_parameter"},
		{admin, `{"tenant_id":"acme","subject":"actor:u1","extra":1}`, http.StatusBadRequest, ""},
	} {
		r := e.do(http.MethodPost, "/subjects/erase", c.token, []byte(c.body))
		if r.status != c.status || (c.code != "" && r.errCode() != c.code) {
			t.Fatalf("%s: %d %s, want %d %s", c.body, r.status, r.body, c.status, c.code)
		}
	}
	r := e.do(http.MethodPost, "/subjects/erase", admin, []byte(`{"tenant_id":"acme","subject":"actor:u1"}`))
	if r.status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	var res struct {
		TenantID string   `json:"tenant_id"`
		Keys     int      `json:"keys"`
		Records  int64    `json:"records"`
		KeyIDs   []string `json:"key_ids"`
	}
	r.decode(t, &res)
	if res.TenantID != "acme" || res.Keys != 1 || res.Records != 1 || len(res.KeyIDs) != 1 {
		t.Fatalf("erase answered %+v", res)
	}
	if got := email(); got != core.ErasedValue {
		t.Fatalf("after the erasure the email reads %q", got)
	}
	if n := e.count(`action = $1 AND tenant_id = 'acme' AND actor_id = 'root'`, core.SubjectErasedAction); n != 1 {
		t.Fatalf("%d erasure records by the administrator", n)
	}
}
