package gormaudit_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/schema"
)

type Account struct {
	ID   uint `gorm:"primaryKey"`
	Name string
	Plan string
}

func Example() {
	ctx := context.Background()
	cfg, cleanup, err := exampleConfig(ctx) // in an application: cfg, err := core.ConfigFromEnv()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	w, err := core.Open(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		// Close with a context of its own: at shutdown the application's context is often
		// cancelled already, and Close must still have time to write what was accepted.
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(closeCtx); err != nil {
			fmt.Println(err)
		}
	}()

	// The application's own database. Here its table goes into the example's schema too, by the
	// connection's search_path; an application opens its database as it always does.
	pgcfg, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	pgcfg.RuntimeParams["search_path"] = cfg.Schema
	sqlDB := stdlib.OpenDB(*pgcfg)
	defer sqlDB.Close()
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The one line an application adds.
	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: w}); err != nil {
		fmt.Println(err)
		return
	}
	if err := db.AutoMigrate(&Account{}); err != nil {
		fmt.Println(err)
		return
	}

	ctx = core.WithActor(ctx, core.Actor{ID: "alice", Type: core.ActorTenantUser})
	acct := Account{Name: "Acme", Plan: "free"}
	if err := db.WithContext(ctx).Create(&acct).Error; err != nil {
		fmt.Println(err)
		return
	}
	if err := db.WithContext(ctx).Model(&acct).Update("plan", "pro").Error; err != nil {
		fmt.Println(err)
		return
	}

	if err := w.Flush(ctx); err != nil { // wait until the records are stored
		fmt.Println(err)
		return
	}
	var rows []struct {
		Action, ResourceID, ActorID string
		Before, After, Diff         *string
	}
	if err := db.Raw(`SELECT action, resource_id, actor_id, before::text, after::text, diff::text
		FROM audit_logs ORDER BY occurred_at`).Scan(&rows).Error; err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rows {
		fmt.Println(r.Action, r.ResourceID, r.ActorID)
		fmt.Println("  before:", deref(r.Before))
		fmt.Println("  after: ", deref(r.After))
		fmt.Println("  diff:  ", deref(r.Diff))
	}
	// Output:
	// accounts.insert 1 alice
	//   before: null
	//   after:  {"id": 1, "name": "Acme", "plan": "free"}
	//   diff:   {"id": {"to": 1, "from": null}, "name": {"to": "Acme", "from": null}, "plan": {"to": "free", "from": null}}
	// accounts.update 1 alice
	//   before: {"id": 1, "name": "Acme", "plan": "free"}
	//   after:  {"id": 1, "name": "Acme", "plan": "pro"}
	//   diff:   {"plan": {"to": "pro", "from": "free"}}
}

func deref(s *string) string {
	if s == nil {
		return "null"
	}
	return *s
}

// exampleConfig is the configuration the examples run with: the database named by
// AUDIT_DATABASE_URL (default: the local test server, postgres://postgres@127.0.0.1:5432/test),
// and a new schema of the example's own, whose tables schema.CreateTablesFor creates from the
// same Config that core.Open writes with. cleanup drops that schema; an application keeps its
// tables and calls neither.
func exampleConfig(ctx context.Context) (cfg core.Config, cleanup func(), err error) {
	cfg.DatabaseURL = os.Getenv("AUDIT_DATABASE_URL")
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	cfg.Schema = fmt.Sprintf("example_%d", time.Now().UnixNano())
	drop := func() {
		conn, err := pgx.Connect(context.Background(), cfg.DatabaseURL)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{cfg.Schema}.Sanitize()+` CASCADE`); err != nil {
			fmt.Println(err)
		}
	}
	if err := schema.CreateTablesFor(ctx, cfg); err != nil {
		drop()
		return cfg, nil, err
	}
	return cfg, drop, nil
}
