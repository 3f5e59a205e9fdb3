package entaudit_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// The ent package (here entest) was generated with the extension:
//
//	entc.Generate("./schema", &gen.Config{}, entc.Extensions(entauditgen.Extension()))
func Example() {
	ctx := context.Background()
	db, err := pgtest.Create(ctx, "example", true) // a scratch schema with audit_logs
	if err != nil {
		log.Fatal(err)
	}
	defer db.Drop(ctx)
	sqlDB, err := sql.Open("pgx", db.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer sqlDB.Close()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{})
	defer w.Close(ctx)

	// Wrap the driver and register the hook once, for every schema.
	client := entest.NewClient(entest.Driver(entaudit.Driver(entsql.OpenDB(dialect.Postgres, sqlDB))))
	client.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: w}))
	if err := client.Schema.Create(ctx); err != nil {
		log.Fatal(err)
	}

	u := client.User.Create().SetName("alice").SetEmail("alice@example.com").SetPasswordHash("x").SaveX(ctx)
	client.User.UpdateOne(u).SetName("Alice").AddAge(1).SetPasswordHash("y").ExecX(ctx)

	if err := w.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	rows, err := db.Pool.Query(ctx, `SELECT action, diff - 'created_at' - 'id' FROM audit_logs ORDER BY occurred_at`)
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var action, diff string
		if err := rows.Scan(&action, &diff); err != nil {
			log.Fatal(err)
		}
		fmt.Println(action, diff)
	}
	// Output:
	// users.insert {"age": {"to": 0, "from": null}, "name": {"to": "alice", "from": null}, "email": {"to": "alice@example.com", "from": null}, "password_hash": {"to": "[REDACTED]", "from": null}}
	// users.update {"age": {"to": 1, "from": 0}, "name": {"to": "Alice", "from": "alice"}, "password_hash": {"to": "[REDACTED]", "from": "[REDACTED]"}}
}
