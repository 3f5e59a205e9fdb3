package entaudit_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/schema"
)

// The ent package (here entest; in an application, its own generated package) was generated with
// the extension:
//
//	entc.Generate("./schema", &gen.Config{}, entc.Extensions(entauditgen.Extension()))
func Example() {
	ctx := context.Background()
	cfg, cleanup, err := exampleConfig(ctx) // in an application: cfg, err := core.ConfigFromEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	w, err := core.Open(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		// Close with a context of its own: at shutdown the application's context is often
		// cancelled already, and Close must still have time to write what was accepted.
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(closeCtx); err != nil {
			fmt.Println(err)
		}
	}()

	// The application's own database. Here its tables go into the example's schema too, by the
	// connection's search_path; an application opens its database as it always does.
	pgcfg, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	pgcfg.RuntimeParams["search_path"] = cfg.Schema
	sqlDB := stdlib.OpenDB(*pgcfg)
	defer sqlDB.Close()

	// Wrap the driver and register the hook once, for every schema.
	client := entest.NewClient(entest.Driver(entaudit.Driver(entsql.OpenDB(dialect.Postgres, sqlDB))))
	client.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: w}))
	if err := client.Schema.Create(ctx); err != nil {
		fmt.Println(err)
		return
	}

	u, err := client.User.Create().SetName("alice").SetEmail("alice@example.com").SetPasswordHash("x").Save(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := client.User.UpdateOne(u).SetName("Alice").AddAge(1).SetPasswordHash("y").Exec(ctx); err != nil {
		fmt.Println(err)
		return
	}

	if err := w.Flush(ctx); err != nil { // wait until the records are stored
		fmt.Println(err)
		return
	}
	rows, err := sqlDB.QueryContext(ctx, `SELECT action, diff - 'created_at' - 'id' FROM audit_logs ORDER BY occurred_at`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var action, diff string
		if err := rows.Scan(&action, &diff); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(action, diff)
	}
	if err := rows.Err(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// users.insert {"age": {"to": 0, "from": null}, "name": {"to": "alice", "from": null}, "email": {"to": "alice@example.com", "from": null}, "password_hash": {"to": "[REDACTED]", "from": null}}
	// users.update {"age": {"to": 1, "from": 0}, "name": {"to": "Alice", "from": "alice"}, "password_hash": {"to": "[REDACTED]", "from": "[REDACTED]"}}
}

// exampleConfig is the configuration the examples run with: the database named by
// AUDIT_DATABASE_URL (default: the local test server, postgres://postgres@127.0.0.1:5432/test),
// and a new schema of the example's own, whose tables schema.CreateTablesFor creates from the
// same Config that core.Open writes with. cleanup drops that schema; an application keeps its
// tables and calls neither.
func exampleConfig(ctx context.Context) (cfg core.Config, cleanup func(), err error) {
	cfg.DatabaseURL = os.Getenv("AUDIT_DATABASE_URL")
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	cfg.Schema = fmt.Sprintf("example_%d", time.Now().UnixNano())
	drop := func() {
		conn, err := pgx.Connect(context.Background(), cfg.DatabaseURL)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{cfg.Schema}.Sanitize()+` CASCADE`); err != nil {
			fmt.Println(err)
		}
	}
	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
		drop()
		return cfg, nil, err
	}
	return cfg, drop, nil
}
