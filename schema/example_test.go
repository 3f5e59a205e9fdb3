package schema_test

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

// One configuration decides where the tables are created and where the writer writes: with
// AUDIT_DB_SCHEMA=audit, both use the schema "audit".
func ExampleCreateTablesFor() {
	ctx := context.Background()
	databaseURL := os.Getenv("AUDIT_DATABASE_URL")
	if databaseURL == "" { // only for this example: the local test server
		databaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	name := fmt.Sprintf("example_%d", time.Now().UnixNano()) // only for this example: a new schema
	// In an application: cfg, err := core.ConfigFromEnv()
	cfg, err := core.ConfigFromEnvironment([]string{"AUDIT_DATABASE_URL=" + databaseURL, "AUDIT_DB_SCHEMA=" + name}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}

	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
		fmt.Println(err)
		return
	}
	w, err := core.Open(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := core.Log(ctx, w, core.Entry{Action: "service.started"})
	if err != nil {
		fmt.Println(err)
		return
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(closeCtx); err != nil {
		fmt.Println(err)
		return
	}

	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(context.Background())
	var action string
	if err := conn.QueryRow(ctx, `SELECT action FROM `+pgx.Identifier{name, "audit_logs"}.Sanitize()+` WHERE id = $1`, id).Scan(&action); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stored in the configured schema:", action)
	if _, err := conn.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
		fmt.Println(err)
	}
	// Output:
	// stored in the configured schema: service.started
}

// An application with a pgx pool migrates at start-up; a second run applies nothing.
func ExampleMigrate() {
	ctx := context.Background()
	databaseURL := os.Getenv("AUDIT_DATABASE_URL")
	if databaseURL == "" { // only for this example: the local test server
		databaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	name := fmt.Sprintf("example_%d", time.Now().UnixNano()) // an application names its schema once, e.g. "audit"
	defer func() {
		if _, err := pool.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			fmt.Println(err)
		}
	}()

	res, err := schema.Migrate(ctx, pool, schema.WithSchema(name))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("applied:", res.Applied)
	res, err = schema.Migrate(ctx, pool, schema.WithSchema(name))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("applied again:", res.Applied)
	// Output:
	// applied: [1 2 3 4 5 6 7 8 9]
	// applied again: []
}
