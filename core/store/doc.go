// Package store is the read side of auditkit: tenant-scoped queries over the audit_logs table with
// filters, full-text search and signed keyset cursors, lookup by id, streaming CSV and NDJSON
// export, statistics, synchronous ingest with idempotency keys, retention cleanup, the tenants
// registry, live streams of new records fed by PostgreSQL LISTEN/NOTIFY, and the past of one
// database row: its changes (History, FieldHistory), its image at a time (AsOf) and the net change
// between two times (Diff).
//
// Every query takes a Scope: one tenant, or all tenants (platform administrators). A tenant scope
// never sees rows of another tenant nor rows without a tenant. Access control (who may use which
// scope) is the caller's job; ginaudit.MountAPI does it for HTTP.
//
//	st, err := store.New(pool, store.Options{Schema: "public", CursorKey: key})
//	defer st.Close()
//	page, err := st.List(ctx, store.TenantScope("t-42"), store.Query{Filter: f, Limit: 50})
//
// The service's own records (resource types audit_logs and audit_tenants: the read API's records
// of its use and the http records of its requests) are left out of pages, exports, stats and
// streams unless Filter.IncludeMeta (include_meta=true) asks for them; Get returns them, and ingest
// refuses those resource types. SubscribeWith's EndOnSuspend ends a tenant user's live stream
// when the tenant is suspended, by any process.
//
// Options.RowLevelSecurity adds the database's own check: with schema.EnableRowLevelSecurity
// applied for the pool's role, every statement on audit_logs runs in a transaction that names the
// scope to PostgreSQL's row-level security policies, so a query that lost its tenant condition
// still returns, changes and inserts nothing of another tenant.
//
// The tables come from the schema package's migrations (0001 and 0002).
package store
