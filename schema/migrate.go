package schema

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Files holds the SQL migrations, one file per version, named NNNN_name.sql under migrations/.
// The files use unqualified names: run them with search_path set to the target schema.
//
//go:embed migrations/*.sql
var Files embed.FS

// DefaultSchema is the PostgreSQL schema (namespace) used when none is configured.
const DefaultSchema = "public"

// VersionTable is the table, inside the target schema, that records applied migrations.
const VersionTable = "auditkit_migrations"

// Migration is one versioned SQL migration.
type Migration struct {
	Version  int    // from the file name prefix
	Name     string // file name without the .sql suffix
	SQL      string // the file's statements, with unqualified names (run with search_path set)
	Checksum string // hex SHA-256 of SQL; a changed file is refused once applied
}

// ErrChecksumMismatch is returned when an applied migration's file no longer matches what was applied.
var ErrChecksumMismatch = errors.New("schema: applied migration differs from the embedded file")

var fileName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(Files, "migrations")
	if err != nil {
		return nil, fmt.Errorf("schema: reading embedded migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("schema: embedded file %q is not named NNNN_name.sql", e.Name())
		}
		b, err := Files.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("schema: reading %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(b)
		out = append(out, Migration{
			Version:  v,
			Name:     strings.TrimSuffix(e.Name(), ".sql"),
			SQL:      string(b),
			Checksum: hex.EncodeToString(sum[:]),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("schema: two migrations with version %d", out[i].Version)
		}
	}
	return out, nil
}

// Options configure Migrate.
type Options struct {
	// Schema is the PostgreSQL schema that receives the tables; it is created when missing.
	// Empty means DefaultSchema.
	Schema string
}

// Option changes Options.
type Option func(*Options)

// WithSchema sets the PostgreSQL schema (namespace) to migrate.
func WithSchema(name string) Option { return func(o *Options) { o.Schema = name } }

func options(opts []Option) (Options, error) {
	var o Options
	for _, f := range opts {
		f(&o)
	}
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if err := ValidateSchemaName(o.Schema); err != nil {
		return o, err
	}
	return o, nil
}

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ValidateSchemaName reports whether name is usable as a schema name: letters, digits and
// underscores, not starting with a digit, at most 63 bytes.
func ValidateSchemaName(name string) error {
	if !schemaName.MatchString(name) {
		return fmt.Errorf("schema: invalid schema name %q: use letters, digits and underscores (max 63), not starting with a digit", name)
	}
	return nil
}

// Result reports what Migrate did.
type Result struct {
	Schema  string // the schema (namespace) migrated
	Applied []int  // versions applied by this call, in order; empty when nothing was pending
	Current int    // highest applied version after the call
}

// Beginner starts a pgx transaction: *pgxpool.Pool, *pgx.Conn and pgx.Tx all satisfy it.
type Beginner interface {
	// Begin starts the transaction the migrations run in.
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migrate applies the pending embedded migrations to the target schema in one transaction.
// It is idempotent, and safe to run from several processes at once: a transaction-scoped
// advisory lock per schema serialises concurrent callers, so each migration is applied once.
func Migrate(ctx context.Context, db Beginner, opts ...Option) (Result, error) {
	o, err := options(opts)
	if err != nil {
		return Result{}, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("schema: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	res, err := migrate(ctx, pgxRunner{tx}, o.Schema)
	if err != nil {
		return Result{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("schema: commit: %w", err)
	}
	return res, nil
}

// MigrateDB is Migrate for a database/sql handle (for example the one behind a *gorm.DB).
func MigrateDB(ctx context.Context, db *sql.DB, opts ...Option) (Result, error) {
	o, err := options(opts)
	if err != nil {
		return Result{}, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return Result{}, fmt.Errorf("schema: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	res, err := migrate(ctx, sqlRunner{tx}, o.Schema)
	if err != nil {
		return Result{}, err
	}
	if err := tx.Commit(); err != nil {
		return Result{}, fmt.Errorf("schema: commit: %w", err)
	}
	return res, nil
}

// CreateTables connects to databaseURL, applies all migrations to the schema of opts (DefaultSchema
// without WithSchema) and disconnects. An application configured with core.Config should call
// CreateTablesFor instead, so that the tables land in the schema its writer writes to.
func CreateTables(ctx context.Context, databaseURL string, opts ...Option) error {
	if _, err := options(opts); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("schema: connect: %w", err)
	}
	defer pool.Close()
	_, err = Migrate(ctx, pool, opts...)
	return err
}

// ErrNoDatabaseURL is returned by CreateTablesFor when its Target names no database.
var ErrNoDatabaseURL = errors.New("schema: no database URL (set AUDIT_DATABASE_URL or core.Config.DatabaseURL)")

// Target names where the audit tables live. core.Config implements it, so one configuration (a
// Config built by hand, or read by core.ConfigFromEnv from AUDIT_DATABASE_URL and AUDIT_DB_SCHEMA)
// decides both where CreateTablesFor creates the tables and where core.Open writes.
type Target interface {
	// AuditTarget returns the PostgreSQL connection string and the schema that holds audit_logs
	// ("" means DefaultSchema).
	AuditTarget() (databaseURL, schema string)
}

// CreateTablesFor connects to the database t names, applies all migrations to t's schema and
// disconnects: the one call a quick start needs before core.Open(ctx, cfg) with the same cfg.
// A WithSchema among opts overrides t's schema.
func CreateTablesFor(ctx context.Context, t Target, opts ...Option) error {
	databaseURL, name := t.AuditTarget()
	if databaseURL == "" {
		return ErrNoDatabaseURL
	}
	return CreateTables(ctx, databaseURL, append([]Option{WithSchema(name)}, opts...)...)
}

// runner hides the difference between pgx and database/sql transactions.
type runner interface {
	exec(ctx context.Context, sql string, args ...any) error
	versions(ctx context.Context, sql string) (map[int]string, error)
}

type pgxRunner struct{ tx pgx.Tx }

func (r pgxRunner) exec(ctx context.Context, sql string, args ...any) error {
	_, err := r.tx.Exec(ctx, sql, args...)
	return err
}

func (r pgxRunner) versions(ctx context.Context, sql string) (map[int]string, error) {
	rows, err := r.tx.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, err
		}
		out[v] = sum
	}
	return out, rows.Err()
}

type sqlRunner struct{ tx *sql.Tx }

func (r sqlRunner) exec(ctx context.Context, sql string, args ...any) error {
	_, err := r.tx.ExecContext(ctx, sql, args...)
	return err
}

func (r sqlRunner) versions(ctx context.Context, sql string) (map[int]string, error) {
	rows, err := r.tx.QueryContext(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, err
		}
		out[v] = sum
	}
	return out, rows.Err()
}

func migrate(ctx context.Context, r runner, schema string) (Result, error) {
	all, err := Migrations()
	if err != nil {
		return Result{}, err
	}
	res := Result{Schema: schema}
	q := pgx.Identifier{schema}.Sanitize()
	// The lock comes first: CREATE SCHEMA IF NOT EXISTS itself races between sessions.
	if err := r.exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('auditkit.migrate.' || $1, 0))`, schema); err != nil {
		return res, fmt.Errorf("schema: advisory lock: %w", err)
	}
	if err := r.exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+q); err != nil {
		return res, fmt.Errorf("schema: create schema %s: %w", schema, err)
	}
	if err := r.exec(ctx, `SELECT set_config('search_path', $1, true)`, q); err != nil {
		return res, fmt.Errorf("schema: set search_path: %w", err)
	}
	if err := r.exec(ctx, `CREATE TABLE IF NOT EXISTS `+VersionTable+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		checksum   text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return res, fmt.Errorf("schema: create %s: %w", VersionTable, err)
	}
	applied, err := r.versions(ctx, `SELECT version, checksum FROM `+VersionTable)
	if err != nil {
		return res, fmt.Errorf("schema: read %s: %w", VersionTable, err)
	}
	for _, m := range all {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return res, fmt.Errorf("%w: %s in schema %s", ErrChecksumMismatch, m.Name, schema)
			}
			res.Current = m.Version
			continue
		}
		if err := r.exec(ctx, m.SQL); err != nil {
			return res, fmt.Errorf("schema: applying %s to schema %s: %w", m.Name, schema, err)
		}
		if err := r.exec(ctx, `INSERT INTO `+VersionTable+` (version, name, checksum) VALUES ($1, $2, $3)`,
			m.Version, m.Name, m.Checksum); err != nil {
			return res, fmt.Errorf("schema: recording %s: %w", m.Name, err)
		}
		res.Applied = append(res.Applied, m.Version)
		res.Current = m.Version
	}
	for v := range applied {
		if v > res.Current {
			res.Current = v // applied by a newer release of this library
		}
	}
	return res, nil
}
