package core_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/schema"
)

// A background job records what it did, with its identity from the context.
func ExampleLog() {
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

	ctx = core.WithActor(ctx, core.Actor{ID: "billing-job", Type: core.ActorSystem})
	ctx = core.WithTenant(ctx, core.Tenant{ID: "t-42", Slug: "acme"})
	id, err := core.Log(ctx, w, core.Entry{
		Action: "invoice.sent", ResourceType: "invoices", ResourceID: "inv-1001",
		Metadata: map[string]any{"amount_cents": 4200, "api_key": "k-secret"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Flush(ctx); err != nil { // wait until it is stored
		fmt.Println(err)
		return
	}

	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	var action, actor, actorType, tenant, meta string
	if err := pool.QueryRow(ctx, `SELECT action, actor_id, actor_type, tenant_id, metadata::text FROM `+
		pgx.Identifier{cfg.Schema, "audit_logs"}.Sanitize()+` WHERE id = $1`, id).
		Scan(&action, &actor, &actorType, &tenant, &meta); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(action, actor, actorType, tenant)
	fmt.Println(meta)
	// Output:
	// invoice.sent billing-job system t-42
	// {"api_key": "[REDACTED]", "amount_cents": 4200}
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
