package store_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// metaFixture writes, in tenant acme, two records of the application and one of each of the
// service's own resource types (a search record and the HTTP record of the API request), and
// returns the application's record ids.
func metaFixture(t *testing.T, e *env) (app []string) {
	t.Helper()
	now := time.Now()
	recs := []*core.Record{
		{Kind: core.KindCustom, Action: "invoice.sent", ResourceType: "invoices", Tenant: core.Tenant{ID: "acme"}, OccurredAt: now.Add(-4 * time.Second)},
		{Kind: core.KindHTTP, Action: "http.request", Tenant: core.Tenant{ID: "acme"}, OccurredAt: now.Add(-3 * time.Second)},
		{Kind: core.KindCustom, Action: "auditlog.search", ResourceType: store.ResourceAuditLogs, Tenant: core.Tenant{ID: "acme"}, OccurredAt: now.Add(-2 * time.Second)},
		{Kind: core.KindHTTP, Action: "http.request", ResourceType: store.ResourceAuditLogs, Tenant: core.Tenant{ID: "acme"}, OccurredAt: now.Add(-2 * time.Second)},
		{Kind: core.KindCustom, Action: "tenant.updated", ResourceType: store.ResourceAuditTenants, Tenant: core.Tenant{ID: "acme"}, OccurredAt: now.Add(-time.Second)},
	}
	e.write(t, recs...)
	return []string{recs[0].ID.String(), recs[1].ID.String()}
}

// The service's own records are left out of pages, exports, stats and streams unless
// include_meta=true or the filter names their resource type; the parameter round-trips and binds
// cursors like every filter.
func TestIncludeMetaFilter(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	app := metaFixture(t, e)
	sc := store.TenantScope("acme")
	for _, c := range []struct {
		query string
		want  int
	}{
		{"", 2}, {"include_meta=false", 2}, {"include_meta=true", 5},
		{"resource_type=audit_logs", 2}, {"resource_type=audit_tenants", 1},
		{"kind=http", 1}, {"kind=http&include_meta=true", 2}, {"action_prefix=auditlog.", 0},
		{"action_prefix=auditlog.&include_meta=true", 1},
	} {
		v, _ := url.ParseQuery(c.query)
		q, err := e.st.ParseQuery(v)
		if err != nil {
			t.Fatalf("%q: %v", c.query, err)
		}
		page, err := e.st.List(ctx, sc, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Records) != c.want {
			t.Errorf("List %q: %d records, want %d", c.query, len(page.Records), c.want)
		}
		if c.query == "" {
			for _, r := range page.Records {
				if !strings.Contains(strings.Join(app, " "), r.ID.String()) {
					t.Errorf("the default page holds %s (%s)", r.Action, r.ResourceType)
				}
			}
		}
		var buf bytes.Buffer
		n, err := e.st.Export(ctx, sc, q.Filter, store.ExportOptions{Format: store.FormatNDJSON}, &buf)
		if err != nil || n != int64(c.want) {
			t.Errorf("Export %q: %d records, %v; want %d", c.query, n, err, c.want)
		}
		st, err := e.st.Stats(ctx, sc, store.StatsQuery{Filter: q.Filter})
		if err != nil || st.Total != int64(c.want) {
			t.Errorf("Stats %q: total %d, %v; want %d", c.query, st.Total, err, c.want)
		}
		again, err := store.ParseFilter(q.Filter.Values())
		if err != nil || again.IncludeMeta != q.Filter.IncludeMeta {
			t.Errorf("%q does not round-trip: %+v %v", c.query, again, err)
		}
	}
	// Get by id finds the service's own records.
	var metaID string
	if err := e.db.Pool.QueryRow(ctx, `SELECT id::text FROM audit_logs WHERE resource_type = 'audit_tenants'`).Scan(&metaID); err != nil {
		t.Fatal(err)
	}
	v, _ := url.ParseQuery("include_meta=true")
	q, _ := e.st.ParseQuery(v)
	all, _ := e.st.List(ctx, sc, q)
	for _, r := range all.Records {
		if r.ID.String() == metaID {
			if _, err := e.st.Get(ctx, sc, r.ID); err != nil {
				t.Fatalf("Get of the service's own record: %v", err)
			}
		}
	}
	// A cursor is bound to include_meta.
	v, _ = url.ParseQuery("limit=1")
	q, _ = e.st.ParseQuery(v)
	page, err := e.st.List(ctx, sc, q)
	if err != nil || page.NextCursor == "" {
		t.Fatalf("no cursor: %v", err)
	}
	v, _ = url.ParseQuery("limit=1&include_meta=true&cursor=" + url.QueryEscape(page.NextCursor))
	if q, err = e.st.ParseQuery(v); err == nil {
		_, err = e.st.List(ctx, sc, q)
	}
	if !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("a cursor of the default page used with include_meta=true: %v", err)
	}
	for _, bad := range []string{"include_meta=1", "include_meta=", "include_meta=true&include_meta=true", "include_meta=TRUE"} {
		v, _ := url.ParseQuery(bad)
		var pe *store.ParamError
		if _, err := store.ParseFilter(v); !errors.As(err, &pe) || pe.Param != store.ParamIncludeMeta {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// Streams leave the service's own records out unless asked for them.
func TestIncludeMetaStream(t *testing.T) {
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	plain, err := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	meta, err := e.st.Subscribe(ctx, store.TenantScope("acme"), store.Filter{IncludeMeta: true})
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	app := metaFixture(t, e)
	if got := receive(t, meta, 5); len(got) != 5 {
		t.Fatal(len(got))
	}
	for i, r := range receive(t, plain, 2) {
		if r.ID.String() != app[i] {
			t.Errorf("the default stream delivered %s (%s)", r.Action, r.ResourceType)
		}
	}
	mark := flushAndMark(t, e.w, "acme")
	if r := receive(t, plain, 1)[0]; r.ID != mark {
		t.Errorf("the default stream delivered %s (%s) before the marker", r.Action, r.ResourceType)
	}
}

// Clients cannot submit records that would pass for the service's own.
func TestIngestRefusesServiceResourceTypes(t *testing.T) {
	for _, rt := range store.ServiceResourceTypes {
		_, err := store.DecodeInputs([]byte(`{"action":"auditlog.search","resource_type":"`+rt+`"}`), false, 10, time.Now())
		var ie *store.InvalidRecordsError
		if !errors.As(err, &ie) || ie.Items[0].Field != "resource_type" {
			t.Errorf("%s: %v", rt, err)
		}
	}
}

// A subscription opened with EndOnSuspend ends with ErrTenantSuspended soon after its tenant is
// suspended, through this store or by another process's statement; other subscriptions go on.
func TestStreamEndsWhenTenantSuspended(t *testing.T) {
	e := newEnv(t, store.Options{StreamStatusInterval: 200 * time.Millisecond})
	ctx := context.Background()
	for _, id := range []string{"acme", "globex", "initech"} {
		if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	open := func(tenant string, end bool) *store.Subscription {
		t.Helper()
		sub, err := e.st.SubscribeWith(ctx, store.TenantScope(tenant), store.Filter{}, store.SubscribeOptions{EndOnSuspend: end})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		return sub
	}
	acme, acmeAdmin, globex := open("acme", true), open("acme", false), open("globex", true)
	initech := open("initech", true)
	suspended := store.TenantSuspended
	for _, c := range []struct {
		sub     *store.Subscription
		suspend func()
	}{
		{acme, func() {
			if _, _, err := e.st.UpdateTenant(ctx, "acme", store.TenantUpdate{Status: &suspended}); err != nil {
				t.Fatal(err)
			}
		}},
		{initech, func() { // another process, by SQL
			if _, err := e.db.Pool.Exec(ctx, `UPDATE audit_tenants SET status = 'suspended' WHERE id = 'initech'`); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		start := time.Now()
		c.suspend()
		select {
		case _, ok := <-c.sub.C:
			if ok {
				t.Fatal("a record instead of the end")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the stream of a suspended tenant goes on")
		}
		if !errors.Is(c.sub.Err(), store.ErrTenantSuspended) {
			t.Fatalf("ended with %v", c.sub.Err())
		}
		t.Logf("ended %v after the suspension", time.Since(start).Round(time.Millisecond))
	}
	// The subscriptions without EndOnSuspend, and other tenants', still deliver.
	e.write(t, &core.Record{Kind: core.KindCustom, Action: "x", Tenant: core.Tenant{ID: "acme"}},
		&core.Record{Kind: core.KindCustom, Action: "x", Tenant: core.Tenant{ID: "globex"}})
	receive(t, acmeAdmin, 1)
	receive(t, globex, 1)
	// Subscribing while suspended ends at the first check.
	late := open("acme", true)
	select {
	case <-late.C:
	case <-time.After(10 * time.Second):
		t.Fatal("a new stream of a suspended tenant goes on")
	}
	if !errors.Is(late.Err(), store.ErrTenantSuspended) {
		t.Fatalf("ended with %v", late.Err())
	}
}
