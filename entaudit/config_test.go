package entaudit_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/asset"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestTimestampOnlyUpdates: an update whose only change is to a time field ent sets on every
// update (Asset.updated_at has UpdateDefault, found through the generated schema) writes no audit
// row by default - a Save that sets nothing, a bulk Update that sets nothing, an upsert that
// changes nothing else - while an update that changes another column keeps the timestamp in its
// diff. RecordTimestampOnlyUpdates and RecordNoOpUpdates record them all.
func TestTimestampOnlyUpdates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(*entaudit.Options)
		want string
	}{
		{"default", func(*entaudit.Options) {}, "insert update[price updated_at]"},
		{"RecordTimestampOnlyUpdates", func(o *entaudit.Options) { o.RecordTimestampOnlyUpdates = true },
			"insert update[updated_at] update[updated_at] update[updated_at] update[price updated_at]"},
		{"RecordNoOpUpdates", func(o *entaudit.Options) { o.RecordNoOpUpdates = true },
			"insert update[updated_at] update[updated_at] update[updated_at] update[price updated_at]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withOptions(tc.opts))
			ctx := context.Background()
			c := e.client
			a := c.Asset.Create().SetSku("a").SetUpdatedAt(time.Now().Add(-time.Hour)).SaveX(ctx)
			c.Asset.UpdateOne(a).ExecX(ctx)                   // sets nothing: ent sets updated_at
			c.Asset.Update().Where(asset.Sku("a")).ExecX(ctx) // the same, in bulk
			c.Asset.Create().SetSku("a").OnConflictColumns(asset.FieldSku).UpdateNewValues().ExecX(ctx)
			c.Asset.UpdateOne(a).SetPrice(2).ExecX(ctx)
			var got []string
			for _, r := range only(e.audit(t), "assets") {
				if r.Kind == "insert" {
					got = append(got, r.Kind)
					continue
				}
				var cols []string
				for k := range r.Diff {
					cols = append(cols, k)
				}
				slices.Sort(cols)
				got = append(got, fmt.Sprintf("%s%v", r.Kind, cols))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("records %s\nwant    %s", g, tc.want)
			}
		})
	}
}

// TestDisableORMDiffs: Config.DisableORMDiffs, set in the struct or by
// AUDIT_CAPTURE_ORM_DIFFS=false and reaching the hook through core.Open's Writer, or
// Options.DisableORMDiffs (also in InTransaction mode), records no change and sends the database
// exactly the statements a client without the hook sends (no locking reads, no RETURNING), while
// the Writer still stores the records it is given. With the setting at its default the same
// writes are recorded.
func TestDisableORMDiffs(t *testing.T) {
	pg := pgtest.New(t)
	ctx := context.Background()
	fromEnv := func(v string) func() (core.Config, error) {
		return func() (core.Config, error) {
			return core.ConfigFromEnvironment([]string{
				"AUDIT_DATABASE_URL=" + pg.URL, "AUDIT_DB_SCHEMA=" + pg.Schema, "AUDIT_CAPTURE_ORM_DIFFS=" + v,
			}, slog.New(slog.DiscardHandler))
		}
	}
	for _, tc := range []struct {
		name    string
		cfg     func() (core.Config, error)
		opts    entaudit.Options
		records bool
	}{
		{name: "environment", cfg: fromEnv("false")},
		{name: "config struct", cfg: func() (core.Config, error) {
			return core.Config{DatabaseURL: pg.URL, Schema: pg.Schema, DisableORMDiffs: true}, nil
		}},
		{name: "options", opts: entaudit.Options{DisableORMDiffs: true}},
		{name: "options in transaction", opts: entaudit.Options{DisableORMDiffs: true, InTransaction: true, Schema: pg.Schema}},
		{name: "default", records: true},
		{name: "environment default", cfg: fromEnv("true"), records: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := core.Config{DatabaseURL: pg.URL, Schema: pg.Schema}
			if tc.cfg != nil {
				var err error
				if cfg, err = tc.cfg(); err != nil {
					t.Fatal(err)
				}
			}
			w, err := core.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := w.Close(cctx); err != nil {
					t.Errorf("closing the writer: %v", err)
				}
			}()
			reqID := "req-" + strings.ReplaceAll(tc.name, " ", "-")
			run := func(hooked bool) []string {
				sqlDB, err := sql.Open("pgx", pg.URL)
				if err != nil {
					t.Fatal(err)
				}
				defer sqlDB.Close()
				var mu sync.Mutex
				var stmts []string
				query := regexp.MustCompile(`query=(.*?) args=`)
				drv := entaudit.Driver(dialect.DebugWithContext(entsql.OpenDB(dialect.Postgres, sqlDB), func(_ context.Context, v ...any) {
					if m := query.FindStringSubmatch(fmt.Sprint(v...)); m != nil {
						mu.Lock()
						stmts = append(stmts, m[1])
						mu.Unlock()
					}
				}))
				client := entest.NewClient(entest.Driver(drv))
				if _, err := sqlDB.ExecContext(ctx, `DROP TABLE IF EXISTS assets CASCADE`); err != nil {
					t.Fatal(err)
				}
				if err := client.Schema.Create(ctx); err != nil {
					t.Fatal(err)
				}
				if hooked {
					opts := tc.opts
					if !opts.InTransaction {
						opts.Writer = w
					}
					opts.Logger = slog.New(slog.DiscardHandler)
					client.Use(entaudit.Hook(entest.AuditSchema, opts))
				}
				mu.Lock()
				stmts = nil
				mu.Unlock()
				rctx := core.WithRequestID(ctx, reqID)
				a := client.Asset.Create().SetSku("a").SaveX(rctx)
				client.Asset.UpdateOne(a).SetPrice(3).ExecX(rctx)
				tx, err := client.Tx(rctx)
				if err != nil {
					t.Fatal(err)
				}
				tx.Asset.DeleteOneID(a.ID).ExecX(rctx)
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				return stmts
			}
			plain := run(false)
			hooked := run(true)
			if tc.records && fmt.Sprint(hooked) == fmt.Sprint(plain) {
				t.Errorf("the recording hook sent the statements of a client without it:\n%s", strings.Join(hooked, "\n"))
			}
			if !tc.records && fmt.Sprint(hooked) != fmt.Sprint(plain) {
				t.Errorf("statements with the hook disabled:\n%s\nwithout the hook:\n%s",
					strings.Join(hooked, "\n"), strings.Join(plain, "\n"))
			}
			if _, err := core.Log(ctx, w, core.Entry{Action: "disabled.check", RequestID: reqID}); err != nil {
				t.Fatal(err)
			}
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := w.Flush(fctx); err != nil {
				t.Fatal(err)
			}
			var kinds []string
			rows, err := pg.Pool.Query(ctx, `SELECT kind::text FROM audit_logs WHERE request_id = $1 ORDER BY kind::text`, reqID)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					t.Fatal(err)
				}
				kinds = append(kinds, k)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			want := "[custom]"
			if tc.records {
				want = "[custom delete insert update]"
			}
			if fmt.Sprint(kinds) != want {
				t.Errorf("records %v, want %v", kinds, want)
			}
		})
	}
}
