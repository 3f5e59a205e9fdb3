package core_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// withParam adds a query parameter (a runtime parameter for the session) to a test URL.
func withParam(url, kv string) string {
	if strings.Contains(url, "?") {
		return url + "&" + kv
	}
	return url + "?" + kv
}

// exec runs statements on the test database as its superuser.
func exec(t *testing.T, db *pgtest.DB, stmts ...string) {
	t.Helper()
	for _, st := range stmts {
		if _, err := db.Pool.Exec(context.Background(), st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
}

// loginRole creates a role that can log in (the test server trusts local connections) and returns
// the test database URL connecting as it. Role settings (ALTER ROLE ... SET) apply to it.
func loginRole(t *testing.T, db *pgtest.DB, suffix string, stmts ...string) string {
	t.Helper()
	role := db.Schema + "_" + suffix
	q := pgx.Identifier{role}.Sanitize()
	exec(t, db, `CREATE ROLE `+q+` LOGIN`)
	t.Cleanup(func() {
		for _, st := range []string{`DROP OWNED BY ` + q, `DROP ROLE ` + q} {
			if _, err := db.Pool.Exec(context.Background(), st); err != nil {
				t.Errorf("%s: %v", st, err)
			}
		}
	})
	for _, st := range stmts {
		exec(t, db, strings.ReplaceAll(st, "ROLE_NAME", q))
	}
	return strings.Replace(pgtest.URL(), "postgres@", role+"@", 1)
}

// TestOpenChecksTheSchema: Open and CheckSchema accept a migrated schema and refuse, with an error
// wrapping ErrSchemaNotReady that names the problem, the schema, the database and the fix, every
// set-up in which the writer could not write.
func TestOpenChecksTheSchema(t *testing.T) {
	base := pgtest.URL()
	q := func(db *pgtest.DB) string { return pgx.Identifier{db.Schema}.Sanitize() }
	tests := []struct {
		name  string
		setup func(t *testing.T) (url, schema string)
		want  []string // fragments of the message; empty means ready
	}{
		{"ready", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			return base, db.Schema
		}, nil},
		{"ready for a role with INSERT and SELECT, and the chain's heads", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			role, _ := db.NewRole(t, "writer", "INSERT, SELECT ON "+q(db)+".audit_logs",
				"SELECT, INSERT, UPDATE ON "+q(db)+".audit_chain_heads")
			return withParam(base, "role="+role), db.Schema
		}, nil},
		{"no privilege on the chain's heads", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			role, _ := db.NewRole(t, "unchained", "INSERT, SELECT ON "+q(db)+".audit_logs",
				"SELECT, INSERT ON "+q(db)+".audit_chain_heads")
			return withParam(base, "role="+role), db.Schema
		}, []string{"lacks one of the SELECT, INSERT, UPDATE privileges on", ".audit_chain_heads", "AUDIT_CHAIN=false"}},
		{"schema missing", func(t *testing.T) (string, string) {
			return base, "no_such_schema_for_auditkit"
		}, []string{`schema "no_such_schema_for_auditkit" does not exist`, core.MigrateCommand + " -schema no_such_schema_for_auditkit", "schema.CreateTablesFor"}},
		{"empty schema", func(t *testing.T) (string, string) {
			db := pgtest.NewEmpty(t)
			return base, db.Schema
		}, []string{"auditkit_migrations does not exist", core.MigrateCommand + " -schema ", "AUDIT_SKIP_SCHEMA_CHECK"}},
		{"old version", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			exec(t, db, `DELETE FROM `+q(db)+`.auditkit_migrations WHERE version > 1`)
			return base, db.Schema
		}, []string{"at migration version 1 and need migration to version " + strconv.Itoa(core.SchemaVersion), core.MigrateCommand}},
		{"newer version", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			exec(t, db, `INSERT INTO `+q(db)+`.auditkit_migrations (version, name, checksum) VALUES (99, '0099_future', 'x')`)
			return base, db.Schema
		}, []string{"at migration version 99, written by a newer auditkit", "upgrade github.com/auditkit/auditkit"}},
		{"no audit_logs", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			exec(t, db, `DROP TABLE `+q(db)+`.audit_logs CASCADE`)
			return base, db.Schema
		}, []string{".audit_logs does not exist", core.MigrateCommand}},
		{"no INSERT", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			role, _ := db.NewRole(t, "reader", "SELECT ON "+q(db)+".audit_logs")
			return withParam(base, "role="+role), db.Schema
		}, []string{"lacks the INSERT privilege on", "GRANT INSERT, SELECT ON " + `"t_`}},
		{"no SELECT", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			role, _ := db.NewRole(t, "blind", "INSERT ON "+q(db)+".audit_logs")
			return withParam(base, "role="+role), db.Schema
		}, []string{"lacks the SELECT privilege on", "GRANT INSERT, SELECT ON"}},
		{"no USAGE", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			role, _ := db.NewRole(t, "outsider", "INSERT, SELECT ON "+q(db)+".audit_logs")
			exec(t, db, `REVOKE USAGE ON SCHEMA `+q(db)+` FROM `+pgx.Identifier{role}.Sanitize())
			return withParam(base, "role="+role), db.Schema
		}, []string{"has no USAGE privilege on schema", "GRANT USAGE ON SCHEMA"}},
		{"read-only role", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			url := loginRole(t, db, "ro",
				`GRANT USAGE ON SCHEMA `+q(db)+` TO ROLE_NAME`,
				`GRANT INSERT, SELECT ON `+q(db)+`.audit_logs TO ROLE_NAME`,
				`ALTER ROLE ROLE_NAME SET default_transaction_read_only = on`)
			return url, db.Schema
		}, []string{"are read-only (transaction_read_only is on)", "default_transaction_read_only = off"}},
		{"read-only URL", func(t *testing.T) (string, string) {
			db := pgtest.New(t)
			return withParam(base, "default_transaction_read_only=on"), db.Schema
		}, []string{"are read-only", `ALTER ROLE "postgres" SET default_transaction_read_only = off`}},
		{"no database", func(t *testing.T) (string, string) {
			return strings.Replace(base, "/test?", "/no_such_database_for_auditkit?", 1), "public"
		}, []string{"the database does not exist", "createdb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, schemaName := tt.setup(t)
			url = strings.Replace(url, "postgres@", "postgres:hunter2@", 1)
			cfg := core.Config{DatabaseURL: url, Schema: schemaName, ConnectTimeout: 2 * time.Second}
			ctx := context.Background()
			checkErr := core.CheckSchema(ctx, cfg)
			w, openErr := core.Open(ctx, cfg)
			if w != nil {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := w.Close(cctx); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			if len(tt.want) == 0 {
				if checkErr != nil || openErr != nil {
					t.Fatalf("CheckSchema = %v, Open = %v; want both to accept", checkErr, openErr)
				}
				return
			}
			for name, err := range map[string]error{"CheckSchema": checkErr, "Open": openErr} {
				if !errors.Is(err, core.ErrSchemaNotReady) {
					t.Fatalf("%s = %v, want an error wrapping ErrSchemaNotReady", name, err)
				}
				msg := err.Error()
				for _, want := range append([]string{`"` + schemaName + `"`, "127.0.0.1:5432", "to fix: "}, tt.want...) {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: the message lacks %q:\n%s", name, want, msg)
					}
				}
				if strings.Contains(msg, "hunter2") {
					t.Errorf("%s: the message reveals the password: %s", name, msg)
				}
			}
			if w != nil {
				t.Error("Open returned a writer with its error")
			}
		})
	}
}

// TestOpenSkipSchemaCheck: SkipSchemaCheck opens a writer on a schema the check would refuse.
func TestOpenSkipSchemaCheck(t *testing.T) {
	db := pgtest.NewEmpty(t)
	w, err := core.Open(context.Background(), core.Config{DatabaseURL: pgtest.URL(), Schema: db.Schema, SkipSchemaCheck: true})
	if err != nil {
		t.Fatalf("Open with SkipSchemaCheck: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Error(err)
	}
}
