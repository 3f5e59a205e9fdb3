package gormaudit_test

import (
	"context"
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
	"github.com/auditkit/auditkit/internal/pgtest"
)

type gadget struct {
	ID        uint `gorm:"primaryKey"`
	Name      string
	Qty       int
	UpdatedAt time.Time
}

// sqlTrace is a GORM logger that keeps the text of every statement GORM runs.
type sqlTrace struct {
	logger.Interface
	mu   sync.Mutex
	stmt []string
}

func (l *sqlTrace) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	s, _ := fc()
	l.mu.Lock()
	l.stmt = append(l.stmt, s)
	l.mu.Unlock()
}

// TestDisableORMDiffs: Config.DisableORMDiffs, set in the struct or by AUDIT_CAPTURE_ORM_DIFFS=false
// and reaching the plugin through core.Open's Writer, or Options.DisableORMDiffs (also in
// InTransaction mode), records no change and leaves GORM's statements exactly as without the plugin
// (no locking reads, no RETURNING), while the Writer still stores the records it is given. With
// the setting at its default the same writes are recorded.
func TestDisableORMDiffs(t *testing.T) {
	pg := pgtest.New(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		cfg     func() (core.Config, error)
		opts    gormaudit.Options
		records bool
	}{
		{name: "environment", cfg: func() (core.Config, error) {
			return core.ConfigFromEnvironment([]string{
				"AUDIT_DATABASE_URL=" + pg.URL, "AUDIT_DB_SCHEMA=" + pg.Schema, "AUDIT_CAPTURE_ORM_DIFFS=false",
			}, slog.New(slog.DiscardHandler))
		}},
		{name: "config struct", cfg: func() (core.Config, error) {
			return core.Config{DatabaseURL: pg.URL, Schema: pg.Schema, DisableORMDiffs: true}, nil
		}},
		{name: "options", opts: gormaudit.Options{DisableORMDiffs: true}},
		{name: "options in transaction", opts: gormaudit.Options{DisableORMDiffs: true, InTransaction: true, Schema: pg.Schema}},
		{name: "default", records: true},
		{name: "environment default", records: true, cfg: func() (core.Config, error) {
			return core.ConfigFromEnvironment([]string{
				"AUDIT_DATABASE_URL=" + pg.URL, "AUDIT_DB_SCHEMA=" + pg.Schema, "AUDIT_CAPTURE_ORM_DIFFS=true",
			}, slog.New(slog.DiscardHandler))
		}},
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
			if got := w.CaptureORMDiffs(); got != !cfg.DisableORMDiffs {
				t.Errorf("Writer.CaptureORMDiffs() = %v with DisableORMDiffs %v", got, cfg.DisableORMDiffs)
			}
			table := "gadgets_" + strings.ReplaceAll(tc.name, " ", "_")
			run := func(plugin bool) []string {
				trace := &sqlTrace{Interface: logger.Discard}
				db, err := gorm.Open(postgres.Open(pg.URL), &gorm.Config{Logger: trace, NowFunc: func() time.Time {
					return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
				}})
				if err != nil {
					t.Fatal(err)
				}
				if sqlDB, err := db.DB(); err == nil {
					defer sqlDB.Close()
				}
				if plugin {
					opts := tc.opts
					if !opts.InTransaction {
						opts.Writer = w
					}
					opts.Logger = slog.New(slog.DiscardHandler)
					if _, err := gormaudit.Register(db, opts); err != nil {
						t.Fatal(err)
					}
				}
				tdb := db.Table(table)
				must(t, tdb.Migrator().DropTable(table))
				must(t, tdb.AutoMigrate(&gadget{}))
				trace.mu.Lock()
				trace.stmt = nil
				trace.mu.Unlock()
				g := gadget{Name: "a", Qty: 1}
				id := core.WithRequestID(ctx, "req-"+table)
				must(t, db.WithContext(id).Table(table).Create(&g).Error)
				must(t, db.WithContext(id).Table(table).Model(&g).Update("qty", 2).Error)
				must(t, db.WithContext(id).Transaction(func(tx *gorm.DB) error {
					return tx.Table(table).Where("id = ?", g.ID).Delete(&gadget{}).Error
				}))
				trace.mu.Lock()
				defer trace.mu.Unlock()
				return trace.stmt
			}
			plain := run(false)
			with := run(true)
			if !tc.records && fmt.Sprint(with) != fmt.Sprint(plain) {
				t.Errorf("statements with the plugin disabled:\n%s\nwithout the plugin:\n%s",
					strings.Join(with, "\n"), strings.Join(plain, "\n"))
			}
			if _, err := core.Log(ctx, w, core.Entry{Action: "disabled.check", RequestID: "req-" + table}); err != nil {
				t.Fatal(err)
			}
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			must(t, w.Flush(fctx))
			var kinds []string
			rows, err := pg.Pool.Query(ctx, `SELECT kind::text FROM `+pg.Schema+`.audit_logs WHERE request_id = $1 ORDER BY kind::text`, "req-"+table)
			must(t, err)
			for rows.Next() {
				var k string
				must(t, rows.Scan(&k))
				kinds = append(kinds, k)
			}
			must(t, rows.Err())
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
