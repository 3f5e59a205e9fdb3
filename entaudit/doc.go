// Package entaudit records every change made through an ent client in audit_logs: one record per
// created, updated or deleted database row, with before and after images read from the database
// and the diff of the changed fields, delivered only when the change commits.
//
// # Use
//
// Add the extension to the code generation (entc.go), and register the hook once, for every
// schema, on a client whose driver is wrapped with Driver:
//
//	entc.Generate("./schema", &gen.Config{}, entc.Extensions(entauditgen.Extension()))
//
//	client := ent.NewClient(ent.Driver(entaudit.Driver(drv)))
//	client.Use(entaudit.Hook(ent.AuditSchema, entaudit.Options{Writer: w}))
//
// The extension generates ent.AuditSchema from the schemas: tables, id columns, the fields to
// redact or leave out, the edges and where they are stored, and access to the parts of the
// generated mutations that ent.Mutation does not expose (the driver, the predicates, the id, the
// transaction, the place in a CreateBulk). It is generated rather than found by reflection because annotations and
// Sensitive() exist only at generation time, and because the hook then needs neither reflection
// nor any particular ent feature flag at run time.
//
// # Schemas and fields
//
// Every schema is audited unless it is annotated with Skip (or its table is listed in
// Options.ExcludeTables). Fields declared Sensitive() are redacted: images show "[REDACTED]", a
// diff shows that the field changed but not its values. The field annotation Redact does the
// same for other fields, Omit leaves a field out entirely. Annotations may sit in a mixin.
// Schemas without a single-column id (edge schemas with a composite id) are not audited.
//
// # What is recorded
//
//   - Values are the stored column values: bytes (bytea) as standard base64, whatever they hold,
//     so that a change of any bytes shows in the diff; JSON fields as the decoded document; times
//     in UTC; UUIDs, enums and other types in PostgreSQL's text form; NULL for unset optional
//     fields.
//   - Create and CreateBulk: an insert record with the after image as the database stored it
//     (defaults, triggers and database-generated ids included). A CreateBulk of creates that set
//     no field is one INSERT ... DEFAULT VALUES to ent, which inserts one row: that row is
//     recorded.
//   - UpdateOne (by id or by entity) and Update: for every affected row, the before image read
//     with SELECT ... FOR NO KEY UPDATE (the lock the UPDATE itself takes, so inserts of rows
//     that refer to it are not held up) through the mutation's own driver, in its transaction,
//     before the write (never ent's OldField, which returns the in-memory entity of
//     UpdateOne(entity)), the after image as the write stored it (so AddX and ClearX show the
//     stored result), and the diff. A bulk Update is pinned to the ids it locked, so a row that
//     starts to match its filter concurrently is left alone instead of changing without a record.
//   - On PostgreSQL 18 and later (the hook asks the server's version once), an update that
//     changes no edge and runs through the wrapped driver (in the hook's own transaction, or in
//     an ent.Tx of a wrapped client, which the hook tells with a probe the wrapper answers
//     itself) reads nothing beforehand: ent's UPDATE runs as it is, with RETURNING WITH (OLD AS
//     entaudit_old, NEW AS entaudit_new) entaudit_old.*, entaudit_new.*, and each row's before
//     image is the version the UPDATE changed. It locks the rows ent's UPDATE alone locks, in
//     the order it locks them, and changes the same rows, a row inserted concurrently included
//     (recorded like the others): transactions deadlock exactly when they do without the hook,
//     where on earlier versions the hook's read, ordered by id, could keep two of them from
//     deadlocking. Updates that change edges, and those on a driver that is not wrapped, keep
//     the locked read.
//   - DeleteOne and Delete: the before image of every deleted row, read the same way and locked
//     with SELECT ... FOR UPDATE.
//   - Bulk statements record at most Options.MaxRowsPerStatement rows one by one; the rest are
//     locked too, but only their ids are read, and they are listed in one summary record (kind
//     custom, action "<table>.bulk_update"), with the filter.
//   - Edges: every row an edge change writes gets its own record, as a trigger would see it; the
//     mutated row gets one only when its own columns changed (or with RecordNoOpUpdates), and
//     its record then lists the edges it changed (ids added and removed, cleared edges with the
//     ids they unlinked), as found in the database before the write: a link the mutation adds
//     but that existed, or removes but that did not exist, is left out. A many-to-many link is a
//     row of the join table: each one added gets an insert record, each one removed (also by a
//     clear, or by the delete of either end) a delete record, with resource_type the join table,
//     resource_id both columns as a JSON object with sorted keys ({"group_id":1,"user_id":2}),
//     and the link row as its image, whichever side made the change.
//     A foreign key in the row's own table is part of its images. A foreign key in another table
//     (O2M, O2O) changes rows of that table: each gets its own update record, marked with the
//     edge in metadata "via". So does the row at the other end of a same-type O2O edge, which
//     ent keeps in both rows.
//   - Deletes and the database's ON DELETE actions: the rows that refer to a deleted row through
//     a foreign key that either schema declares (an edge of the deleted type, or an edge of the
//     referring type only, such as a one-way M2O or a same-type O2O) are locked before the
//     delete and read after it, so SET NULL gives an update record and CASCADE a delete record,
//     each marked with the edge in metadata "via"; the join-table links a deleted row loses are
//     listed in its record.
//   - Soft deletes: a hook that turns a delete into an update and executes the same mutation
//     again (ent's documented pattern) gives one delete record marked soft_delete, with the after
//     image.
//   - Upserts: ent's hooks see OnConflict creates as creates. The Driver wrapper reads and locks
//     (FOR NO KEY UPDATE) the rows that the INSERT ... ON CONFLICT (columns) DO UPDATE of a
//     create or CreateBulk can update, by the values of its conflict target, right before the
//     statement runs in the same transaction; a row the statement updated (PostgreSQL's xmax
//     tells) gets an update record with metadata upsert, its before image and the diff, under
//     every update resolver (UpdateNewValues, Update(...), UpdateX(), Ignore leaves no change
//     and so no record). A row that DO NOTHING left alone gets no record. Without the wrapper, for
//     a conflict on a named constraint, or for a row that another transaction inserted after
//     the read, the update is recorded without before image: metadata before_unknown, severity
//     warning.
//
// # Transactions
//
// Inside an ent.Tx the records wait for the commit (ent's Tx.OnCommit) and are delivered in
// statement order; a rollback or a commit that failed without committing drops them. When a
// COMMIT fails without saying whether it committed (a cancelled context, a lost connection, a
// timeout), the hook asks another connection of the wrapped driver what became of the
// transaction (pg_xact_status of its id: returned with an UPDATE of a few rows, or else read
// just before COMMIT, one round trip per transaction that has records) and delivers the records if it committed; with no answer (or no Driver
// wrapper to ask through) they are delivered with metadata commit_outcome "unknown" and a
// warning. The application gets COMMIT's error unchanged. Outside an ent.Tx, an update or
// delete runs in a transaction the hook opens through the Driver wrapper (its reads and the
// write in one transaction, so that the lock means something). A create outside a transaction
// commits on its own and is recorded right after it; the creates of a CreateBulk are recorded
// together when the bulk has finished, in statement order.
//
// # Failure policy
//
// Under core.FailClosed (the Writer's WriterOptions.FailurePolicy, AUDIT_FAILURE_POLICY=closed,
// or core.WithFailurePolicy on one call site's context) a change never commits without room for
// its records:
//
//   - Just before the COMMIT of an ent.Tx, or of a transaction the hook opened for an update or
//     delete, room is reserved on the Writer for its records (core.Admit). When it is refused
//     (the queue or spool is full, the Writer is closed, the database refuses the writer) the
//     transaction is rolled back instead: tx.Commit, or the mutation's Save or Exec, returns an
//     error wrapping core.ErrAuditUnavailable that says so.
//   - The room travels with the records (to the request's Collector, or into the Writer's queue)
//     and is given back when the transaction turns out not to have committed.
//   - A mutation outside any transaction (a create, or an update or delete without the Driver
//     wrapper) commits on its own: room is reserved before it runs, for its row and the links of
//     the edge ids it adds (a create) or one record (an update or delete, whose rows are not
//     known yet); refused, the mutation does not run. Records past that estimate get room after
//     the statement when there is some, and are otherwise handed over as under FailOpen: use an
//     ent.Tx, or the Driver wrapper, where every record must have its room.
//   - A transaction with more records than the Writer can ever hold (its QueueSize, or its
//     spool) cannot commit.
//
// Under core.FailOpen, the default, nothing is reserved: a record the Writer cannot accept is
// dropped and counted (Stats.Dropped). InTransaction mode needs no room: its records are rows
// of the transaction. One call site can be made fail-closed in a fail-open program:
//
//	ctx = core.WithFailurePolicy(ctx, core.FailClosed)
//	if err := client.User.DeleteOneID(id).Exec(ctx); errors.Is(err, core.ErrAuditUnavailable) {
//		// the user was not deleted
//	}
//
// # Set-up errors
//
// The hook never fails a write because of how it was set up. Check (for the driver) and
// Options.Validate report a set-up that cannot record every change exactly; call them at
// start-up. The hook logs the same problems once: invalid options when Hook is called (their
// defaults are used), a driver not wrapped with Driver on the first mutation. Without the wrapper
// an update or delete outside an ent.Tx runs as ent runs it, and its records, made from before
// images read without a lasting lock, carry metadata before_unlocked and severity warning.
//
// A transaction's records are held until it ends with Commit or Rollback; one that is
// abandoned without either (ent requires one of them) keeps its records in memory.
//
// After images come from the statement itself when the driver is wrapped: Driver extends the
// mutation's own INSERT or UPDATE with a RETURNING clause, so a create costs no round trip
// beyond ent's own, and an update one (the locked read). ent's read of the row an UpdateOne
// updated is answered from that RETURNING when nothing ran in between and the table has no
// trigger or rule (asked once per table), which could change the row after the UPDATE. Otherwise, and for statements that do
// not look like ent's, the rows are read again right after the write.
//
// Records go where core.Dispatch sends them: to the request's Collector when the context
// carries one (the HTTP middleware writes them with the request), otherwise to Options.Writer
// with the identity of the context. With Options.InTransaction they are inserted into audit_logs
// inside the transaction instead, just before it commits.
//
// # Limits
//
//   - Raw SQL (the sql/execquery feature's ExecContext) and changes made by database triggers to
//     other tables are not seen by ent's hooks.
//   - A many-to-many edge declared on one side only (no edge back): deleting a row of the other
//     side drops its links without a record. A same-type bidirectional many-to-many edge (ent
//     stores each link twice) records the row the mutation names only.
//   - The before image of a row an upsert updated is unknown in the cases listed above.
//   - A hook that runs inside this one and narrows an update (a schema hook adding a tenant
//     filter) leaves rows locked but unchanged; they are dropped as no-op updates unless
//     Options.RecordNoOpUpdates is set. Register runtime hooks that narrow mutations before this
//     one: client.Use runs the hooks it was given first on the outside.
//   - A create outside a transaction that links existing rows through an edge reads their
//     before images without a lasting lock, and so does the after image of every mutation but
//     the last of a CreateBulk outside a transaction (or of any create without the Driver
//     wrapper): run such creates in an ent.Tx for exact images under concurrency.
//   - ON DELETE actions are followed one level deep: rows that refer to a row deleted by
//     CASCADE, in turn, change without a record.
//   - After images returned by the statement do not show changes that AFTER triggers make to
//     the same row later in the statement (BEFORE triggers are included).
//   - Tables are read by their unqualified names, through the connection's search_path; the
//     sql/schemaconfig feature (tables in several PostgreSQL schemas) is not supported.
//   - Only PostgreSQL is supported.
package entaudit
