package entaudit_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// ent's schema migration runs as without the wrapper: the transaction it hands to an ApplyHook
// is the driver's own *sql.Tx (the documented pattern conn.(*sql.Tx)), DML in it works, and
// the tables it creates are audited afterwards.
func TestMigrationPassesThrough(t *testing.T) {
	debug := func(d dialect.Driver) dialect.Driver { return dialect.Debug(d, func(...any) {}) }
	for _, c := range []struct {
		name string
		wrap func(dialect.Driver) dialect.Driver
		want string // the connection's type, as without the wrapper
	}{
		{"not wrapped", func(d dialect.Driver) dialect.Driver { return d }, "*sql.Tx"},
		{"wrapped", entaudit.Driver, "*sql.Tx"},
		{"debug, not wrapped", debug, "*dialect.DebugTx"},
		{"wrapped, then debug", func(d dialect.Driver) dialect.Driver { return debug(entaudit.Driver(d)) }, "*dialect.DebugTx"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			db := pgtest.New(t)
			sqlDB, err := sql.Open("pgx", db.URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sqlDB.Close() })
			client := entest.NewClient(entest.Driver(c.wrap(entsql.OpenDB(dialect.Postgres, sqlDB))))
			w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
			t.Cleanup(func() { _ = w.Close(context.Background()) })
			client.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: w}))
			applied := false
			err = client.Schema.Create(ctx, schema.WithApplyHook(func(next schema.Applier) schema.Applier {
				return schema.ApplyFunc(func(ctx context.Context, conn dialect.ExecQuerier, plan *migrate.Plan) error {
					if got := fmt.Sprintf("%T", conn); got != c.want {
						t.Errorf("the migration's connection is a %s, want %s", got, c.want)
					}
					if tx, ok := conn.(*entsql.Tx); ok { // the documented pattern
						conn = tx
					}
					if err := next.Apply(ctx, conn, plan); err != nil {
						return err
					}
					applied = true
					return conn.Exec(ctx, `INSERT INTO "notes" ("label") VALUES ($1)`, []any{"seed"}, nil)
				})
			}))
			if err != nil {
				t.Fatalf("migration: %v", err)
			}
			if !applied {
				t.Fatal("the apply hook did not run")
			}
			if n := client.Note.Query().CountX(ctx); n != 1 {
				t.Fatalf("notes = %d, want the seeded one", n)
			}
			client.Note.Create().SetLabel("after").ExecX(ctx)
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE resource_type = 'notes'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("audit rows of notes = %d, want the create after the migration", n)
			}
		})
	}
}
