package gormaudit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/faults"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// env is one test's database: a fresh schema with audit_logs, GORM with the plugin, and a
// Writer storing into that schema.
type env struct {
	t     testing.TB
	logs  *syncBuffer
	pg    *pgtest.DB
	db    *gorm.DB
	w     *core.Writer
	p     *gormaudit.Plugin
	proxy *faults.Proxy // between GORM and PostgreSQL, with envConfig.proxy
}

type envConfig struct {
	opts    gormaudit.Options
	gorm    gorm.Config
	prepare func(*gorm.DB) // runs between gorm.Open and Register
	proxy   bool           // connect GORM (not the Writer or env.pg) through a faults.Proxy
}

func newEnv(t testing.TB, cfg envConfig, models ...any) *env {
	t.Helper()
	pg := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(pg.Pool, core.PostgresSinkOptions{Schema: pg.Schema}), core.WriterOptions{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			t.Errorf("closing the writer: %v", err)
		}
	})
	gc := cfg.gorm
	if gc.Logger == nil {
		gc.Logger = logger.Discard
	}
	url := pg.URL
	var proxy *faults.Proxy
	if cfg.proxy {
		url, proxy = startProxy(t, pg)
	}
	db, err := gorm.Open(postgres.Open(url), &gc)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	if cfg.prepare != nil {
		cfg.prepare(db)
	}
	opts := cfg.opts
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	if opts.Writer == nil && !opts.InTransaction {
		opts.Writer = w
	}
	if opts.InTransaction && opts.Schema == "" {
		opts.Schema = pg.Schema
	}
	p, err := gormaudit.Register(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) > 0 {
		if err := db.AutoMigrate(models...); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, logs: logs, pg: pg, db: db, w: w, p: p, proxy: proxy}
}

// startProxy starts a faults.Proxy to pg's server, closed when t ends, and returns pg's URL
// through it.
func startProxy(t testing.TB, pg *pgtest.DB) (string, *faults.Proxy) {
	t.Helper()
	p, url, err := faults.StartURL(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return url, p
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// auditRow is one stored audit_logs row, JSON documents decoded.
type auditRow struct {
	Kind, Action, Severity, ResourceType, ResourceID string
	ActorID, TenantID, RequestID                     string
	Before, After, Metadata                          map[string]any
	Diff                                             map[string]map[string]any
	OccurredAt                                       time.Time
}

// audit flushes the writer and returns the stored audit rows matching cond (SQL, may be empty),
// in the order they happened.
func (e *env) audit(cond string, args ...any) []auditRow {
	e.t.Helper()
	ctx := context.Background()
	if err := e.w.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
	q := `SELECT kind::text, action, severity::text, coalesce(resource_type, ''), coalesce(resource_id, ''),
		coalesce(actor_id, ''), coalesce(tenant_id, ''), coalesce(request_id, ''),
		coalesce(before::text, 'null'), coalesce(after::text, 'null'), coalesce(diff::text, 'null'),
		coalesce(metadata::text, 'null'), occurred_at
		FROM audit_logs`
	if cond != "" {
		q += " WHERE " + cond
	}
	q += " ORDER BY occurred_at, id"
	rows, err := e.pg.Pool.Query(ctx, q, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var before, after, diff, meta string
		if err := rows.Scan(&r.Kind, &r.Action, &r.Severity, &r.ResourceType, &r.ResourceID, &r.ActorID, &r.TenantID,
			&r.RequestID, &before, &after, &diff, &meta, &r.OccurredAt); err != nil {
			e.t.Fatal(err)
		}
		for _, d := range []struct {
			src string
			dst any
		}{{before, &r.Before}, {after, &r.After}, {diff, &r.Diff}, {meta, &r.Metadata}} {
			dec := json.NewDecoder(strings.NewReader(d.src))
			dec.UseNumber()
			if err := dec.Decode(d.dst); err != nil {
				e.t.Fatalf("decoding %s: %v", d.src, err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// one returns the single audit row matching cond.
func (e *env) one(cond string, args ...any) auditRow {
	e.t.Helper()
	rows := e.audit(cond, args...)
	if len(rows) != 1 {
		e.t.Fatalf("%d audit rows match %q %v, want 1: %s", len(rows), cond, args, dump(rows))
	}
	return rows[0]
}

func (e *env) count() int {
	e.t.Helper()
	return len(e.audit(""))
}

func dump(rows []auditRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  %s %s id=%s before=%v after=%v diff=%v meta=%v", r.Kind, r.Action, r.ResourceID, r.Before, r.After, r.Diff, r.Metadata)
	}
	return b.String()
}

// str renders a decoded JSON value the way tests compare them: numbers without a fraction
// print as integers.
func str(v any) string {
	if v == nil {
		return "<nil>"
	}
	if b, ok := v.(map[string]any); ok {
		j, _ := json.Marshal(b)
		return string(j)
	}
	if b, ok := v.([]any); ok {
		j, _ := json.Marshal(b)
		return string(j)
	}
	return fmt.Sprint(v)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantDiff checks that diff holds exactly the given changes, given as "field": {from, to}.
func wantDiff(t testing.TB, got map[string]map[string]any, want map[string][2]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("diff = %v, want %v", got, want)
	}
	for k, w := range want {
		c, ok := got[k]
		if !ok {
			t.Fatalf("diff lacks %q: %v", k, got)
		}
		if str(c["from"]) != str(w[0]) || str(c["to"]) != str(w[1]) {
			t.Fatalf("diff[%q] = %v -> %v, want %v -> %v", k, str(c["from"]), str(c["to"]), str(w[0]), str(w[1]))
		}
	}
}

// identity returns a context with an actor, a tenant and a request id.
func identity() context.Context {
	ctx := core.WithActor(context.Background(), core.Actor{ID: "alice", Type: core.ActorTenantUser})
	ctx = core.WithTenant(ctx, core.Tenant{ID: "t-1"})
	return core.WithRequestID(ctx, "req-1")
}
