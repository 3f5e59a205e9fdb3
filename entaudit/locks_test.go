package entaudit_test

import (
	"context"
	"testing"

	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// The before image of an update is locked as strongly as the UPDATE itself locks the row (FOR NO
// KEY UPDATE), not more: while the transaction is open, another one can still insert a row that
// refers to the updated one.
func TestUpdateLockAdmitsReferringInserts(t *testing.T) {
	for name, update := range map[string]func(ctx context.Context, tx *entest.Tx, u *entest.User){
		"one": func(ctx context.Context, tx *entest.Tx, u *entest.User) {
			tx.User.UpdateOne(u).SetAge(1).ExecX(ctx)
		},
		"bulk": func(ctx context.Context, tx *entest.Tx, u *entest.User) {
			tx.User.Update().Where(user.ID(u.ID)).SetAge(2).ExecX(ctx)
		},
		"edge": func(ctx context.Context, tx *entest.Tx, u *entest.User) {
			// The pet whose foreign key changes is locked too.
			p := tx.Pet.Create().SetName("tom").SaveX(ctx)
			tx.User.UpdateOne(u).AddPets(p).ExecX(ctx)
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			u := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
			tx, err := e.client.Tx(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			update(ctx, tx, u)

			other, err := e.db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Rollback(ctx)
			if _, err := other.Exec(ctx, `SET LOCAL lock_timeout = '300ms'`); err != nil {
				t.Fatal(err)
			}
			if _, err := other.Exec(ctx, `INSERT INTO pets (name, user_pets) VALUES ('rex', $1)`, u.ID); err != nil {
				t.Fatalf("inserting a pet of the user being updated: %v", err)
			}
			if err := other.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			want := 2 // the user's insert and update; the edge changes the pet's row only
			if name == "edge" {
				want = 1
			}
			if rows := only(e.audit(t), "users"); len(rows) != want || rows[want-1].Kind != map[int]string{1: "insert", 2: "update"}[want] {
				t.Errorf("user rows = %v", rows)
			}
		})
	}
}
