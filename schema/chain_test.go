package schema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestChainMigration checks what migration 0003 adds: the chain columns (NULL for rows written
// before it), the chain index, the heads table and the checkpoints table with its kind check.
func TestChainMigration(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	for _, c := range []struct{ table, column, typ string }{
		{"audit_logs", "seq", "bigint"},
		{"audit_logs", "prev_hash", "bytea"},
		{"audit_logs", "row_hash", "bytea"},
		{"audit_chain_heads", "tenant_key", "text"},
		{"audit_chain_heads", "seq", "bigint"},
		{"audit_chain_heads", "row_hash", "bytea"},
		{"audit_checkpoints", "signature", "bytea"},
		{"audit_checkpoints", "prev_checkpoint", "bytea"},
	} {
		var typ string
		err := db.Pool.QueryRow(ctx, `SELECT data_type FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = $2 AND column_name = $3`, db.Schema, c.table, c.column).Scan(&typ)
		if err != nil || typ != c.typ {
			t.Errorf("%s.%s: type %q (%v), want %s", c.table, c.column, typ, err, c.typ)
		}
	}
	var def string
	if err := db.Pool.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'audit_logs_chain_idx'`,
		db.Schema).Scan(&def); err != nil {
		t.Fatalf("audit_logs_chain_idx: %v", err)
	}
	if !strings.Contains(def, "COALESCE(tenant_id, ''::text), seq") || !strings.Contains(def, "WHERE (seq IS NOT NULL)") ||
		strings.Contains(def, "UNIQUE") {
		t.Errorf("audit_logs_chain_idx is %s", def)
	}
	// A row written without the chain columns is outside the chain.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, kind, action) VALUES (gen_random_uuid(), now(), 'custom', 'x')`); err != nil {
		t.Fatal(err)
	}
	var nulls bool
	if err := db.Pool.QueryRow(ctx, `SELECT seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL FROM audit_logs`).Scan(&nulls); err != nil || !nulls {
		t.Fatalf("unchained row: chain columns NULL = %v (%v)", nulls, err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_checkpoints (tenant_key, seq, row_hash, kind, created_at, key_id, signature)
		VALUES ('', 1, '\x00', 'other', now(), 'k', '\x00')`); err == nil {
		t.Error("audit_checkpoints accepted kind 'other'")
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_checkpoints (tenant_key, seq, row_hash, kind, created_at, key_id, signature)
		VALUES ('', 1, '\x00', 'truncation', now(), 'k', '\x00')`); err != nil {
		t.Errorf("audit_checkpoints refused a truncation: %v", err)
	}
}
