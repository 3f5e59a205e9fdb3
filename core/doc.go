// Package core is the shared heart of auditkit: the audit record model, identity in contexts, the
// request-scoped Collector, redaction, configuration, and the asynchronous batch Writer that
// stores records in the audit_logs table with PostgreSQL COPY.
//
// A background job or CLI writes manual records:
//
//	w, err := core.Open(ctx, cfg) // cfg from core.ConfigFromEnv()
//	if err != nil {
//		return err
//	}
//	defer func() {
//		// Not ctx: at shutdown it is often cancelled, and Close needs time to write what it accepted.
//		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//		defer cancel()
//		if err := w.Close(closeCtx); err != nil {
//			log.Print(err)
//		}
//	}()
//	ctx = core.WithActor(ctx, core.Actor{ID: "billing", Type: core.ActorSystem})
//	if _, err := core.Log(ctx, w, core.Entry{Action: "invoice.sent", ResourceType: "invoices", ResourceID: id}); err != nil {
//		return err
//	}
//
// schema.CreateTablesFor(ctx, cfg) creates the tables where Open(ctx, cfg) writes.
//
// The ORM integrations (gormaudit, entaudit) and the HTTP middleware (ginaudit) build records and
// hand them to Dispatch, which adds them to the request's Collector when the context carries one
// and enqueues them on the Writer otherwise.
//
// # Identity in a context
//
//   - WithActor, WithTenant and WithRequestID put identity into a context; records made with it
//     take that identity (StampFromContext).
//   - ActorFromContext reports ok only when an actor was established; AuthenticationFromContext
//     tells "no credentials" (AuthNone) from "credentials refused" (AuthRefused, with the
//     reason), which the HTTP middleware records for every request.
//   - A tenant id follows ValidateTenantID (1–128 ASCII letters, digits and . _ - : @, starting
//     and ending with a letter or a digit, no ".."); a context never hands out one that does not.
//
// Records are redacted once, by the Writer (or TxWriter) just before they leave the process, so
// the request path pays only for Enqueue: validation, an id, and a non-blocking channel send.
package core
