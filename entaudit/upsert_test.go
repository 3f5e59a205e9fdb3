package entaudit_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// A bulk upsert records each row by what happened to it, in statement order: an insert for a
// new row, an update with the before image (locked by the conflict target before the INSERT)
// and the diff for a row the conflict clause updated.
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
	if r := rows[1]; r.Before["name"] != "a" || r.Before["age"] != 1.0 || r.Metadata["before_unknown"] != nil ||
		r.Diff["name"]["to"] != "a2" || r.Diff["age"]["from"] != 1.0 || len(r.Diff) != 2 {
		t.Errorf("updating upsert = %v, want its before image and diff", r)
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
		rows[0].Before["name"] != "a" || rows[0].Diff["name"]["to"] != "a2" ||
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

// Every update resolver of an upsert records the row it updated with its before image and a
// diff, single and bulk, in and outside a transaction; a resolver that leaves the row as it was
// records nothing, like an update that changes nothing.
func TestUpsertResolvers(t *testing.T) {
	for _, c := range []struct {
		name   string
		upsert func(*entest.UserUpsertBulk) // applied to a bulk of one conflicting create and one new
		diff   map[string][2]any
		noOp   bool
		single func(*entest.UserUpsertOne)
	}{
		{"UpdateNewValues", func(u *entest.UserUpsertBulk) { u.UpdateNewValues() },
			map[string][2]any{"name": {"a", "a2"}, "age": {1.0, 7.0}}, false, func(u *entest.UserUpsertOne) { u.UpdateNewValues() }},
		{"Update with a setter", func(u *entest.UserUpsertBulk) { u.Update(func(s *entest.UserUpsert) { s.SetNickname("nick") }) },
			map[string][2]any{"nickname": {nil, "nick"}}, false, func(u *entest.UserUpsertOne) { u.Update(func(s *entest.UserUpsert) { s.SetNickname("nick") }) }},
		{"Update with an increment", func(u *entest.UserUpsertBulk) { u.Update(func(s *entest.UserUpsert) { s.AddAge(10) }) },
			map[string][2]any{"age": {1.0, 11.0}}, false, func(u *entest.UserUpsertOne) { u.Update(func(s *entest.UserUpsert) { s.AddAge(10) }) }},
		{"UpdateName", func(u *entest.UserUpsertBulk) { u.UpdateName() },
			map[string][2]any{"name": {"a", "a2"}}, false, func(u *entest.UserUpsertOne) { u.UpdateName() }},
		{"Ignore", func(u *entest.UserUpsertBulk) { u.Ignore() }, nil, true, func(u *entest.UserUpsertOne) { u.Ignore() }},
	} {
		for _, mode := range []string{"single", "bulk", "single in tx", "bulk in tx"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				e := newEnv(t)
				ctx := context.Background()
				a := e.client.User.Create().SetName("a").SetEmail("a@x").SetAge(1).SaveX(ctx)
				client := e.client
				var tx *entest.Tx
				if strings.HasSuffix(mode, "in tx") {
					var err error
					if tx, err = e.client.Tx(ctx); err != nil {
						t.Fatal(err)
					}
					defer tx.Rollback()
					client = tx.Client()
				}
				if strings.HasPrefix(mode, "bulk") {
					u := client.User.CreateBulk(
						client.User.Create().SetName("a2").SetEmail("a@x").SetAge(7),
						client.User.Create().SetName("n").SetEmail("n@x"),
					).OnConflictColumns(user.FieldEmail)
					c.upsert(u)
					if err := u.Exec(ctx); err != nil {
						t.Fatal(err)
					}
				} else {
					u := client.User.Create().SetName("a2").SetEmail("a@x").SetAge(7).OnConflictColumns(user.FieldEmail)
					c.single(u)
					if err := u.Exec(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if tx != nil {
					if err := tx.Commit(); err != nil {
						t.Fatal(err)
					}
				}
				var ups []auditRow
				for _, r := range e.audit(t)[1:] {
					if r.Kind == "update" {
						ups = append(ups, r)
					}
				}
				if c.noOp {
					if len(ups) != 0 {
						t.Fatalf("rows = %v, want no update", ups)
					}
					return
				}
				if len(ups) != 1 || ups[0].ResourceID != strconv.Itoa(a.ID) || ups[0].Before == nil || ups[0].Metadata["upsert"] != true {
					t.Fatalf("update rows = %v, want one of %d with its before image", ups, a.ID)
				}
				r := ups[0]
				if len(r.Diff) != len(c.diff) {
					t.Errorf("diff = %v, want %v", r.Diff, c.diff)
				}
				for k, ft := range c.diff {
					if d := r.Diff[k]; d == nil || d["from"] != ft[0] || d["to"] != ft[1] {
						t.Errorf("diff[%s] = %v, want %v", k, d, ft)
					}
				}
			})
		}
	}
}
