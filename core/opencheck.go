package core

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the migration version of the audit tables this release writes: the highest
// migration embedded in package schema. Open refuses a schema at another version.
const SchemaVersion = 9

// MigrateCommand is the command that creates or upgrades the audit tables.
const MigrateCommand = "go run github.com/auditkit/auditkit/cmd/auditkit@latest migrate"

// ErrSchemaNotReady is wrapped by the errors of Open and CheckSchema when the database answers but
// the audit tables cannot be written: the schema, the version table or audit_logs is missing or
// at another version, the role lacks a privilege, or the session is read-only. The error names
// what is missing, where, and the command that fixes it.
var ErrSchemaNotReady = errors.New("auditkit: audit schema not ready")

// schemaNotReadyError is one reason the audit tables cannot be written.
type schemaNotReadyError struct {
	database, schema string // the redacted database URL and the schema
	problem, fix     string
}

func (e *schemaNotReadyError) Error() string {
	return fmt.Sprintf("auditkit: audit schema not ready in schema %q of %s: %s; to fix: %s", e.schema, e.database, e.problem, e.fix)
}

func (e *schemaNotReadyError) Is(target error) bool { return target == ErrSchemaNotReady }

// CheckSchema connects once to cfg's database and checks that the Writer Open returns can write:
// the server is not a standby and the session is not read-only; cfg's schema exists and the role
// has USAGE on it; its auditkit_migrations table exists and its highest version is SchemaVersion
// (checked when the role may read it); audit_logs exists and the role may INSERT into and SELECT
// from it. Connecting takes at most cfg.ConnectTimeout and the queries at most cfg.AttemptTimeout.
//
// A problem is reported as an error wrapping ErrSchemaNotReady. Any other error means the check
// could not run: the database was unreachable or did not answer in time.
func CheckSchema(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	if cfg.DatabaseURL == "" {
		return ErrNoDatabaseURL
	}
	pcfg, err := poolConfig(cfg)
	if err != nil {
		return err
	}
	return checkSchema(ctx, cfg, pcfg)
}

// checkSchema is CheckSchema for a completed cfg and its pool configuration.
func checkSchema(ctx context.Context, cfg Config, pcfg *pgxpool.Config) error {
	notReady := func(problem, fix string) error {
		return &schemaNotReadyError{database: redactDatabaseURL(cfg.DatabaseURL), schema: cfg.Schema, problem: problem, fix: fix}
	}
	migrate := MigrateCommand
	if cfg.Schema != DefaultSchema {
		migrate += " -schema " + cfg.Schema
	}
	migrate += " (or call schema.CreateTablesFor(ctx, cfg) at start-up)"

	conn, err := pgx.ConnectConfig(ctx, pcfg.ConnConfig.Copy())
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch {
			case pgErr.Code == "3D000": // invalid_catalog_name
				return notReady("the database does not exist: "+pgErr.Message, "create it (createdb) or correct the database URL")
			case strings.HasPrefix(pgErr.Code, "28"): // invalid authorization
				return notReady("the role cannot log in: "+pgErr.Message, "correct the user or password of the database URL, or the server's pg_hba.conf")
			}
		}
		return fmt.Errorf("auditkit: connecting to %s: %w", redactDatabaseURL(cfg.DatabaseURL), err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ConnectTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	qctx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
	defer cancel()

	var st struct {
		role, readOnly                     string
		standby, schemaExists, schemaUsage bool
		versionTable, versionReadable      bool
		logsTable, logsInsert, logsSelect  bool
	}
	err = conn.QueryRow(qctx, `
		SELECT current_user, current_setting('transaction_read_only'), pg_is_in_recovery(),
			n.oid IS NOT NULL, coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
			v.oid IS NOT NULL, coalesce(has_table_privilege(v.oid, 'SELECT'), false),
			l.oid IS NOT NULL, coalesce(has_table_privilege(l.oid, 'INSERT'), false), coalesce(has_table_privilege(l.oid, 'SELECT'), false)
		FROM (SELECT 1) one
		LEFT JOIN pg_namespace n ON n.nspname = $1
		LEFT JOIN pg_class v ON v.relnamespace = n.oid AND v.relname = 'auditkit_migrations'
		LEFT JOIN pg_class l ON l.relnamespace = n.oid AND l.relname = 'audit_logs'`, cfg.Schema).Scan(
		&st.role, &st.readOnly, &st.standby, &st.schemaExists, &st.schemaUsage,
		&st.versionTable, &st.versionReadable, &st.logsTable, &st.logsInsert, &st.logsSelect)
	if err != nil {
		return fmt.Errorf("auditkit: checking the audit schema in %s: %w", redactDatabaseURL(cfg.DatabaseURL), err)
	}
	role := pgx.Identifier{st.role}.Sanitize()
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	table := schema + ".audit_logs"
	switch {
	case st.standby:
		return notReady("the server is a standby (pg_is_in_recovery() is true) and accepts no writes", "point the database URL at the primary")
	case st.readOnly == "on":
		return notReady(fmt.Sprintf("sessions of role %s are read-only (transaction_read_only is on)", role),
			fmt.Sprintf("ALTER ROLE %s SET default_transaction_read_only = off (or remove default_transaction_read_only from the database URL)", role))
	case !st.schemaExists:
		return notReady(fmt.Sprintf("schema %s does not exist", schema), migrate)
	case !st.schemaUsage:
		return notReady(fmt.Sprintf("role %s has no USAGE privilege on schema %s", role, schema), fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", schema, role))
	case !st.versionTable:
		return notReady(fmt.Sprintf("table %s.auditkit_migrations does not exist, so the tables were not created by auditkit's migrations", schema),
			migrate+"; if you apply the migrations with your own tool, set AUDIT_SKIP_SCHEMA_CHECK=true (Config.SkipSchemaCheck)")
	}
	if st.versionReadable {
		var version int
		if err := conn.QueryRow(qctx, `SELECT coalesce(max(version), 0) FROM `+schema+`.auditkit_migrations`).Scan(&version); err != nil {
			return fmt.Errorf("auditkit: reading the migration version in %s: %w", redactDatabaseURL(cfg.DatabaseURL), err)
		}
		switch {
		case version < SchemaVersion:
			return notReady(fmt.Sprintf("the audit tables are at migration version %d and need migration to version %d", version, SchemaVersion), migrate)
		case version > SchemaVersion:
			return notReady(fmt.Sprintf("the audit tables are at migration version %d, written by a newer auditkit (this one writes version %d)", version, SchemaVersion),
				"upgrade github.com/auditkit/auditkit in this application")
		}
	}
	switch {
	case !st.logsTable:
		return notReady(fmt.Sprintf("table %s does not exist", table), migrate)
	case !st.logsInsert || !st.logsSelect:
		var missing []string
		if !st.logsInsert {
			missing = append(missing, "INSERT")
		}
		if !st.logsSelect {
			missing = append(missing, "SELECT")
		}
		return notReady(fmt.Sprintf("role %s lacks the %s privilege on %s", role, strings.Join(missing, " and "), table),
			fmt.Sprintf("GRANT INSERT, SELECT ON %s TO %s", table, role))
	}
	// The chained writer locks and moves the chain's heads; the checkpointer appends signed
	// checkpoints.
	need := map[string]string{}
	if !cfg.Chain.Disabled {
		need["audit_chain_heads"] = "SELECT, INSERT, UPDATE"
	}
	if cfg.Chain.SigningKey != "" {
		need["audit_checkpoints"] = "SELECT, INSERT"
	}
	// Erasure reads and creates the data subjects' keys.
	if cfg.Erasure.MasterKey != "" {
		need["audit_subject_keys"] = "SELECT, INSERT"
	}
	for _, name := range []string{"audit_chain_heads", "audit_checkpoints", "audit_subject_keys"} {
		privs, ok := need[name]
		if !ok {
			continue
		}
		t := schema + "." + name
		var exists, granted bool
		err := conn.QueryRow(qctx, `SELECT to_regclass($1) IS NOT NULL,
			coalesce(bool_and(has_table_privilege(to_regclass($1), p)), false)
			FROM unnest(string_to_array($2, ', ')) p`, t, privs).Scan(&exists, &granted)
		if err != nil {
			return fmt.Errorf("auditkit: checking the audit schema in %s: %w", redactDatabaseURL(cfg.DatabaseURL), err)
		}
		switch {
		case !exists:
			return notReady(fmt.Sprintf("table %s does not exist", t), migrate)
		case !granted && name == "audit_subject_keys":
			return notReady(fmt.Sprintf("role %s lacks one of the %s privileges on %s, which erasure needs", role, privs, t),
				fmt.Sprintf("GRANT %s ON %s TO %s (or unset AUDIT_PII_MASTER_KEY)", privs, t, role))
		case !granted:
			return notReady(fmt.Sprintf("role %s lacks one of the %s privileges on %s, which the hash chain needs", role, privs, t),
				fmt.Sprintf("GRANT %s ON %s TO %s (or set AUDIT_CHAIN=false)", privs, t, role))
		}
	}
	return nil
}
