// Package pgtest gives tests a real PostgreSQL: each caller gets its own freshly migrated schema,
// dropped when the test ends, so test packages run in parallel and repeatedly without interfering.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/internal/tmppg"
	"github.com/auditkit/auditkit/schema"
)

// EnvURL names the variable that overrides the test database.
const EnvURL = "AUDITKIT_TEST_DATABASE_URL"

// DefaultURL is the test database used when EnvURL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Hint tells a developer how to get a database when none answers.
const Hint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start " +
	"(or point " + EnvURL + " at a reachable PostgreSQL)"

// URL returns the base test database URL: EnvURL's value when set; otherwise DefaultURL when a
// server answers on 127.0.0.1:5432; otherwise that of a throw-away cluster started once per test
// binary from the local PostgreSQL installation (internal/tmppg), which is removed when the
// binary ends. When none can be started, DefaultURL, and connecting says why.
func URL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	local.once.Do(func() {
		local.url = DefaultURL
		if tmppg.Listening(localAddr, 2*time.Second) {
			return
		}
		c, err := tmppg.Start(context.Background())
		if err != nil {
			local.err = err
			return
		}
		local.url = c.URL
		if os.Getenv(exampleEnvURL) == "" {
			// The package examples, application code on the public API, read this one.
			_ = os.Setenv(exampleEnvURL, c.URL)
		}
		fmt.Fprintf(os.Stderr, "pgtest: nothing answers on %s; using a throw-away PostgreSQL cluster on 127.0.0.1:%d in %s, removed when the tests end\n",
			localAddr, c.Port, c.Dir)
	})
	return local.url
}

// exampleEnvURL names the variable the package examples and the runnable examples read.
const exampleEnvURL = "AUDIT_DATABASE_URL"

// With no database configured at all, the choice is made when a test binary starts, so that the
// package examples (which read exampleEnvURL and run after the tests) use a throw-away cluster
// too when one is needed.
func init() {
	if os.Getenv(EnvURL) == "" && os.Getenv(exampleEnvURL) == "" {
		URL()
	}
}

// localAddr is where DefaultURL's server answers.
var localAddr = tmppg.DefaultAddr

// local is the test database chosen when EnvURL is unset.
var local struct {
	once sync.Once
	url  string
	err  error // why no throw-away cluster could be started
}

// DB is one isolated schema in the test database.
type DB struct {
	Schema string        // the schema's name
	URL    string        // the database URL with search_path set to Schema
	Pool   *pgxpool.Pool // a pool on URL, closed at cleanup
}

// New creates a schema for tb, applies the audit_logs migrations to it and drops it when tb ends.
// It fails the test (never skips) when PostgreSQL cannot be reached.
func New(tb testing.TB) *DB {
	tb.Helper()
	db, err := Create(context.Background(), prefixFor(tb.Name()), true)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Drop(context.Background()); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return db
}

// NewEmpty is New without migrations: an empty schema.
func NewEmpty(tb testing.TB) *DB {
	tb.Helper()
	db, err := Create(context.Background(), prefixFor(tb.Name()), false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Drop(context.Background()); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return db
}

func prefixFor(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
		if b.Len() >= 24 {
			break
		}
	}
	return "t_" + b.String()
}

// Create makes a uniquely named schema starting with prefix and, when migrate is set, applies the
// migrations. Callers outside tests (benchmark loaders) drop it themselves.
func Create(ctx context.Context, prefix string, migrate bool) (*DB, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := prefix + "_" + hex.EncodeToString(suffix)
	base := URL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil && base == DefaultURL && tmppg.MissingDatabase(err) {
		// A local server without the test database: create it, as a first run expects.
		var created bool
		if created, err = tmppg.CreateDatabase(ctx, base); err == nil {
			if created {
				fmt.Fprintf(os.Stderr, "pgtest: created the database of %s\n", redactURL(base))
			}
			admin, err = pgx.Connect(ctx, base)
		}
	}
	if err != nil {
		return nil, connectError(base, err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("pgtest: create schema %s: %w", name, err)
	}
	u, err := WithSearchPath(base, name)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	db := &DB{Schema: name, URL: u, Pool: pool}
	if migrate {
		if _, err := schema.Migrate(ctx, pool, schema.WithSchema(name)); err != nil {
			_ = db.Drop(ctx)
			return nil, fmt.Errorf("pgtest: migrate %s: %w", name, err)
		}
	}
	return db, nil
}

// Drop closes the pool and drops the schema with everything in it.
func (db *DB) Drop(ctx context.Context) error {
	db.Pool.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL())
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", db.Schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{db.Schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop schema %s: %w", db.Schema, err)
	}
	return nil
}

// WithSearchPath returns databaseURL with the search_path runtime parameter set to schema.
func WithSearchPath(databaseURL, schema string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("pgtest: %s must be a postgres:// URL", EnvURL)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// connectError explains a failed connection to the test database: a server that answers but
// has no such database needs the database created, not a server started.
func connectError(base string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
		cmd := "createdb"
		if cfg, perr := pgx.ParseConfig(base); perr == nil {
			port := ""
			if cfg.Port != 5432 {
				port = fmt.Sprintf(" -p %d", cfg.Port)
			}
			cmd = fmt.Sprintf("createdb -h %s%s -U %s %s", cfg.Host, port, cfg.User, cfg.Database)
		}
		return fmt.Errorf("pgtest: PostgreSQL answers at %s but the database does not exist: %v; create it with: %s (or point %s at another database)",
			redactURL(base), err, cmd, EnvURL)
	}
	if local.err != nil && base == DefaultURL {
		return fmt.Errorf("pgtest: PostgreSQL is not reachable at %s: %v; no throw-away cluster could be started either: %v; %s",
			redactURL(base), err, local.err, Hint)
	}
	return fmt.Errorf("pgtest: PostgreSQL is not reachable at %s: %v; %s", redactURL(base), err, Hint)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Count returns the number of rows in the schema's audit_logs table.
func (db *DB) Count(tb testing.TB) int {
	tb.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs`).Scan(&n); err != nil {
		tb.Fatalf("pgtest: count audit_logs: %v", err)
	}
	return n
}

// NewRole creates a NOLOGIN role named <schema>_<suffix> with USAGE on db's schema and the given
// grants (for example "SELECT, INSERT ON audit_logs"), and a pool whose connections take that
// role at startup, so that RESET ROLE cannot leave it. Role and pool go when tb ends, before the
// schema is dropped (DROP OWNED takes the role out of grants and policies).
func (db *DB) NewRole(tb testing.TB, suffix string, grants ...string) (string, *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	role := db.Schema + "_" + suffix
	q := pgx.Identifier{role}.Sanitize()
	stmts := []string{`CREATE ROLE ` + q + ` NOLOGIN`, `GRANT USAGE ON SCHEMA ` + pgx.Identifier{db.Schema}.Sanitize() + ` TO ` + q}
	for _, g := range grants {
		stmts = append(stmts, `GRANT `+g+` TO `+q)
	}
	for _, st := range stmts {
		if _, err := db.Pool.Exec(ctx, st); err != nil {
			tb.Fatalf("pgtest: %s: %v", st, err)
		}
	}
	tb.Cleanup(func() {
		for _, st := range []string{`DROP OWNED BY ` + q, `DROP ROLE ` + q} {
			if _, err := db.Pool.Exec(context.Background(), st); err != nil {
				tb.Errorf("pgtest: %s: %v", st, err)
			}
		}
	})
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["role"] = role
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return role, pool
}
