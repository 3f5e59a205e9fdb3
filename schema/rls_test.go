package schema_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

const insertRow = `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id)
	VALUES (gen_random_uuid(), now(), 'custom', 'x', $1)`

// inScope runs fn in a transaction with the scope settings of tenant ("*" for all tenants, ""
// for none).
func inScope(t *testing.T, pool *pgxpool.Pool, tenant string, fn func(tx pgx.Tx) error) error {
	t.Helper()
	return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if tenant != "" {
			all := "off"
			if tenant == "*" {
				all, tenant = "on", ""
			}
			if _, err := tx.Exec(context.Background(), `SELECT set_config($1, $2, true), set_config($3, $4, true)`,
				schema.TenantSetting, tenant, schema.AllTenantsSetting, all); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

func countIn(t *testing.T, pool *pgxpool.Pool, tenant string) int {
	t.Helper()
	var n int
	if err := inScope(t, pool, tenant, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs`).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestRowLevelSecurityKeepsReadersToTheirTenant(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	for _, tenant := range []any{"a", "a", "b", nil} {
		if _, err := db.Pool.Exec(ctx, insertRow, tenant); err != nil {
			t.Fatal(err)
		}
	}
	reader, rpool := db.NewRole(t, "reader", "SELECT, INSERT, UPDATE, DELETE ON audit_logs",
		"SELECT ON audit_stream_listeners")
	_, wpool := db.NewRole(t, "writer", "INSERT ON audit_logs", "SELECT ON audit_stream_listeners")

	// Before: the reader's grants alone open every row.
	if n := countIn(t, rpool, ""); n != 4 {
		t.Fatalf("before row-level security the reader sees %d rows, want 4", n)
	}
	for range 2 { // idempotent
		if err := schema.EnableRowLevelSecurity(ctx, db.Pool, []string{reader}, schema.WithSchema(db.Schema)); err != nil {
			t.Fatal(err)
		}
	}

	// Fails closed: no setting, no rows.
	if n := countIn(t, rpool, ""); n != 0 {
		t.Errorf("without a tenant setting the reader sees %d rows, want 0", n)
	}
	// A query without any tenant condition sees only the transaction's tenant.
	if n := countIn(t, rpool, "a"); n != 2 {
		t.Errorf("tenant a sees %d rows, want 2", n)
	}
	if n := countIn(t, rpool, "b"); n != 1 {
		t.Errorf("tenant b sees %d rows, want 1", n)
	}
	if n := countIn(t, rpool, "*"); n != 4 {
		t.Errorf("all tenants see %d rows, want 4 (including the row without a tenant)", n)
	}
	// The setting is transaction-local: the next transaction on the same connections sees nothing.
	if n := countIn(t, rpool, ""); n != 0 {
		t.Errorf("after scoped transactions an unscoped one sees %d rows, want 0", n)
	}

	// Tenant a cannot write, change or delete tenant b's rows.
	err := inScope(t, rpool, "a", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insertRow, "b")
		return err
	})
	if sqlState(err) != "42501" || !strings.Contains(err.Error(), "row-level security") {
		t.Errorf("tenant a inserting a row of b: err = %v, want a row-level security violation (42501)", err)
	}
	if err := inScope(t, rpool, "a", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insertRow, "a")
		return err
	}); err != nil {
		t.Errorf("tenant a inserting its own row: %v", err)
	}
	if err := inScope(t, rpool, "a", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM audit_logs WHERE tenant_id = 'b'`)
		if err == nil && tag.RowsAffected() != 0 {
			t.Errorf("tenant a deleted %d rows of b", tag.RowsAffected())
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := inScope(t, rpool, "*", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE audit_logs SET action = 'forged'`)
		if err == nil && tag.RowsAffected() != 0 {
			t.Errorf("a reader updated %d records", tag.RowsAffected())
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Writers: the owner copies as before; an INSERT-only role inserts any tenant's rows; COPY by
	// a role subject to row-level security is refused by PostgreSQL, as documented.
	if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"audit_logs"}, []string{"id", "occurred_at", "kind", "action", "tenant_id"},
		pgx.CopyFromSlice(1, func(int) ([]any, error) {
			return []any{"00000000-0000-0000-0000-000000000001", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "custom", "copied", "b"}, nil
		})); err != nil {
		t.Errorf("owner COPY: %v", err)
	}
	for _, tenant := range []any{"b", nil} {
		if _, err := wpool.Exec(ctx, insertRow, tenant); err != nil {
			t.Errorf("INSERT by a writer role for tenant %v: %v", tenant, err)
		}
	}
	_, err = wpool.CopyFrom(ctx, pgx.Identifier{"audit_logs"}, []string{"id", "occurred_at", "kind", "action"},
		pgx.CopyFromSlice(1, func(int) ([]any, error) {
			return []any{"00000000-0000-0000-0000-000000000002", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "custom", "copied"}, nil
		}))
	if err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Errorf("COPY by a non-owner writer: err = %v, want PostgreSQL's refusal under row-level security", err)
	}
	if n := db.Count(t); n != 8 {
		t.Errorf("the table holds %d rows, want 8", n)
	}

	if err := schema.DisableRowLevelSecurity(ctx, db.Pool, schema.WithSchema(db.Schema)); err != nil {
		t.Fatal(err)
	}
	if n := countIn(t, rpool, ""); n != 8 {
		t.Errorf("after DisableRowLevelSecurity the reader sees %d rows, want 8", n)
	}
}

func TestEnableRowLevelSecurityRefusesReadersItWouldNotRestrict(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	var owner string
	if err := db.Pool.QueryRow(ctx, `SELECT current_user`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	member, _ := db.NewRole(t, "member")
	if _, err := db.Pool.Exec(ctx, `GRANT `+pgx.Identifier{owner}.Sanitize()+` TO `+pgx.Identifier{member}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{owner, member} {
		err := schema.EnableRowLevelSecurity(ctx, db.Pool, []string{r}, schema.WithSchema(db.Schema))
		if !errors.Is(err, schema.ErrReaderBypassesRLS) {
			t.Errorf("reader %q: err = %v, want ErrReaderBypassesRLS", r, err)
		}
	}
	if err := schema.EnableRowLevelSecurity(ctx, db.Pool, []string{db.Schema + "_nobody"}, schema.WithSchema(db.Schema)); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("unknown role: err = %v", err)
	}
	if err := schema.EnableRowLevelSecurity(ctx, db.Pool, nil, schema.WithSchema(db.Schema)); err == nil {
		t.Error("no reader roles: no error")
	}
	var enabled bool
	if err := db.Pool.QueryRow(ctx, `SELECT relrowsecurity FROM pg_class WHERE oid = 'audit_logs'::regclass`).Scan(&enabled); err != nil {
		t.Fatal(err)
	}
	if enabled {
		t.Error("a refused call left row-level security enabled")
	}
}
