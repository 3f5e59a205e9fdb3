package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

func TestTenantsRegistry(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	a, err := e.st.CreateTenant(ctx, store.Tenant{ID: "acme", Slug: "acme", Name: "Acme Inc."})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != store.TenantActive || a.CreatedAt.IsZero() {
		t.Fatalf("created %+v", a)
	}
	if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: "acme"}); !errors.Is(err, store.ErrTenantExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: "acme2", Slug: "acme"}); !errors.Is(err, store.ErrTenantExists) {
		t.Fatalf("duplicate slug: %v", err)
	}
	for _, bad := range []store.Tenant{{ID: ""}, {ID: "has space"}, {ID: strings.Repeat("x", 129)}, {ID: "ok", Status: "gone"},
		{ID: "ok", Name: "bell\a"}, {ID: "ok", RetentionDays: -1}, {ID: "ok", Slug: "a/b"}} {
		if _, err := e.st.CreateTenant(ctx, bad); !errors.Is(err, store.ErrInvalidTenant) {
			t.Errorf("%+v accepted: %v", bad, err)
		}
	}
	for i := range 5 {
		if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: fmt.Sprintf("t%d", i), Status: store.TenantInactive}); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := e.st.ListTenants(ctx, store.TenantQuery{Limit: 4})
	if err != nil || len(page) != 4 || next != "t2" {
		t.Fatalf("page 1: %v %d %q", err, len(page), next)
	}
	page, next, err = e.st.ListTenants(ctx, store.TenantQuery{Limit: 4, After: next})
	if err != nil || len(page) != 2 || next != "" {
		t.Fatalf("page 2: %v %d %q", err, len(page), next)
	}
	page, _, _ = e.st.ListTenants(ctx, store.TenantQuery{Status: store.TenantActive})
	if len(page) != 1 || page[0].ID != "acme" {
		t.Fatalf("active tenants: %+v", page)
	}
	suspended := store.TenantSuspended
	days := 30
	before, after, err := e.st.UpdateTenant(ctx, "acme", store.TenantUpdate{Status: &suspended, RetentionDays: &days})
	if err != nil || before.Status != store.TenantActive || after.Status != store.TenantSuspended || after.RetentionDays != 30 || after.Slug != "acme" {
		t.Fatalf("update: %v %+v %+v", err, before, after)
	}
	if _, _, err := e.st.UpdateTenant(ctx, "nobody", store.TenantUpdate{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update unknown: %v", err)
	}
	slug := "acme"
	if _, _, err := e.st.UpdateTenant(ctx, "t1", store.TenantUpdate{Slug: &slug}); !errors.Is(err, store.ErrTenantExists) {
		t.Fatalf("taking a slug: %v", err)
	}
	if st, err := e.st.TenantStatusOf(ctx, "acme"); err != nil || st != store.TenantSuspended {
		t.Fatalf("status: %v %v", st, err)
	}
	if _, err := e.st.TenantStatusOf(ctx, "nobody"); !errors.Is(err, store.ErrTenantUnknown) {
		t.Fatalf("status of unknown: %v", err)
	}
}

func TestIngest(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	for _, tn := range []store.Tenant{{ID: "acme", Slug: "acme-slug"}, {ID: "old", Status: store.TenantInactive}, {ID: "bad", Status: store.TenantSuspended}} {
		if _, err := e.st.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	caller := core.Actor{ID: "svc-billing", Type: core.ActorService, Auth: "jwt:HS256"}
	body := []byte(`{"logs": [
		{"action": "invoice.sent", "resource_type": "invoices", "resource_id": "42", "metadata": {"amount": 12345678901234567890, "password": "hunter2"}},
		{"action": "user.login", "actor_id": "u-7", "actor_email": "u7@example.com", "kind": "custom", "severity": "warning",
		 "occurred_at": "2026-01-02T03:04:05.123456Z", "ip": "192.0.2.1", "status": 401, "diff": {"x": {"from": 1, "to": 2}}}
	]}`)
	inputs, err := store.DecodeInputs(body, true, 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.st.Ingest(ctx, store.IngestRequest{TenantID: "acme", Caller: caller, Inputs: inputs, IdempotencyKey: "k1", RequestHash: body})
	if err != nil || len(res.IDs) != 2 || res.Replayed {
		t.Fatalf("ingest: %v %+v", err, res)
	}
	first, err := e.st.Get(ctx, store.TenantScope("acme"), res.IDs[0])
	if err != nil {
		t.Fatal(err)
	}
	if first.ActorID != "svc-billing" || first.ActorType != core.ActorService || first.ActorAuth != "jwt:HS256" ||
		first.TenantSlug != "acme-slug" || first.Kind != core.KindCustom || first.Severity != core.SeverityInfo {
		t.Fatalf("first record: %+v", first)
	}
	var meta map[string]json.RawMessage
	_ = json.Unmarshal(first.Metadata, &meta)
	if string(meta["amount"]) != "12345678901234567890" || string(meta["password"]) != `"[REDACTED]"` {
		t.Fatalf("metadata: %s", first.Metadata)
	}
	second, _ := e.st.Get(ctx, store.TenantScope("acme"), res.IDs[1])
	if second.ActorID != "u-7" || second.ActorAuth != "reported" || !strings.Contains(string(second.Metadata), `"reported_by": "svc-billing"`) ||
		second.OccurredAt.Format(time.RFC3339Nano) != "2026-01-02T03:04:05.123456Z" || second.IP != "192.0.2.1" || *second.Status != 401 {
		t.Fatalf("second record: %+v %s", second, second.Metadata)
	}

	count := func() int { return e.db.Count(t) }
	n := count()
	// A retry with the same key writes nothing and returns the same ids.
	again, err := e.st.Ingest(ctx, store.IngestRequest{TenantID: "acme", Caller: caller, Inputs: inputs, IdempotencyKey: "k1", RequestHash: body})
	if err != nil || !again.Replayed || again.IDs[0] != res.IDs[0] || count() != n {
		t.Fatalf("replay: %v %+v, %d rows (was %d)", err, again, count(), n)
	}
	// The same key with another body is refused; the same key in another tenant is independent.
	if _, err := e.st.Ingest(ctx, store.IngestRequest{TenantID: "acme", Caller: caller, Inputs: inputs[:1], IdempotencyKey: "k1", RequestHash: []byte("other")}); !errors.Is(err, store.ErrIdempotencyKeyReused) {
		t.Fatalf("reused key: %v", err)
	}
	if _, err := e.st.Ingest(ctx, store.IngestRequest{Caller: caller, Inputs: inputs[:1], IdempotencyKey: "k1", RequestHash: body}); err != nil {
		t.Fatalf("same key without tenant: %v", err)
	}
	for tenant, want := range map[string]error{"old": store.ErrTenantInactive, "bad": store.ErrTenantSuspended, "nobody": store.ErrTenantUnknown, "no such!": store.ErrTenantUnknown} {
		if _, err := e.st.Ingest(ctx, store.IngestRequest{TenantID: tenant, Caller: caller, Inputs: inputs}); !errors.Is(err, want) {
			t.Errorf("tenant %s: got %v, want %v", tenant, err, want)
		}
	}
	if _, err := e.st.Ingest(ctx, store.IngestRequest{TenantID: "acme", Caller: caller, Inputs: inputs, IdempotencyKey: "bad key"}); !errors.Is(err, store.ErrInvalidIdempotencyKey) {
		t.Fatalf("key with a space: %v", err)
	}
	// Concurrent requests with one key write once.
	n = count()
	var wg sync.WaitGroup
	results := make([]store.IngestResult, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.st.Ingest(ctx, store.IngestRequest{TenantID: "acme", Caller: caller, Inputs: inputs, IdempotencyKey: "race", RequestHash: body})
		}()
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || results[i].IDs[0] != results[0].IDs[0] {
			t.Fatalf("concurrent %d: %v %v", i, errs[i], results[i].IDs)
		}
	}
	if count() != n+2 {
		t.Fatalf("concurrent requests with one key wrote %d rows, want 2", count()-n)
	}
}

func TestDecodeInputsRefusesBadInput(t *testing.T) {
	now := time.Now()
	cases := map[string]struct {
		body string
		bulk bool
		want error
	}{
		"not json":         {`nope`, false, store.ErrInvalidBody},
		"array":            {`[{"action":"a"}]`, false, store.ErrInvalidBody},
		"trailing":         {`{"action":"a"} {"action":"b"}`, false, store.ErrInvalidRecords},
		"invalid utf8":     {"{\"action\":\"\xff\"}", false, store.ErrInvalidBody},
		"unknown field":    {`{"action":"a","tenant_id":"x"}`, false, store.ErrInvalidRecords},
		"no action":        {`{"kind":"custom"}`, false, store.ErrInvalidRecords},
		"bad kind":         {`{"action":"a","kind":"weird"}`, false, store.ErrInvalidRecords},
		"bad severity":     {`{"action":"a","severity":"fatal"}`, false, store.ErrInvalidRecords},
		"bad time":         {`{"action":"a","occurred_at":"yesterday"}`, false, store.ErrInvalidRecords},
		"future":           {`{"action":"a","occurred_at":"2999-01-01T00:00:00Z"}`, false, store.ErrInvalidRecords},
		"bad ip":           {`{"action":"a","ip":"999.1.1.1"}`, false, store.ErrInvalidRecords},
		"bad status":       {`{"action":"a","status":42}`, false, store.ErrInvalidRecords},
		"wrong type":       {`{"action":5}`, false, store.ErrInvalidRecords},
		"nul in metadata":  {`{"action":"a","metadata":{"k":"x\u0000y"}}`, false, store.ErrInvalidRecords},
		"control char":     {`{"action":"a\u0007"}`, false, store.ErrInvalidRecords},
		"negative":         {`{"action":"a","duration_us":-1}`, false, store.ErrInvalidRecords},
		"diff shape":       {`{"action":"a","diff":{"x":{"old":1}}}`, false, store.ErrInvalidRecords},
		"actor type alone": {`{"action":"a","actor_type":"service"}`, false, store.ErrInvalidRecords},
		"bulk not object":  {`[]`, true, store.ErrInvalidBody},
		"bulk empty":       {`{"logs":[]}`, true, store.ErrInvalidBody},
		"bulk missing":     {`{"records":[]}`, true, store.ErrInvalidBody},
		"bulk too many":    {`{"logs":[{"action":"a"},{"action":"b"},{"action":"c"}]}`, true, store.ErrTooManyRecords},
	}
	for name, c := range cases {
		_, err := store.DecodeInputs([]byte(c.body), c.bulk, 2, now)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
	// Every bad item of a bulk request is reported, with its index and field.
	_, err := store.DecodeInputs([]byte(`{"logs":[{"action":"ok"},{"action":"x","kind":"nope"},{"action":"y","extra":1},{"action":7}]}`), true, 10, now)
	var ie *store.InvalidRecordsError
	if !errors.As(err, &ie) || len(ie.Items) != 3 {
		t.Fatalf("got %v", err)
	}
	if ie.Items[0].Index != 1 || ie.Items[0].Field != "kind" || ie.Items[1].Index != 2 || ie.Items[1].Field != "extra" || ie.Items[2].Index != 3 || ie.Items[2].Field != "action" {
		t.Fatalf("items: %+v", ie.Items)
	}
}

func TestCleanupAndRetention(t *testing.T) {
	e := newEnv(t, store.Options{CleanupBatchSize: 7})
	ctx := context.Background()
	now := time.Now().UTC()
	var recs []*core.Record
	for _, tenant := range []string{"acme", "globex", "held", "short", ""} {
		for i := range 30 {
			recs = append(recs, &core.Record{Kind: core.KindCustom, Action: "a", Tenant: core.Tenant{ID: tenant},
				OccurredAt: now.Add(-time.Duration(i) * 24 * time.Hour)})
		}
	}
	e.write(t, recs...)
	if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: "held", LegalHold: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: "short", RetentionDays: 5}); err != nil {
		t.Fatal(err)
	}
	countOf := func(tenant string) int {
		var n int
		q := `SELECT count(*) FROM audit_logs WHERE tenant_id = $1`
		arg := any(tenant)
		if tenant == "" {
			q, arg = `SELECT count(*) FROM audit_logs WHERE tenant_id IS NULL AND $1::text IS NULL`, nil
		}
		if err := e.db.Pool.QueryRow(ctx, q, arg).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n, err := e.st.Cleanup(ctx, "acme", now.Add(-9*24*time.Hour-time.Hour))
	if err != nil || n != 20 || countOf("acme") != 10 || countOf("globex") != 30 {
		t.Fatalf("cleanup: %v deleted %d, acme %d, globex %d", err, n, countOf("acme"), countOf("globex"))
	}
	if _, err := e.st.Cleanup(ctx, "held", now); !errors.Is(err, store.ErrLegalHold) {
		t.Fatalf("legal hold: %v", err)
	}
	var reports []store.RetentionReport
	got, err := e.st.ApplyRetention(ctx, store.RetentionPolicy{MaxAge: 20*24*time.Hour - time.Hour, OnCleanup: func(r store.RetentionReport) { reports = append(reports, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if countOf("held") != 30 || countOf("short") != 5 || countOf("globex") != 20 || countOf("") != 20 || countOf("acme") != 10 {
		t.Fatalf("after retention: held %d short %d globex %d none %d acme %d", countOf("held"), countOf("short"), countOf("globex"), countOf(""), countOf("acme"))
	}
	if len(got) != 2 || len(reports) != 2 || got[0].TenantID != "short" || got[0].Deleted != 25 || got[1].TenantID != "" || got[1].Deleted != 20 {
		t.Fatalf("reports: %+v", got)
	}
	// The background loop applies the policy and stops with Close.
	other := store.Tenant{ID: "globex", RetentionDays: 1}
	if _, err := e.st.CreateTenant(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := e.st.StartRetention(store.RetentionPolicy{Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countOf("globex") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("background retention did not run: globex has %d rows", countOf("globex"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.st.Close()
}
