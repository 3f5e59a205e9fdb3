package core_test

import (
	"context"
	"fmt"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// A background job records what it did, with its identity from the context.
func ExampleLog() {
	ctx := context.Background()
	db, err := pgtest.Create(ctx, "example_log", true) // a fresh schema with audit_logs
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Drop(ctx)

	w, err := core.Open(ctx, core.Config{DatabaseURL: db.URL, Schema: db.Schema})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close(ctx)

	ctx = core.WithActor(ctx, core.Actor{ID: "billing-job", Type: core.ActorSystem})
	ctx = core.WithTenant(ctx, core.Tenant{ID: "t-42", Slug: "acme"})
	if _, err := core.Log(ctx, w, core.Entry{
		Action: "invoice.sent", ResourceType: "invoices", ResourceID: "inv-1001",
		Metadata: map[string]any{"amount_cents": 4200, "api_key": "k-secret"},
	}); err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Flush(ctx); err != nil { // wait until it is stored
		fmt.Println(err)
		return
	}

	var action, actor, actorType, tenant, meta string
	_ = db.Pool.QueryRow(ctx, `SELECT action, actor_id, actor_type, tenant_id, metadata::text FROM audit_logs`).
		Scan(&action, &actor, &actorType, &tenant, &meta)
	fmt.Println(action, actor, actorType, tenant)
	fmt.Println(meta)
	// Output:
	// invoice.sent billing-job system t-42
	// {"api_key": "[REDACTED]", "amount_cents": 4200}
}
