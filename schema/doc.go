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
package schema
