// Package gormaudit records every change GORM makes to PostgreSQL as audit records: one record
// per changed database row, with the row's before and after images read from the database under
// a row lock, and a diff of the changed columns. Records of a transaction are delivered only
// after it commits.
//
// After gorm.Open, with cfg from core.ConfigFromEnv (the package example and the README show a
// whole program, with a shutdown that does not lose records):
//
//	w, err := core.Open(ctx, cfg)
//	if err != nil {
//		return err
//	}
//	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: w}); err != nil { // or db.Use(gormaudit.New(opts))
//		return err
//	}
//
// Writes made with a context carrying a request collector (core.NewContext, set by the HTTP
// middleware) join that request; other writes take actor, tenant and request id from the
// context (core.WithActor, core.WithTenant, core.WithRequestID) and go to the Writer.
//
// # What is recorded
//
// Create (one row, a slice, CreateInBatches), Save, Updates with a struct or a map, Update,
// UpdateColumn(s), with Select and Omit, gorm.Expr values, bulk updates and deletes by
// condition, Delete by primary key, soft deletes (kind delete, metadata soft_delete), restoring a
// soft-deleted row (kind update, metadata restored), Unscoped hard deletes, upserts with
// clause.OnConflict (an insert for rows it inserted, an update with the before image for rows it
// updated), and the rows GORM saves through associations. An upsert's conflict target may be
// columns or a constraint (OnConstraint, whose columns are read from pg_constraint once per
// table and constraint); a target that is not a list of the model's columns (an expression
// index) cannot be locked beforehand, so the rows such an upsert updates are recorded without a
// before image, flagged before_unknown, and a warning is logged. Records carry the table as
// resource_type and the primary key as resource_id (a composite key as a JSON object with sorted
// keys). Each has kind insert, update or delete and the action "<table>.<kind>".
//
// Raw SQL (db.Exec, db.Raw) is not parsed, so no images are possible; with
// Options.CaptureRawSQL, data-changing raw statements are recorded as kind custom with the
// statement text and masked arguments. Outside a transaction the raw statement has committed
// before its record exists; with Options.InTransaction the plugin therefore runs a
// data-changing db.Exec outside a transaction in a transaction of its own, committed with the
// record. db.Raw(...) with Row, Rows or Scan cannot be wrapped that way (its rows are read
// after the callbacks): outside a transaction its record is written after the statement
// autocommitted, so the if-and-only-if guarantee does not hold for it. Writes GORM runs without a model
// (db.Table("items") with a map) are recorded with the model of that table: the one listed in
// Options.Models, or else the one model the plugin has seen writing to it; as GORM runs them
// without the model, they are recorded without its soft-delete scope. Writes to a table no
// known model maps (or that several models map, none of them listed), and models without a
// primary key, are not recorded (a warning is logged once per table).
//
// Struct tags: `audit:"-"` leaves a column out of the images and diffs; `audit:"redact"` stores
// it as core.Redacted, while the diff still shows that it changed. A tag on an embedded struct
// applies to all its columns. Models opt out with ExcludeModels, ExcludeTables or by
// implementing Disabler.
//
// An update is a no-op, and not recorded unless Options.RecordNoOpUpdates is set, when no column
// of the row changed other than Options.IgnoreFields and the columns GORM sets on every update
// (autoUpdateTime fields such as gorm.Model's UpdatedAt; Options.RecordTimestampOnlyUpdates
// records those changes). A change to an `audit:"-"` column is a
// change of the row: it is recorded, the column named in the metadata omitted_changed, its
// values in no image and no diff (the plugin reads such a column as md5 of its text, so its
// value never leaves the database; the hash costs time in proportion to the column's size).
//
// # The plugin never changes what GORM does
//
// A statement that succeeds without the plugin succeeds with it, with the same rows affected,
// returned values, hook order and errors; where the plugin cannot capture a change fully, it
// records what it can with a flag and logs a warning, never failing the write:
//
//   - The locking read before an update carries the statement's FROM list and joins (UPDATE ...
//     FROM, locking only the target's rows with FOR ... OF), clauses built before it (a WITH
//     registered on the update processor) and subqueries in its conditions. Such a read runs
//     under a savepoint inside a transaction (two round trips more, only for these
//     statements): if it fails, the statement runs unchanged and its rows are recorded without
//     a before image (metadata before_unknown). A WITH that changes data is never run by the
//     plugin: those statements are always recorded with before_unknown. A hard delete reads
//     nothing beforehand (what its RETURNING yields is the before image), so a DELETE ... USING
//     (a USING clause registered on the delete processor) needs nothing carried.
//   - A read after the change that fails records the rows with their before images and without
//     an after image (metadata after_unknown).
//   - A model whose columns cannot be read from its table (a column the table lacks, columns
//     the role may not read) is found by a probe on the first write to the table (SELECT <the
//     columns> ... LIMIT 0, under a savepoint inside a transaction); its statements then run as
//     GORM sends them, each recorded by one record of kind custom with metadata "capture":
//     "unreadable", the statement's filter and its affected count.
//   - With PrepareStmt, the plugin's own queries and the statements it rewrites run on the
//     connection under GORM's prepared-statement cache, never in it.
//
// Its other reads use exactly the statement's table and conditions on a table that passed the
// probe: where they fail, the statement would fail the same way, and it fails with the
// database's own error (so TranslateError translates it).
//
// # Images
//
// Images map column names to values normalised for JSON: times in UTC as RFC 3339 text, dates
// as "2006-01-02", json and jsonb columns (and serializer:json fields) as the decoded document,
// bytea as standard base64, numeric as a JSON number, uuid and other types in PostgreSQL's text
// form. Because they are read back from the database, they hold what was stored: the result of
// a gorm.Expr, defaults and trigger effects, the serialised form of a driver.Valuer or
// serializer field, the columns of embedded structs.
//
// Before an update, a soft delete or an upsert, the affected rows are read with SELECT ... FOR
// <the lock the statement itself takes, e.g. NO KEY UPDATE for an update>, ordered by primary
// key, on the statement's own transaction, and the statement is pinned to the locked keys so
// that rows inserted concurrently are not changed unrecorded. An update or soft delete whose
// conditions fix the rows' primary keys (Model(&row).Update, Save, Updates of a struct,
// Where("id IN ?", ids)) takes no round trip for that read: the locking SELECT becomes a
// subquery of the UPDATE's FROM list, joined by primary key, and the UPDATE's RETURNING yields
// each row's before and after image (see fuse.go for why it changes exactly the rows the UPDATE
// alone changes). GORM's logger then shows that statement.
//
// On PostgreSQL 18 and later (the plugin asks the server's version once, when it is registered),
// an update or soft delete reads nothing beforehand, whatever its conditions: GORM's UPDATE runs
// as it is, with RETURNING WITH (OLD AS gormaudit_old, NEW AS gormaudit_new) and both images'
// columns added, and each row's before image is the version the UPDATE changed. It then locks
// the rows GORM's UPDATE alone locks, in the order it locks them, and changes the same rows, a
// row inserted concurrently included (recorded like the others): transactions deadlock exactly
// when they do without the plugin, where on earlier versions the plugin's read, ordered by key,
// could keep two of them from deadlocking. A caller's Returning clause and a table expression
// keep the plan of earlier versions. An upsert tells the rows it
// inserted from the rows it updated by their system columns (xmax, and xmin checked with
// pg_xact_status), which needs PostgreSQL 13 or later.
// After images come from the statement itself through RETURNING: added where GORM does not read
// RETURNING (updates, deletes, inserts without database defaults), and added to GORM's own
// RETURNING of an insert with database defaults, GORM then being handed exactly its own columns;
// otherwise (a caller's Returning clause, upserts) from a SELECT by primary key inside the
// transaction. A hard delete reads nothing before: the rows DELETE
// ... RETURNING yields are its before images. A statement affecting more rows than
// Options.MaxRowsPerStatement records that many rows in full and one summary record (kind
// custom, action "<table>.bulk_<kind>", or "<table>.bulk_upsert" with the counts of rows
// inserted and updated) with the filter, the affected count and the ids of the rest.
//
// When GORM runs an audited statement outside any transaction (SkipDefaultTransaction), the
// plugin begins one around it and commits it right after the statement, so that the lock, the
// change and the images stay one atomic unit and the COMMIT's outcome is learned when it fails
// without a definite answer (see Transactions). A statement that fails, at once or at COMMIT,
// returns its error with no rows affected, as it does without the plugin.
//
// # Transactions
//
// GORM has no commit hook. Register therefore wraps the connection pool (db.ConnPool, and the
// pool inside PrepareStmt mode's prepared-statement pool): every transaction GORM begins -
// db.Transaction, db.Begin, the implicit per-statement one - is the plugin's, and its Commit
// and Rollback deliver or drop the records made in it. A rollback, a panic in db.Transaction, a
// COMMIT that failed without committing, and a ROLLBACK TO SAVEPOINT (a failing nested
// db.Transaction) drop what they undo; delivery keeps statement order. A COMMIT can fail without
// saying whether it committed (the request's context cancelled while COMMIT runs, a lost
// connection, a timeout): the plugin then asks another connection of the pool what became of the
// transaction (pg_xact_status of its id: returned with a statement of a few rows the plugin
// rewrote, or else read just before COMMIT, one round trip per transaction that has records). Committed: the records are delivered; rolled back: dropped; no answer within
// a few seconds: delivered with metadata commit_outcome "unknown" and a warning, because a
// flagged record is better than a committed change without one. The application gets COMMIT's
// error unchanged. Register must run right after gorm.Open, before
// sessions are derived from the *gorm.DB. gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}))
// works the same way: the pool is wrapped after Open whichever way GORM got it. Transactions
// begun elsewhere (db.Connection, or a session derived before Register) are not seen; their
// records are delivered at once, with a warning logged once.
//
// With Options.InTransaction the records are instead inserted into audit_logs through the
// application's transaction just before it commits, so that they exist if and only if the
// change committed; a failing insert fails the commit. In this mode records do not join the
// request collector, so the HTTP middleware does not stamp them: they carry what the context
// holds when the statement runs (actor, tenant and request id, and the client address the
// middleware put on the collector), not what it settles only when the request ends (an actor
// or tenant the handler sets with ginaudit.ActorKey or ginaudit.TenantKey), and the middleware
// does not count them as changes of the request (an anonymous request that only changed data
// this way is not recorded unless Config.LogAnonymous is set).
//
// # Failure policy
//
// Under core.FailClosed (the Writer's WriterOptions.FailurePolicy, AUDIT_FAILURE_POLICY=closed,
// or core.WithFailurePolicy on one call site's context) a change never commits without room for
// its records:
//
//   - Just before a transaction's COMMIT - db.Transaction, db.Begin and Commit, GORM's
//     per-statement transaction, the one the plugin begins under SkipDefaultTransaction - room
//     is reserved on the Writer for its records (core.Admit). When it is refused (the queue or
//     spool is full, the Writer is closed, the database refuses the writer) the transaction is
//     rolled back instead, and the statement, Commit or Transaction returns an error wrapping
//     core.ErrAuditUnavailable that says so.
//   - The room travels with the records (to the request's collector, or into the Writer's
//     queue) and is given back when the transaction turns out not to have committed.
//   - A raw statement recorded outside any transaction (CaptureRawSQL) commits on its own, so
//     its room is reserved before it runs; refused, it does not run.
//   - A transaction begun outside the plugin's pool cannot be rolled back by it: the statement
//     whose records are refused fails, and the application's error handling rolls back.
//   - A transaction with more records than the Writer can ever hold (its QueueSize, or its
//     spool) cannot commit.
//
// Under core.FailOpen, the default, nothing is reserved: a record the Writer cannot accept is
// dropped and counted (Stats.Dropped). InTransaction mode needs no room: its records are rows
// of the transaction. One call site can be made fail-closed in a fail-open program:
//
//	ctx = core.WithFailurePolicy(ctx, core.FailClosed)
//	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { ... })
//	if errors.Is(err, core.ErrAuditUnavailable) {
//		// nothing was committed
//	}
package gormaudit
