package gormaudit_test

import (
	"context"
	"fmt"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

type Account struct {
	ID   uint `gorm:"primaryKey"`
	Name string
	Plan string
}

func Example() {
	ctx := context.Background()
	pg, err := pgtest.Create(ctx, "example", true) // a scratch schema holding audit_logs
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Drop(ctx)

	db, err := gorm.Open(postgres.Open(pg.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		fmt.Println(err)
		return
	}
	w := core.NewWriter(core.NewPostgresSink(pg.Pool, core.PostgresSinkOptions{Schema: pg.Schema}), core.WriterOptions{})
	defer w.Close(ctx)

	// The one line an application adds.
	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: w}); err != nil {
		fmt.Println(err)
		return
	}

	_ = db.AutoMigrate(&Account{})
	ctx = core.WithActor(ctx, core.Actor{ID: "alice", Type: core.ActorTenantUser})
	acct := Account{Name: "Acme", Plan: "free"}
	db.WithContext(ctx).Create(&acct)
	db.WithContext(ctx).Model(&acct).Update("plan", "pro")

	_ = w.Flush(ctx)
	rows, err := pg.Pool.Query(ctx, `SELECT action, resource_id, actor_id, before::text, after::text, diff::text
		FROM audit_logs ORDER BY occurred_at`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var action, id, actor string
		var before, after, diff *string
		_ = rows.Scan(&action, &id, &actor, &before, &after, &diff)
		fmt.Println(action, id, actor)
		fmt.Println("  before:", deref(before))
		fmt.Println("  after: ", deref(after))
		fmt.Println("  diff:  ", deref(diff))
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
