// Package schema owns the audit_logs DDL: versioned SQL migrations embedded in the binary, and
// Migrate, which applies the pending ones idempotently under an advisory lock.
//
// Quick start, with the Config the writer is opened with, so that the tables land in the schema
// it writes to (AUDIT_DB_SCHEMA):
//
//	cfg, err := core.ConfigFromEnv()
//	if err != nil {
//		return err
//	}
//	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
//		return err
//	}
//	w, err := core.Open(ctx, cfg)
//
// From a shell, `go run github.com/auditkit/auditkit/cmd/auditkit@latest migrate -schema NAME` does
// the same (AUDIT_DATABASE_URL, AUDIT_DB_SCHEMA by default). core.Open refuses a schema whose
// highest applied migration is not core.SchemaVersion, unless Config.SkipSchemaCheck is set.
//
// Applications with a pgx pool call Migrate(ctx, pool, schema.WithSchema(cfg.Schema)); database/sql
// users call MigrateDB with the same option. Teams that run their own migration tool copy the files under migrations/
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
