package entaudit_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"entgo.io/ent"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
	"github.com/auditkit/auditkit/internal/pgtest"
)

func TestCreate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u, err := e.client.User.Create().SetName("alice").SetEmail("a@example.com").SetAge(30).
		SetPasswordHash("s3cret-hash").SetRecoveryCode("rc-1").SetAvatar([]byte{1, 2, 3}).
		SetProfile(map[string]any{"lang": "en", "n": 2}).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := e.audit(t)
	if len(rows) != 1 {
		t.Fatalf("got %d audit rows, want 1: %v", len(rows), rows)
	}
	r := rows[0]
	if r.Kind != "insert" || r.Action != "users.insert" || r.ResourceType != "users" || r.ResourceID != strconv.Itoa(u.ID) {
		t.Errorf("row = %v", r)
	}
	if r.Before != nil {
		t.Errorf("an insert has no before image: %v", r)
	}
	if d := r.Diff["name"]; d == nil || d["from"] != nil || d["to"] != "alice" {
		t.Errorf("diff[name] = %v, want from null to alice", d)
	}
	if d := r.Diff["password_hash"]; d == nil || d["to"] != core.Redacted {
		t.Errorf("diff[password_hash] = %v, want the change with its values masked", d)
	}
	if _, ok := r.Diff["nickname"]; ok {
		t.Errorf("the NULL nickname is in the diff: %v", r.Diff)
	}
	want := map[string]any{"name": "alice", "email": "a@example.com", "age": 30.0, "id": float64(u.ID),
		"password_hash": core.Redacted, "recovery_code": core.Redacted}
	for k, v := range want {
		if r.After[k] != v {
			t.Errorf("after[%s] = %v, want %v", k, r.After[k], v)
		}
	}
	if _, ok := r.After["avatar"]; ok {
		t.Errorf("the omitted avatar is in the after image: %v", r.After)
	}
	if p, _ := r.After["profile"].(map[string]any); p["lang"] != "en" || p["n"] != 2.0 {
		t.Errorf("profile = %#v, want the decoded JSON", r.After["profile"])
	}
	if _, ok := r.After["created_at"].(string); !ok {
		t.Errorf("created_at = %#v, want the stored time", r.After["created_at"])
	}
}

func TestCreateBulk(t *testing.T) {
	for _, inTx := range []bool{false, true} {
		t.Run("tx="+strconv.FormatBool(inTx), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			client := e.client
			var tx *entest.Tx
			if inTx {
				var err error
				if tx, err = e.client.Tx(ctx); err != nil {
					t.Fatal(err)
				}
				client = tx.Client()
			}
			users, err := client.User.CreateBulk(
				client.User.Create().SetName("a").SetEmail("a@x"),
				client.User.Create().SetName("b").SetEmail("b@x"),
				client.User.Create().SetName("c").SetEmail("c@x"),
			).Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tx != nil {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			rows := e.audit(t)
			if len(rows) != 3 {
				t.Fatalf("got %d audit rows, want 3: %v", len(rows), rows)
			}
			for i, r := range rows {
				if r.Kind != "insert" || r.ResourceID != strconv.Itoa(users[i].ID) || r.After["name"] != users[i].Name {
					t.Errorf("row %d = %v, want the insert of %v", i, r, users[i])
				}
			}
		})
	}
}

func TestCreateUUID(t *testing.T) {
	e := newEnv(t)
	d, err := e.client.Document.Create().SetTitle("plan").Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows := e.audit(t)
	if len(rows) != 1 || rows[0].ResourceID != d.ID.String() || rows[0].After["id"] != d.ID.String() {
		t.Fatalf("rows = %v, want one insert of %s", rows, d.ID)
	}
}

func TestUpdateOneByID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SetAge(30).SetNickname("al").SetPasswordHash("h1").SaveX(ctx)
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.User.UpdateOneID(u.ID).SetName("alice2").AddAge(5).ClearNickname().SetPasswordHash("h2").Save(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows := only(e.audit(t), "users")
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want insert and update: %v", len(rows), rows)
	}
	r := rows[1]
	if r.Kind != "update" || r.ResourceID != strconv.Itoa(u.ID) {
		t.Fatalf("row = %v", r)
	}
	if r.Before["age"] != 30.0 || r.After["age"] != 35.0 || r.Before["nickname"] != "al" || r.After["nickname"] != nil {
		t.Errorf("images: before=%v after=%v", r.Before, r.After)
	}
	for k, want := range map[string][2]any{
		"name":          {"alice", "alice2"},
		"age":           {30.0, 35.0},
		"nickname":      {"al", nil},
		"password_hash": {core.Redacted, core.Redacted},
	} {
		if got := r.Diff[k]; got == nil || got["from"] != want[0] || got["to"] != want[1] {
			t.Errorf("diff[%s] = %v, want from %v to %v", k, got, want[0], want[1])
		}
	}
	if _, ok := r.Diff["email"]; ok {
		t.Errorf("unchanged email in the diff: %v", r.Diff)
	}
	if r.Before["password_hash"] != core.Redacted || r.After["password_hash"] != core.Redacted {
		t.Errorf("password_hash not redacted: %v %v", r.Before, r.After)
	}
}

// An UpdateOne of a loaded entity records the row as it is in the database, not the entity's
// stale copy (ent's OldField would return the entity).
func TestUpdateOneStaleEntity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SetAge(30).SaveX(ctx)
	e.exec(t, `UPDATE users SET age = 99, name = 'changed elsewhere' WHERE id = $1`, u.ID)
	if _, err := e.client.User.UpdateOne(u).SetAge(31).Save(ctx); err != nil {
		t.Fatal(err)
	}
	rows := only(e.audit(t), "users")
	r := rows[len(rows)-1]
	if r.Kind != "update" || r.Before["age"] != 99.0 || r.Before["name"] != "changed elsewhere" || r.After["age"] != 31.0 {
		t.Fatalf("row = %v, want the database's before image", r)
	}
	if d := r.Diff["age"]; d["from"] != 99.0 || d["to"] != 31.0 {
		t.Errorf("diff = %v", r.Diff)
	}
}

func TestUpdateBulk(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		e.client.User.Create().SetName("u" + strconv.Itoa(i)).SetEmail(strconv.Itoa(i) + "@x").SetAge(38 + i).SaveX(ctx)
	}
	n, err := e.client.User.Update().Where(user.AgeGTE(40)).SetName("senior").AddAge(1).Save(ctx)
	if err != nil || n != 3 {
		t.Fatalf("update: %d, %v", n, err)
	}
	rows := only(e.audit(t), "users")[5:]
	if len(rows) != 3 {
		t.Fatalf("got %d update rows, want 3: %v", len(rows), rows)
	}
	for i, r := range rows {
		age := float64(40 + i)
		if r.Kind != "update" || r.Before["age"] != age || r.After["age"] != age+1 || r.After["name"] != "senior" ||
			r.Diff["name"]["from"] != "u"+strconv.Itoa(2+i) {
			t.Errorf("row %d = %v", i, r)
		}
	}
}

// Past the cap, rows are locked and listed by id: only the itemised rows (and the one that tells
// the cap was passed) are read in full, before and after the write.
func TestUpdateBulkCap(t *testing.T) {
	var reads readCounter
	e := newEnv(t, withOptions(func(o *entaudit.Options) { o.MaxRowsPerStatement = 2 }), countingReads(&reads))
	ctx := context.Background()
	var ids []int
	for i := range 5 {
		ids = append(ids, e.client.User.Create().SetName("u"+strconv.Itoa(i)).SetEmail(strconv.Itoa(i)+"@x").SetAge(50).SaveX(ctx).ID)
	}
	// The first update asks the server's version, once: not a read of this one's rows.
	if _, err := e.client.User.Update().Where(user.AgeGTE(1000)).SetAge(1).Save(ctx); err != nil {
		t.Fatal(err)
	}
	reads.on.Store(true)
	n, err := e.client.User.Update().Where(user.AgeGTE(40), user.NameHasPrefix("u")).SetAge(60).Save(ctx)
	if err != nil || n != 5 {
		t.Fatalf("update: %d, %v", n, err)
	}
	if pgtest.ServerVersion(t, e.db.URL) >= 180000 {
		// The UPDATE returns every row it changed, before and after; nothing else is read.
		if w, n := reads.wide.Load(), reads.narrow.Load(); w != 5 || n != 0 {
			t.Errorf("%d full rows and %d ids read, want the UPDATE's 5 rows only", w, n)
		}
	} else {
		if got := reads.wide.Load(); got > 2+1+2 {
			t.Errorf("%d full rows read, want at most 5 (3 locked, 2 after the write)", got)
		}
		if got := reads.narrow.Load(); got != 2 {
			t.Errorf("%d ids read alone, want the 2 rows past the first 3", got)
		}
	}
	rows := only(e.audit(t), "users")[5:]
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 2 itemised and a summary: %v", len(rows), rows)
	}
	for i, r := range rows[:2] {
		if r.Kind != "update" || r.ResourceID != strconv.Itoa(ids[i]) || r.After["age"] != 60.0 {
			t.Errorf("row %d = %v", i, r)
		}
	}
	s := rows[2]
	if s.Kind != "custom" || s.Action != "users.bulk_update" || s.ResourceID != "" {
		t.Errorf("summary = %v", s)
	}
	if s.Metadata["statement"] != "update" || s.Metadata["affected"] != 5.0 || s.Metadata["itemised"] != 2.0 {
		t.Errorf("summary metadata = %v", s.Metadata)
	}
	rest, _ := s.Metadata["not_itemised"].([]any)
	if len(rest) != 3 || rest[0] != strconv.Itoa(ids[2]) || rest[2] != strconv.Itoa(ids[4]) {
		t.Errorf("not itemised = %v, want %v", rest, ids[2:])
	}
	if f, _ := s.Metadata["filter"].(string); !strings.Contains(f, `"age" >=`) || !strings.Contains(f, `"name" LIKE`) {
		t.Errorf("filter = %q", f)
	}
}

// The rows past the cap are found by comparing ids, which works for UUIDs as well.
func TestDeleteBulkCapUUID(t *testing.T) {
	e := newEnv(t, withOptions(func(o *entaudit.Options) { o.MaxRowsPerStatement = 1 }))
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		ids = append(ids, e.client.Document.Create().SetTitle("d"+strconv.Itoa(i)).SaveX(ctx).ID.String())
	}
	slices.Sort(ids)
	if n := e.client.Document.Delete().ExecX(ctx); n != 4 {
		t.Fatalf("deleted %d", n)
	}
	rows := e.audit(t)[4:]
	if len(rows) != 2 || rows[0].Kind != "delete" || rows[0].ResourceID != ids[0] {
		t.Fatalf("rows = %v", rows)
	}
	rest, _ := rows[1].Metadata["not_itemised"].([]any)
	if rows[1].Action != "documents.bulk_delete" || len(rest) != 3 || rest[0] != ids[1] || rest[2] != ids[3] {
		t.Errorf("summary = %v, want the ids %v", rows[1], ids[1:])
	}
}

// A row that starts to match a bulk update's filter after the before images were locked is not
// updated: the statement is pinned to the locked rows, so every updated row has its record. From
// PostgreSQL 18 on nothing is read or pinned beforehand: the row is updated, as by ent alone,
// and its record has the before image the UPDATE returned.
func TestUpdateBulkPhantom(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.client.User.Create().SetName("a").SetEmail("a@x").SetAge(50).SaveX(ctx)
	var phantom int
	e.client.User.Use(func(next ent.Mutator) ent.Mutator {
		return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
			if m.Op().Is(ent.OpUpdate) {
				// Another connection commits a matching row between the lock and the UPDATE.
				if err := e.db.Pool.QueryRow(ctx, `INSERT INTO users (name, email, age, created_at) VALUES ('p', 'p@x', 70, now()) RETURNING id`).Scan(&phantom); err != nil {
					return nil, err
				}
			}
			return next.Mutate(ctx, m)
		})
	})
	n, err := e.client.User.Update().Where(user.AgeGTE(40)).SetAge(1).Save(ctx)
	if pgtest.ServerVersion(t, e.db.URL) >= 180000 {
		if err != nil || n != 2 {
			t.Fatalf("update: %d, %v; want both rows, as ent alone updates them", n, err)
		}
		rows := only(e.audit(t), "users")
		if len(rows) != 3 || rows[2].Kind != "update" || rows[2].ResourceID != strconv.Itoa(phantom) ||
			rows[2].Before["age"] != 70.0 || rows[2].After["age"] != 1.0 {
			t.Errorf("rows = %v", rows)
		}
		return
	}
	if err != nil || n != 1 {
		t.Fatalf("update: %d, %v; want the one locked row", n, err)
	}
	if age := e.client.User.GetX(ctx, phantom).Age; age != 70 {
		t.Errorf("the phantom row was updated to %d", age)
	}
	if rows := only(e.audit(t), "users"); len(rows) != 2 || rows[1].Kind != "update" {
		t.Errorf("rows = %v", rows)
	}
}

func TestDeleteOne(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SetPasswordHash("h").SaveX(ctx)
	if err := e.client.User.DeleteOne(u).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	rows := only(e.audit(t), "users")
	if len(rows) != 2 {
		t.Fatalf("rows = %v", rows)
	}
	r := rows[1]
	if r.Kind != "delete" || r.ResourceID != strconv.Itoa(u.ID) || r.Before["name"] != "alice" ||
		r.Before["password_hash"] != core.Redacted || r.After != nil || r.Diff["name"]["to"] != nil {
		t.Errorf("row = %v", r)
	}
}

func TestDeleteBulk(t *testing.T) {
	e := newEnv(t, withOptions(func(o *entaudit.Options) { o.MaxRowsPerStatement = 2 }))
	ctx := context.Background()
	for i := range 4 {
		e.client.User.Create().SetName("u" + strconv.Itoa(i)).SetEmail(strconv.Itoa(i) + "@x").SetAge(i).SaveX(ctx)
	}
	n, err := e.client.User.Delete().Where(user.AgeGTE(1)).Exec(ctx)
	if err != nil || n != 3 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	rows := only(e.audit(t), "users")[4:]
	if len(rows) != 3 {
		t.Fatalf("rows = %v", rows)
	}
	if rows[0].Kind != "delete" || rows[0].Before["name"] != "u1" || rows[1].Before["name"] != "u2" {
		t.Errorf("itemised = %v", rows[:2])
	}
	if s := rows[2]; s.Action != "users.bulk_delete" || s.Metadata["affected"] != 3.0 || len(s.Metadata["not_itemised"].([]any)) != 1 {
		t.Errorf("summary = %v", s)
	}
}

// The arguments of a summary's filter are masked when the filter mentions a secret column.
func TestSummaryFilterMasked(t *testing.T) {
	e := newEnv(t, withOptions(func(o *entaudit.Options) { o.MaxRowsPerStatement = 1 }))
	ctx := context.Background()
	for i := range 3 {
		e.client.User.Create().SetName("u" + strconv.Itoa(i)).SetEmail(strconv.Itoa(i) + "@x").SetPasswordHash("hunter2").SaveX(ctx)
	}
	e.client.User.Update().Where(user.PasswordHash("hunter2")).SetAge(5).ExecX(ctx)
	rows := e.audit(t)
	s := rows[len(rows)-1]
	args, _ := s.Metadata["filter_args"].([]any)
	if s.Action != "users.bulk_update" || len(args) != 1 || args[0] != core.Redacted {
		t.Fatalf("summary = %v", s)
	}
}

func TestOptions(t *testing.T) {
	e := newEnv(t, withoutHook())
	ctx := context.Background()
	if err := (entaudit.Options{MaxRowsPerStatement: -1}).Validate(); !errors.Is(err, entaudit.ErrInvalidOptions) {
		t.Fatalf("Validate of invalid options: %v, want ErrInvalidOptions", err)
	}
	if err := (entaudit.Options{IgnoreFields: []string{" "}}).Validate(); !errors.Is(err, entaudit.ErrInvalidOptions) {
		t.Fatalf("Validate of an empty ignored field: %v, want ErrInvalidOptions", err)
	}
	if err := (entaudit.Options{}).Validate(); err != nil {
		t.Fatalf("Validate of the zero Options: %v", err)
	}
	// Invalid options are reported when the hook is made; writes run and are recorded with the
	// defaults.
	var log logBuffer
	bad := entaudit.Hook(entest.AuditSchema, entaudit.Options{MaxRowsPerStatement: -1, Writer: e.w, Logger: log.logger()})
	if n := log.count(`msg="entaudit: invalid options`); n != 1 {
		t.Fatalf("making the hook with invalid options logged %d errors, want 1: %s", n, log.String())
	}
	e.client.User.Use(bad)
	if err := e.client.User.Create().SetName("a").SetEmail("a@x").Exec(ctx); err != nil {
		t.Fatalf("create with invalid options: %v", err)
	}
	if rows := e.audit(t); len(rows) != 1 || rows[0].Kind != "insert" {
		t.Fatalf("rows = %v, want the insert", rows)
	}

	e = newEnv(t, withOptions(func(o *entaudit.Options) {
		o.ExcludeTables = []string{"pets"}
		o.IgnoreFields = []string{"name"}
	}))
	e.client.Pet.Create().SetName("rex").ExecX(ctx)
	u := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	e.client.User.UpdateOne(u).SetName("b").ExecX(ctx) // only an ignored field: no record
	e.client.User.UpdateOne(u).SetName("c").SetAge(3).ExecX(ctx)
	rows := e.audit(t)
	if len(rows) != 2 || rows[0].Kind != "insert" || rows[1].Kind != "update" {
		t.Fatalf("rows = %v", rows)
	}
	if _, ok := rows[1].Diff["name"]; ok || rows[1].After["name"] != "c" {
		t.Errorf("ignored field: diff %v, after %v", rows[1].Diff, rows[1].After)
	}
}

// A soft-delete hook (ent's documented pattern) turns a delete into an update and executes the
// same mutation again through the client. The audit hook records one delete, marked as soft,
// with the row as it was and as it is now.
func TestSoftDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.client.User.Use(func(next ent.Mutator) ent.Mutator {
		return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
			um, ok := m.(*entest.UserMutation)
			if !ok || !m.Op().Is(ent.OpDelete|ent.OpDeleteOne) {
				return next.Mutate(ctx, m)
			}
			um.SetOp(ent.OpUpdate)
			um.SetNickname("deleted")
			return um.Client().Mutate(ctx, um)
		})
	})
	a := e.client.User.Create().SetName("a").SetEmail("a@x").SaveX(ctx)
	e.client.User.Create().SetName("b").SetEmail("b@x").ExecX(ctx)
	if n, err := e.client.User.Delete().Where(user.ID(a.ID)).Exec(ctx); err != nil || n != 1 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	rows := e.audit(t)
	if len(rows) != 3 {
		t.Fatalf("rows = %v, want two inserts and one soft delete", rows)
	}
	r := rows[2]
	if r.Kind != "delete" || r.ResourceID != strconv.Itoa(a.ID) || r.Metadata["soft_delete"] != true ||
		r.Before["nickname"] != nil || r.After["nickname"] != "deleted" || r.Diff["nickname"]["to"] != "deleted" {
		t.Errorf("row = %v", r)
	}
	if n := e.client.User.Query().CountX(ctx); n != 2 {
		t.Errorf("%d users left, want both (soft deleted)", n)
	}
}

// After images are what the database stored, including what its triggers changed.
func TestDatabaseSideValues(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.exec(t, `CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$`)
	e.exec(t, `CREATE TRIGGER shout BEFORE INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION shout()`)
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SaveX(ctx)
	e.client.User.UpdateOne(u).SetName("bob").ExecX(ctx)
	e.client.User.Update().Where(user.ID(u.ID)).SetName("carol").ExecX(ctx)
	rows := e.audit(t)
	if len(rows) != 3 || rows[0].After["name"] != "ALICE" || rows[1].After["name"] != "BOB" || rows[2].After["name"] != "CAROL" ||
		rows[2].Before["name"] != "BOB" {
		t.Fatalf("rows = %v", rows)
	}
}
