package entaudit_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/internal/faults"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/xact"
)

// env is one test's database: a fresh schema with audit_logs and the test tables, an audited
// client on it and a Writer into its audit_logs.
type env struct {
	db     *pgtest.DB
	sql    *sql.DB
	client *entest.Client
	w      *core.Writer
	opts   entaudit.Options
	proxy  *faults.Proxy // between the client and PostgreSQL, with proxied()
}

type envOption func(*envConfig)

type envConfig struct {
	opts   entaudit.Options
	noWrap bool // leave the driver unwrapped
	noHook bool // no audit hook at all
	reads  *readCounter
	proxy  bool // connect the client through a faults.Proxy
}

func withOptions(f func(*entaudit.Options)) envOption {
	return func(c *envConfig) { f(&c.opts) }
}

func unwrapped() envOption { return func(c *envConfig) { c.noWrap = true } }

// proxied connects the client (not the Writer or env.db) through a faults.Proxy, env.proxy.
func proxied() envOption { return func(c *envConfig) { c.proxy = true } }

func withoutHook() envOption { return func(c *envConfig) { c.noHook = true } }

// countingReads counts the rows the client reads from the database into r.
func countingReads(r *readCounter) envOption { return func(c *envConfig) { c.reads = r } }

func newEnv(tb testing.TB, options ...envOption) *env {
	tb.Helper()
	var cfg envConfig
	for _, o := range options {
		o(&cfg)
	}
	ctx := context.Background()
	db := pgtest.New(tb)
	url := db.URL
	var proxy *faults.Proxy
	if cfg.proxy {
		url, proxy = startProxy(tb, db)
	}
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		tb.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(20)
	tb.Cleanup(func() { sqlDB.Close() })
	var drv dialect.Driver = entsql.OpenDB(dialect.Postgres, sqlDB)
	if cfg.reads != nil {
		drv = readCountingDriver{drv, cfg.reads}
	}
	if !cfg.noWrap {
		drv = entaudit.Driver(drv)
	}
	client := entest.NewClient(entest.Driver(drv))
	if err := client.Schema.Create(ctx); err != nil {
		tb.Fatalf("creating the test tables: %v", err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{FlushInterval: 5 * time.Millisecond})
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			tb.Errorf("closing the writer: %v", err)
		}
	})
	opts := cfg.opts
	if opts.Writer == nil && !opts.InTransaction {
		opts.Writer = w
	}
	if opts.Schema == "" {
		opts.Schema = db.Schema
	}
	if !cfg.noHook {
		client.Use(entaudit.Hook(entest.AuditSchema, opts))
	}
	return &env{db: db, sql: sqlDB, client: client, w: w, opts: opts, proxy: proxy}
}

// startProxy starts a faults.Proxy to db's server, closed when tb ends, and returns db's URL
// through it.
func startProxy(tb testing.TB, db *pgtest.DB) (string, *faults.Proxy) {
	tb.Helper()
	p, url, err := faults.StartURL(db.URL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return url, p
}

// auditRow is one row of audit_logs, decoded.
type auditRow struct {
	Kind, Action, ResourceType, ResourceID string
	Severity                               string
	ActorID, TenantID, RequestID           string
	Before, After, Metadata                map[string]any
	Diff                                   map[string]map[string]any
	OccurredAt                             time.Time
}

func (r auditRow) String() string {
	return fmt.Sprintf("%s %s %s/%s before=%v after=%v diff=%v meta=%v", r.Kind, r.Action, r.ResourceType, r.ResourceID, r.Before, r.After, r.Diff, r.Metadata)
}

// audit flushes the writer and returns every audit row, oldest first.
func (e *env) audit(tb testing.TB) []auditRow {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.w.Flush(ctx); err != nil {
		tb.Fatalf("flushing the writer: %v", err)
	}
	rows, err := e.db.Pool.Query(ctx, `SELECT kind::text, severity::text, action, coalesce(resource_type, ''), coalesce(resource_id, ''),
		coalesce(actor_id, ''), coalesce(tenant_id, ''), coalesce(request_id, ''),
		before, after, diff, metadata, occurred_at FROM audit_logs ORDER BY occurred_at, id`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var before, after, diff, meta []byte
		if err := rows.Scan(&r.Kind, &r.Severity, &r.Action, &r.ResourceType, &r.ResourceID, &r.ActorID, &r.TenantID, &r.RequestID,
			&before, &after, &diff, &meta, &r.OccurredAt); err != nil {
			tb.Fatal(err)
		}
		decode(tb, before, &r.Before)
		decode(tb, after, &r.After)
		decode(tb, diff, &r.Diff)
		decode(tb, meta, &r.Metadata)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func decode(tb testing.TB, b []byte, v any) {
	tb.Helper()
	if b == nil {
		return
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("decoding %s: %v", b, err)
	}
}

// exec runs a statement on the test schema outside ent and outside auditing.
func (e *env) exec(tb testing.TB, q string, args ...any) {
	tb.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), q, args...); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// cascade makes the foreign key column of table that refers to ref delete the referring rows
// with the referred one (ent creates it ON DELETE SET NULL).
func (e *env) cascade(tb testing.TB, table, column, ref string) {
	tb.Helper()
	var name string
	err := e.db.Pool.QueryRow(context.Background(), `SELECT c.conname FROM pg_constraint c
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		WHERE c.conrelid = $1::regclass AND c.contype = 'f' AND a.attname = $2`, table, column).Scan(&name)
	if err != nil {
		tb.Fatalf("finding the foreign key %s.%s: %v", table, column, err)
	}
	e.exec(tb, fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT %q, ADD FOREIGN KEY (%s) REFERENCES %s (id) ON DELETE CASCADE`,
		table, name, column, ref))
}

// only returns the rows of one resource type.
func only(rows []auditRow, resourceType string) []auditRow {
	var out []auditRow
	for _, r := range rows {
		if r.ResourceType == resourceType {
			out = append(out, r)
		}
	}
	return out
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// readCounter counts the rows read from the database once on is set: rows of one column (ids,
// counts) and wider rows (images, entities) apart. It is off at first because ent's migration
// needs the driver's own rows.
type readCounter struct {
	on           atomic.Bool
	narrow, wide atomic.Int64
}

// readCountingDriver counts in r the rows of every query, in and outside transactions.
type readCountingDriver struct {
	dialect.Driver
	r *readCounter
}

func (d readCountingDriver) Query(ctx context.Context, q string, args, v any) error {
	return d.r.count(d.Driver.Query(ctx, q, args, v), v)
}

func (d readCountingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	return readCountingTx{tx, d.r}, nil
}

type readCountingTx struct {
	dialect.Tx
	r *readCounter
}

func (t readCountingTx) Query(ctx context.Context, q string, args, v any) error {
	if q == xact.IDQuery { // the transaction's id, read before COMMIT: not a row of a table
		return t.Tx.Query(ctx, q, args, v)
	}
	return t.r.count(t.Tx.Query(ctx, q, args, v), v)
}

func (r *readCounter) count(err error, v any) error {
	if rows, ok := v.(*entsql.Rows); ok && err == nil && r.on.Load() {
		rows.ColumnScanner = countingScanner{rows.ColumnScanner, r}
	}
	return err
}

type countingScanner struct {
	entsql.ColumnScanner
	r *readCounter
}

func (s countingScanner) Scan(dest ...any) error {
	if len(dest) > 1 {
		s.r.wide.Add(1)
	} else {
		s.r.narrow.Add(1)
	}
	return s.ColumnScanner.Scan(dest...)
}
