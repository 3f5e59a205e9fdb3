package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// readerPool creates a NOLOGIN reader role with the privileges the Store needs, applies
// schema.EnableRowLevelSecurity for it, and returns a pool whose connections take the role at
// startup (so RESET ROLE cannot leave it). The role is dropped when tb ends.
func readerPool(tb testing.TB, db *pgtest.DB) *pgxpool.Pool {
	tb.Helper()
	role, pool := db.NewRole(tb, "reader", "SELECT, INSERT, DELETE ON audit_logs",
		"SELECT, INSERT, UPDATE, DELETE ON audit_tenants, audit_idempotency_keys, audit_stream_listeners",
		"SELECT, INSERT, UPDATE ON audit_chain_heads")
	if err := schema.EnableRowLevelSecurity(context.Background(), db.Pool, []string{role}, schema.WithSchema(db.Schema)); err != nil {
		tb.Fatal(err)
	}
	return pool
}

// rlsEnv is newEnv whose Store reads through a reader role under row-level security; the writer
// stays on the owner's pool and copies.
func rlsEnv(tb testing.TB) (*env, *pgxpool.Pool) {
	tb.Helper()
	e := newEnv(tb, store.Options{})
	pool := readerPool(tb, e.db)
	st, err := store.New(pool, store.Options{Schema: e.db.Schema, RowLevelSecurity: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	e.st = st
	return e, pool
}

func TestRowLevelSecurityScopesEveryRead(t *testing.T) {
	ctx := context.Background()
	e, pool := rlsEnv(t)
	base := time.Now().UTC().Add(-time.Minute)
	// The owner's COPY writer works with row-level security on.
	recs := seed([]string{"a", "b"}, 30, base)
	e.write(t, recs...)
	perTenant := map[string]int64{}
	for _, r := range recs {
		perTenant[r.Tenant.ID]++
	}
	a, all := store.TenantScope("a"), store.AllTenantsScope()

	// The database alone keeps the scope: a statement without any tenant condition.
	for _, c := range []struct {
		sc   store.Scope
		want int64
	}{{a, perTenant["a"]}, {store.TenantScope("b"), perTenant["b"]}, {store.TenantScope("c"), 0}, {all, int64(len(recs))}} {
		n, err := store.CountInScope(ctx, e.st, c.sc)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("SELECT count(*) without WHERE in scope %s: %d rows, want %d", c.sc, n, c.want)
		}
	}
	// Without the option, the same reader role sees nothing: the policies fail closed.
	plain, err := store.New(pool, store.Options{Schema: e.db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if p, err := plain.List(ctx, a, store.Query{}); err != nil || len(p.Records) != 0 {
		t.Errorf("reader without the option: %d records, %v; want none", len(p.Records), err)
	}

	// Every read path returns exactly the scope's records.
	if got, want := listAll(t, e.st, a, store.Query{Limit: 7}), expected(recs, a, store.Filter{}, store.NewestFirst); !equalIDs(got, want) {
		t.Errorf("list tenant a: %d records, want %d", len(got), len(want))
	}
	if got, want := listAll(t, e.st, all, store.Query{Limit: 50}), expected(recs, all, store.Filter{}, store.NewestFirst); !equalIDs(got, want) {
		t.Errorf("list all tenants: %d records, want %d", len(got), len(want))
	}
	for _, r := range recs {
		_, err := e.st.Get(ctx, a, r.ID)
		if r.Tenant.ID == "a" && err != nil || r.Tenant.ID != "a" && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get %s of tenant %q in scope a: %v", r.ID, r.Tenant.ID, err)
		}
	}
	var buf bytes.Buffer
	n, err := e.st.Export(ctx, a, store.Filter{}, store.ExportOptions{Format: store.FormatNDJSON}, &buf)
	if err != nil || n != perTenant["a"] || strings.Contains(buf.String(), "marker-b") {
		t.Errorf("export tenant a: %d records, %v; want %d, none of b", n, err, perTenant["a"])
	}
	st, err := e.st.Stats(ctx, a, store.StatsQuery{Filter: store.Filter{From: base.Add(-2 * time.Hour), To: base.Add(time.Hour)}})
	if err != nil || st.Total != perTenant["a"] {
		t.Errorf("stats tenant a: total %d, %v; want %d", st.Total, err, perTenant["a"])
	}
	st, err = e.st.Stats(ctx, all, store.StatsQuery{Filter: store.Filter{From: base.Add(-2 * time.Hour), To: base.Add(time.Hour)}})
	if err != nil || st.Total != int64(len(recs)) {
		t.Errorf("stats all tenants: total %d, %v; want %d", st.Total, err, len(recs))
	}

	// Deletes: a statement without a tenant condition in scope a leaves b's rows alone, and
	// Cleanup removes only the tenant's records.
	if n, err := store.ExecInScope(ctx, e.st, a, `DELETE FROM audit_logs WHERE tenant_id = 'b'`); err != nil || n != 0 {
		t.Errorf("tenant a deleting b's records: %d rows, %v", n, err)
	}
	n, err = e.st.Cleanup(ctx, "a", base.Add(time.Hour))
	if err != nil || n != perTenant["a"] {
		t.Errorf("cleanup tenant a: %d, %v; want %d", n, err, perTenant["a"])
	}
	if got := e.db.Count(t); got != len(recs)-int(perTenant["a"]) {
		t.Errorf("after cleanup of a the table holds %d rows, want %d", got, len(recs)-int(perTenant["a"]))
	}
	if _, err := e.st.ApplyRetention(ctx, store.RetentionPolicy{MaxAge: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := e.db.Count(t); got != 0 {
		t.Errorf("retention across tenants left %d rows", got)
	}
}

func TestRowLevelSecurityIngestWritesOnlyItsTenant(t *testing.T) {
	ctx := context.Background()
	e, _ := rlsEnv(t)
	for _, id := range []string{"a", "b"} {
		if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	caller := core.Actor{ID: "svc", Type: core.ActorService}
	res, err := e.st.Ingest(ctx, store.IngestRequest{TenantID: "a", Caller: caller, IdempotencyKey: "k1", RequestHash: []byte("1"),
		Inputs: []store.Input{{Action: "invoice.sent"}, {Action: "invoice.paid"}}})
	if err != nil || len(res.IDs) != 2 {
		t.Fatalf("ingest for a: %+v, %v", res, err)
	}
	if _, err := e.st.Ingest(ctx, store.IngestRequest{Caller: caller, Inputs: []store.Input{{Action: "platform.event"}}}); err != nil {
		t.Fatalf("ingest without a tenant: %v", err)
	}
	for _, id := range res.IDs {
		if _, err := e.st.Get(ctx, store.TenantScope("a"), id); err != nil {
			t.Errorf("get ingested %s: %v", id, err)
		}
	}
	// The database refuses a row of b in a's transaction, whatever the statement says.
	_, err = store.ExecInScope(ctx, e.st, store.TenantScope("a"), `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id)
		VALUES (gen_random_uuid(), now(), 'custom', 'forged', 'b')`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "row-level security") {
		t.Errorf("inserting b's row in a's scope: err = %v, want a row-level security violation", err)
	}
	if n, err := store.CountInScope(ctx, e.st, store.TenantScope("b")); err != nil || n != 0 {
		t.Errorf("tenant b holds %d records, %v; want 0", n, err)
	}
	if got := e.db.Count(t); got != 3 {
		t.Errorf("the table holds %d rows, want 3", got)
	}
}

func equalIDs[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRowLevelSecurityStreams(t *testing.T) {
	ctx := context.Background()
	e, _ := rlsEnv(t)
	subA, err := e.st.Subscribe(ctx, store.TenantScope("a"), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()
	subAll, err := e.st.Subscribe(ctx, store.AllTenantsScope(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer subAll.Close()
	// b's records are written, and notified, before a's: one leaking into a's stream would come
	// first.
	e.write(t, seed([]string{"b"}, 3, time.Now())[:3]...)
	e.write(t, seed([]string{"a"}, 3, time.Now())[:3]...)
	for _, r := range receive(t, subA, 3) {
		if r.TenantID != "a" {
			t.Errorf("tenant a's stream got a record of %q", r.TenantID)
		}
	}
	if got := receive(t, subAll, 6); len(got) != 6 {
		t.Errorf("all-tenants stream: %d records", len(got))
	}
}
