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
// # Durability and failure
//
// The Writer's promises, by mode, are stated on SpoolOptions (what survives a crash of the process
// or of the machine) and on FailurePolicy (what happens to work whose record cannot be accepted):
//
//   - Without a spool, a bounded memory queue holds accepted records while the database is slow or
//     down; a crash of the process loses them. Close, given a fresh context with a deadline after the
//     shutdown signal, writes them on a graceful shutdown.
//   - With WriterOptions.Spool (Config.Spool, AUDIT_SPOOL_DIR), every accepted record is on disk
//     before Enqueue returns and is written by the next start after a crash, never twice.
//   - Under FailClosed, room for a change's records is reserved (Reserve, Admit) before the change
//     commits, and work that cannot be audited is refused with ErrAuditUnavailable.
//   - Every attempt has a deadline (WriterOptions.AttemptTimeout); a database that refuses the
//     writer (UnavailableError) is reported through Health rather than retried blindly.
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
