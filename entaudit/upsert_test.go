package entaudit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// A bulk upsert records each row by what happened to it, in statement order: an insert for a
// new row, an update with an unknown before image for a row the conflict clause updated.
func TestUpsertBulk(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.client.User.Create().SetName("a").SetEmail("a@x").SetAge(1).SaveX(ctx)
	err := e.client.User.CreateBulk(
		e.client.User.Create().SetName("b").SetEmail("b@x").SetAge(2),
		e.client.User.Create().SetName("a2").SetEmail("a@x").SetAge(3),
		e.client.User.Create().SetName("c").SetEmail("c@x").SetAge(4),
	).OnConflictColumns(user.FieldEmail).UpdateNewValues().Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := e.client.User.Query().Where(user.Email("b@x")).OnlyX(ctx)
	c := e.client.User.Query().Where(user.Email("c@x")).OnlyX(ctx)
	rows := e.audit(t)[1:]
	if len(rows) != 3 {
		t.Fatalf("rows = %v", rows)
	}
	for i, want := range []struct {
		kind, name string
		id         int
		upsert     bool
	}{{"insert", "b", b.ID, false}, {"update", "a2", a.ID, true}, {"insert", "c", c.ID, false}} {
		r := rows[i]
		if r.Kind != want.kind || r.ResourceID != strconv.Itoa(want.id) || r.After["name"] != want.name ||
			(r.Metadata["upsert"] == true) != want.upsert {
			t.Errorf("row %d = %v, want %s of %s", i, r, want.kind, want.name)
		}
	}
	if r := rows[1]; r.Before != nil || r.Metadata["before_unknown"] != true {
		t.Errorf("updating upsert = %v", r)
	}
}

// A bulk upsert with DO NOTHING records the rows it inserted and nothing for the row it left
// alone; it does not fail although ent's bulk create cannot tell which create was skipped.
func TestUpsertBulkDoNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.client.User.Create().SetName("a").SetEmail("a@x").SetAge(1).SaveX(ctx)
	err := e.client.User.CreateBulk(
		e.client.User.Create().SetName("b").SetEmail("b@x").SetAge(2),
		e.client.User.Create().SetName("a2").SetEmail("a@x").SetAge(3),
		e.client.User.Create().SetName("c").SetEmail("c@x").SetAge(4),
	).OnConflictColumns(user.FieldEmail).DoNothing().Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := e.client.User.Query().Where(user.Email("b@x")).OnlyX(ctx)
	c := e.client.User.Query().Where(user.Email("c@x")).OnlyX(ctx)
	if got := e.client.User.GetX(ctx, a.ID).Name; got != "a" {
		t.Fatalf("the conflicting row was changed to %q", got)
	}
	rows := e.audit(t)[1:]
	if len(rows) != 2 {
		t.Fatalf("rows = %v, want the two inserts", rows)
	}
	for i, u := range []int{b.ID, c.ID} {
		if r := rows[i]; r.Kind != "insert" || r.ResourceID != strconv.Itoa(u) || r.Metadata != nil {
			t.Errorf("row %d = %v, want the insert of %d", i, r, u)
		}
	}
}

// Inside an ent.Tx, upserts are recorded when it commits and dropped when it rolls back.
func TestUpsertInTx(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.client.User.Create().SetName("a").SetEmail("a@x").SetAge(1).SaveX(ctx)
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.User.Create().SetName("a2").SetEmail("a@x").SetAge(2).OnConflictColumns(user.FieldEmail).UpdateNewValues().ID(ctx); err != nil {
		t.Fatal(err)
	}
	bID, err := tx.User.Create().SetName("b").SetEmail("b@x").OnConflictColumns(user.FieldEmail).UpdateNewValues().ID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rows := e.audit(t); len(rows) != 1 {
		t.Fatalf("rows before the commit = %v", rows)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows := e.audit(t)[1:]
	if len(rows) != 2 || rows[0].Kind != "update" || rows[0].ResourceID != strconv.Itoa(a.ID) || rows[0].Metadata["upsert"] != true ||
		rows[1].Kind != "insert" || rows[1].ResourceID != strconv.Itoa(bID) {
		t.Fatalf("rows after the commit = %v", rows)
	}

	tx, err = e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.Create().SetName("a3").SetEmail("a@x").OnConflictColumns(user.FieldEmail).UpdateNewValues().ExecX(ctx)
	tx.User.Create().SetName("c").SetEmail("c@x").OnConflictColumns(user.FieldEmail).UpdateNewValues().ExecX(ctx)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if rows := e.audit(t); len(rows) != 3 {
		t.Fatalf("rows after the rollback = %v, want the 3 committed", rows)
	}
	if got := e.client.User.GetX(ctx, a.ID).Name; got != "a2" {
		t.Errorf("name = %q after the rollback", got)
	}
}
