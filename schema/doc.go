// Package schema owns the audit_logs DDL: versioned SQL migrations embedded in the binary, and
// Migrate, which applies the pending ones idempotently under an advisory lock.
//
// Quick start:
//
//	if err := schema.CreateTables(ctx, os.Getenv("AUDIT_DATABASE_URL")); err != nil { ... }
//
// Applications with a pgx pool call Migrate(ctx, pool, schema.WithSchema("audit")); database/sql
// users call MigrateDB. Teams that run their own migration tool copy the files under migrations/
// (also readable through Files); they use unqualified names, so run them with search_path set to
// the target schema.
//
// Row-level security is opt-in defence in depth for the read side: EnableRowLevelSecurity puts
// policies on audit_logs that keep named reader roles to the tenant their transaction sets in
// auditkit.tenant_id (or every tenant with auditkit.all_tenants = on), so that even a query
// without its tenant condition returns nothing of another tenant. The table owner is not
// restricted, so writers that connect as the owner copy records as fast as before. It is not a
// migration because it changes what every non-owner role sees; see its documentation for the
// SQL it runs and what writer roles need.
package schema
