package entaudit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
)

// A user as it was yesterday, and the user put back the way it was then. The ent package (here
// entest; in an application, its own generated package) was generated with
// entauditgen.Extension, and the client's hook records the revert.
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
	sqlDB, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sqlDB.Close()
	client := entest.NewClient(entest.Driver(entaudit.Driver(entsql.OpenDB(dialect.Postgres, sqlDB))))
	// client.Use(entaudit.Hook(entest.AuditSchema, entaudit.Options{Writer: w})) in an application

	h := entaudit.History{Store: st, Scope: store.TenantScope("t-42"), Schema: entest.AuditSchema}
	yesterday := time.Now().AddDate(0, 0, -1)
	var u entest.User
	v, err := h.AsOf(ctx, &u, 7, yesterday)
	switch {
	case errors.Is(err, store.ErrBeforeHistory):
		fmt.Println("user 7 did not exist yesterday")
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	fmt.Println("yesterday:", u.Name, u.Email, "deleted:", v.Deleted)

	// Put it back; the change is recorded by the hook with reverted_from and reverted_to.
	res, err := h.RevertTo(ctx, client, &entest.User{}, 7, yesterday)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Op, "left as they are:", res.Masked)
}
