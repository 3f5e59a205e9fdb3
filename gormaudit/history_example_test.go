package gormaudit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/gormaudit"
)

// Invoice is an application's model, audited by the plugin.
type Invoice struct {
	ID     uint `gorm:"primaryKey"`
	Status string
	Amount int64
	Note   string `audit:"redact"`
}

// The invoice as it was a week ago, who changed it since, and the change undone.
func ExampleHistory() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	st, err := store.New(pool, store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	db, err := gorm.Open(postgres.Open(os.Getenv("DATABASE_URL")))
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := gormaudit.Register(db, gormaudit.Options{}); err != nil { // with Writer: w in an application
		fmt.Println(err)
		return
	}
	h := gormaudit.History{Store: st, Scope: store.TenantScope("t-42")}

	var then Invoice
	v, err := h.AsOf(ctx, db, &then, 7, time.Now().AddDate(0, 0, -7))
	switch {
	case errors.Is(err, store.ErrBeforeHistory):
		fmt.Println("invoice 7 did not exist a week ago")
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	fmt.Println("a week ago:", then.Status, then.Amount, "deleted:", v.Deleted, "masked:", v.Masked)

	page, err := st.FieldHistory(ctx, h.Scope, "invoices", "7", "status", store.HistoryQuery{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range page.Changes {
		fmt.Println(c.Record.OccurredAt, c.Record.ActorID, string(c.From), "->", string(c.To))
	}

	// Undo the last change: the revert is recorded like any change, with metadata reverted_from.
	last, err := st.History(ctx, h.Scope, "invoices", "7", store.HistoryQuery{Limit: 1})
	if err != nil || len(last.Records) == 0 {
		fmt.Println("nothing to undo", err)
		return
	}
	res, err := gormaudit.Revert(ctx, db.Model(&Invoice{}), last.Records[0])
	if errors.Is(err, gormaudit.ErrIncompatibleImage) {
		fmt.Println("the table changed since:", err)
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Op, "left as they are:", res.Masked)
}
