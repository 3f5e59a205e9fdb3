package entaudit_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit/internal/entest"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// oracleTables are the audited tables of the test schema, join table included.
var oracleTables = []string{"users", "pets", "groups", "user_groups", "cards", "comments", "documents", "assets", "notes"}

// installOracle makes PostgreSQL itself write every row change of the audited tables into the
// table oracle, in the transaction that makes it: the ground truth the audit records are held
// against.
func installOracle(tb testing.TB, e *env) {
	tb.Helper()
	e.exec(tb, `CREATE TABLE oracle (seq bigserial PRIMARY KEY, tbl text, op text, old jsonb, new jsonb)`)
	e.exec(tb, `CREATE FUNCTION oracle_capture() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO oracle (tbl, op, old, new) VALUES (TG_TABLE_NAME, lower(TG_OP),
				CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
				CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
			RETURN NULL;
		END $$`)
	for _, t := range oracleTables {
		e.exec(tb, fmt.Sprintf(`CREATE TRIGGER oracle AFTER INSERT OR UPDATE OR DELETE ON %q FOR EACH ROW EXECUTE FUNCTION oracle_capture()`, t))
	}
}

// rowChange is one row change, as the oracle or an audit record tells it, in a form both give the
// same text for.
type rowChange struct {
	Table, Op, Key string
	Before, After  map[string]any
}

func (c rowChange) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// The columns the audit shows differently by design: redacted ones are masked, omitted ones left
// out, bytea written as base64.
var (
	oracleRedacted = map[string]bool{"users.password_hash": true, "users.recovery_code": true, "cards.number": true}
	oracleOmitted  = map[string]bool{"users.avatar": true}
	oracleBytea    = map[string]bool{"assets.data": true, "assets.digest": true}
)

// oracleImage turns a row as to_jsonb gave it into the image an audit record must hold.
func oracleImage(table string, row map[string]any) map[string]any {
	if row == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range row {
		col := table + "." + k
		switch {
		case oracleOmitted[col]:
			continue
		case oracleRedacted[col] && v != nil:
			v = core.Redacted
		case oracleBytea[col] && v != nil:
			b, err := hex.DecodeString(strings.TrimPrefix(v.(string), `\x`))
			if err != nil {
				panic(err)
			}
			v = base64.StdEncoding.EncodeToString(b)
		}
		out[k] = sameTime(v)
	}
	return out
}

// sameTime writes a timestamp in one form (UTC), whatever offset it was written with.
func sameTime(v any) any {
	if s, ok := v.(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	return v
}

func auditImage(img map[string]any) map[string]any {
	if img == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range img {
		out[k] = sameTime(v)
	}
	return out
}

// oracleKey is the resource id of a row: its id, or both columns of a join-table row.
func oracleKey(table string, row map[string]any) string {
	if table == "user_groups" {
		return fmt.Sprintf(`{"group_id":%v,"user_id":%v}`, row["group_id"], row["user_id"])
	}
	return fmt.Sprint(row["id"])
}

func (e *env) oracle(tb testing.TB) []string {
	tb.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT tbl, op, old, new FROM oracle ORDER BY seq`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c rowChange
		var oldRow, newRow map[string]any
		if err := rows.Scan(&c.Table, &c.Op, &oldRow, &newRow); err != nil {
			tb.Fatal(err)
		}
		if c.Op == "update" && fmt.Sprint(oldRow) == fmt.Sprint(newRow) {
			continue // an UPDATE that changed nothing: no record by design
		}
		c.Before, c.After = oracleImage(c.Table, oldRow), oracleImage(c.Table, newRow)
		row := newRow
		if row == nil {
			row = oldRow
		}
		c.Key = oracleKey(c.Table, row)
		out = append(out, c.String())
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (e *env) audited(tb testing.TB) []string {
	var out []string
	for _, r := range e.audit(tb) {
		if r.Kind == "custom" || r.Kind == "http" {
			continue
		}
		// Round trip through JSON so numbers read the same as the oracle's.
		c := rowChange{Table: r.ResourceType, Op: r.Kind, Key: r.ResourceID, Before: auditImage(r.Before), After: auditImage(r.After)}
		out = append(out, c.String())
	}
	slices.Sort(out)
	return out
}

// Held against database triggers as ground truth, the audit records are exactly the committed
// row changes, one to one: the same action, table, key and before and after column values, for
// every write path of ent (create, create bulk, update one and many, delete one and many,
// upserts, edges added, removed and cleared from either side, foreign keys in either table and
// the database's ON DELETE actions), in and outside transactions, with rolled back ones leaving
// nothing.
func TestOracle(t *testing.T) {
	e := newEnv(t)
	installOracle(t, e)
	ctx := context.Background()
	c := e.client

	gs := c.Group.CreateBulk(c.Group.Create().SetName("admins"), c.Group.Create().SetName("ops")).SaveX(ctx)
	g1, g2 := gs[0], gs[1]
	card := c.Card.Create().SetNumber("4111-1111").SaveX(ctx)
	u1 := c.User.Create().SetName("alice").SetEmail("a@x").SetAge(30).SetPasswordHash("h1").SetAvatar([]byte{1}).
		SetProfile(map[string]any{"lang": "en"}).AddGroups(g1).SetCard(card).SaveX(ctx)
	us := c.User.CreateBulk(c.User.Create().SetName("bob").SetEmail("b@x"), c.User.Create().SetName("carol").SetEmail("c@x").SetNickname("cc")).SaveX(ctx)
	u2, u3 := us[0], us[1]
	p1 := c.Pet.Create().SetName("rex").SaveX(ctx)
	p2 := c.Pet.Create().SetName("tom").SetOwner(u2).SaveX(ctx)
	cm1 := c.Comment.Create().SetText("first").SetAuthor(u3).SaveX(ctx)
	cm2 := c.Comment.Create().SetText("second").SetTwin(cm1).SaveX(ctx)
	doc := c.Document.Create().SetTitle("plan").SaveX(ctx)
	a := c.Asset.Create().SetSku("s1").SetData([]byte{0, 1}).SetTags([]string{"x"}).SetRef(uuid.New()).SaveX(ctx)
	c.Note.CreateBulk(c.Note.Create(), c.Note.Create()).ExecX(ctx)

	// Updates, one and many, with edges of every kind.
	c.User.UpdateOne(u1).SetAge(31).AddPets(p1).SetRecoveryCode("rc").ExecX(ctx)
	c.User.Update().Where(user.IDIn(u2.ID, u3.ID)).AddAge(1).ClearNickname().ExecX(ctx)
	c.User.UpdateOne(u2).AddGroups(g1, g2).ExecX(ctx)
	c.User.UpdateOne(u2).RemoveGroups(g1).AddGroups(g2).ExecX(ctx) // g2 is there already
	c.Group.UpdateOne(g2).AddUsers(u3).RemoveUsers(u2).ExecX(ctx)
	c.User.UpdateOne(u1).ClearGroups().ClearPets().ExecX(ctx)
	c.User.UpdateOne(u2).RemovePets(p2).ExecX(ctx)
	c.User.UpdateOne(u3).AddPets(p2).ExecX(ctx)
	c.Comment.UpdateOne(cm2).ClearTwin().SetText("2nd").ExecX(ctx)
	c.Document.UpdateOneID(doc.ID).AddVersion(1).ExecX(ctx)
	c.Asset.UpdateOne(a).SetData([]byte{0, 2}).SetStatus("live").AppendTags([]string{"y"}).ExecX(ctx)
	c.User.UpdateOne(u1).SetAge(31).ExecX(ctx) // changes nothing

	// Upserts: one that updates, a bulk that inserts one row and updates another.
	c.User.Create().SetName("alice2").SetEmail("a@x").SetAge(40).OnConflictColumns(user.FieldEmail).UpdateNewValues().ExecX(ctx)
	c.User.CreateBulk(c.User.Create().SetName("bob2").SetEmail("b@x"), c.User.Create().SetName("dave").SetEmail("d@x").AddGroups(g1)).
		OnConflictColumns(user.FieldEmail).Update(func(u *entest.UserUpsert) { u.SetNickname("up") }).ExecX(ctx)
	c.Asset.Create().SetSku("s1").SetData([]byte{9}).OnConflictColumns("sku").UpdateNewValues().ExecX(ctx)

	// A committed transaction and a rolled back one.
	tx, err := c.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.UpdateOne(u2).SetName("bobby").AddGroups(g1).ExecX(ctx)
	tx.Pet.Create().SetName("fido").SetOwner(u1).ExecX(ctx)
	tx.Group.UpdateOne(g1).ClearUsers().ExecX(ctx)
	tx.Pet.Delete().Where().ExecX(ctx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, err = c.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.User.UpdateOne(u3).SetName("never").AddGroups(g1).ExecX(ctx)
	tx.Group.Create().SetName("never").ExecX(ctx)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// Deletes, one and many, with the database's ON DELETE actions (SET NULL on pets, cards and
	// comments, CASCADE on the join table).
	c.Pet.Create().SetName("late").SetOwner(u3).ExecX(ctx)
	c.User.UpdateOne(u3).AddGroups(g1, g2).ExecX(ctx)
	c.User.DeleteOne(u3).ExecX(ctx)
	c.Group.DeleteOneID(g2.ID).ExecX(ctx)
	c.User.Delete().Where(user.IDIn(u1.ID, u2.ID)).ExecX(ctx)
	c.Comment.Delete().ExecX(ctx)
	c.Asset.DeleteOne(a).ExecX(ctx)

	want, got := e.oracle(t), e.audited(t)
	if len(want) < 40 {
		t.Fatalf("the oracle saw only %d changes", len(want))
	}
	var missing, extra []string
	for _, w := range want {
		if i := slices.Index(got, w); i >= 0 {
			got = slices.Delete(got, i, i+1)
		} else {
			missing = append(missing, w)
		}
	}
	extra = got
	for _, m := range missing {
		t.Errorf("change without its record: %s", m)
	}
	for _, x := range extra {
		t.Errorf("record without its change: %s", x)
	}
	t.Logf("%d row changes, each with exactly its record", len(want))
}
