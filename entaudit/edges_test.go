package entaudit_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/entaudit/internal/entest/comment"
	"github.com/auditkit/auditkit/entaudit/internal/entest/user"
)

// ids returns the string ids of an edge entry in a record's metadata.
func edgeIDs(r auditRow, edge, key string) []string {
	edges, _ := r.Metadata["edges"].(map[string]any)
	e, _ := edges[edge].(map[string]any)
	raw, _ := e[key].([]any)
	var out []string
	for _, v := range raw {
		s, _ := v.(string)
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func itoa(ids ...int) []string {
	var out []string
	for _, id := range ids {
		out = append(out, strconv.Itoa(id))
	}
	slices.Sort(out)
	return out
}

// Linking pets to a user changes the pets' foreign keys: every pet whose row changed gets an
// update record, and the user, whose row did not change, none.
func TestEdgeForeignKeyInTargetTable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SaveX(ctx)
	p1 := e.client.Pet.Create().SetName("rex").SaveX(ctx)
	p2 := e.client.Pet.Create().SetName("tom").SaveX(ctx)
	start := len(e.audit(t))

	e.client.User.UpdateOne(u).AddPets(p1, p2).ExecX(ctx)
	rows := e.audit(t)[start:]
	users, pets := only(rows, "users"), only(rows, "pets")
	if len(users) != 0 {
		t.Fatalf("user rows = %v, want none", users)
	}
	if len(pets) != 2 {
		t.Fatalf("pet rows = %v", pets)
	}
	for _, r := range pets {
		if r.Kind != "update" || r.Diff["user_pets"]["from"] != nil || r.Diff["user_pets"]["to"] != float64(u.ID) ||
			r.Metadata["via"] != "users.pets" {
			t.Errorf("pet row = %v", r)
		}
	}

	start += len(rows)
	e.client.User.UpdateOne(u).ClearPets().ExecX(ctx)
	rows = e.audit(t)[start:]
	users, pets = only(rows, "users"), only(rows, "pets")
	if len(users) != 0 {
		t.Errorf("user rows after clear = %v, want none", users)
	}
	if len(pets) != 2 || pets[0].Diff["user_pets"]["to"] != nil {
		t.Errorf("pet rows after clear = %v", pets)
	}
}

// Setting the owner from the pet's side changes the pet's own foreign key column.
func TestEdgeForeignKeyInOwnTable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SaveX(ctx)
	p := e.client.Pet.Create().SetName("rex").SaveX(ctx)
	e.client.Pet.UpdateOne(p).SetOwner(u).ExecX(ctx)
	rows := only(e.audit(t), "pets")
	r := rows[len(rows)-1]
	if r.Kind != "update" || r.Diff["user_pets"]["from"] != nil || r.Diff["user_pets"]["to"] != float64(u.ID) ||
		!slices.Equal(edgeIDs(r, "owner", "added"), itoa(u.ID)) {
		t.Errorf("pet row = %v", r)
	}
}

// Links of a many-to-many edge are rows of the join table: each one added gets an insert record,
// each one removed a delete record, keyed by both columns, whichever side made the change. The
// rows at the ends, which did not change, get no update record.
func TestEdgeJoinTable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g1 := e.client.Group.Create().SetName("admins").SaveX(ctx)
	g2 := e.client.Group.Create().SetName("ops").SaveX(ctx)
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").AddGroups(g1).SaveX(ctx)
	e.client.User.UpdateOne(u).AddGroups(g2).ExecX(ctx)
	e.client.User.UpdateOne(u).RemoveGroups(g1).ExecX(ctx)
	e.client.Group.UpdateOne(g1).AddUsers(u).ExecX(ctx) // from the other side
	e.client.User.UpdateOne(u).ClearGroups().ExecX(ctx)
	rows := e.audit(t)
	if users := only(rows, "users"); len(users) != 1 || users[0].Kind != "insert" ||
		!slices.Equal(edgeIDs(users[0], "groups", "added"), itoa(g1.ID)) {
		t.Fatalf("user rows = %v, want the insert listing its link", users)
	}
	if groups := only(rows, "groups"); len(groups) != 2 {
		t.Fatalf("group rows = %v, want the two inserts", groups)
	}
	link := func(g int) string { return fmt.Sprintf(`{"group_id":%d,"user_id":%d}`, g, u.ID) }
	want := []struct {
		kind, key, via string
	}{
		{"insert", link(g1.ID), "users.groups"},
		{"insert", link(g2.ID), "users.groups"},
		{"delete", link(g1.ID), "users.groups"},
		{"insert", link(g1.ID), "groups.users"},
		{"delete", link(g1.ID), "users.groups"},
		{"delete", link(g2.ID), "users.groups"},
	}
	links := only(rows, "user_groups")
	if len(links) != len(want) {
		t.Fatalf("link rows = %v", links)
	}
	for i, w := range want {
		r := links[i]
		img := r.After
		if w.kind == "delete" {
			img = r.Before
		}
		if i == 4 && r.ResourceID != w.key { // the clear deletes both links, in either order
			w.key = link(g2.ID)
		}
		if i == 5 && r.ResourceID != w.key {
			w.key = link(g1.ID)
		}
		if r.Kind != w.kind || r.ResourceID != w.key || r.Action != "user_groups."+w.kind || r.Metadata["via"] != w.via ||
			fmt.Sprintf(`{"group_id":%v,"user_id":%v}`, img["group_id"], img["user_id"]) != w.key {
			t.Errorf("link row %d = %v, want %s of %s via %s", i, r, w.kind, w.key, w.via)
		}
	}
}

// Deleting a user makes PostgreSQL null the foreign keys that referred to it (ON DELETE SET
// NULL) and drop its join-table links: each pet gets an update record, and the user's delete
// record lists the links it lost.
func TestDeleteCascades(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := e.client.Group.Create().SetName("admins").SaveX(ctx)
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").AddGroups(g).SaveX(ctx)
	p := e.client.Pet.Create().SetName("rex").SetOwner(u).SaveX(ctx)
	c := e.client.Card.Create().SetNumber("4111").SetOwner(u).SaveX(ctx)
	start := len(e.audit(t))
	e.client.User.DeleteOne(u).ExecX(ctx)
	rows := e.audit(t)[start:]
	users := only(rows, "users")
	if len(users) != 1 || users[0].Kind != "delete" {
		t.Fatalf("user rows = %v", rows)
	}
	if got := edgeIDs(users[0], "groups", "removed"); !slices.Equal(got, itoa(g.ID)) {
		t.Errorf("groups removed = %v", got)
	}
	if got := edgeIDs(users[0], "pets", "removed"); !slices.Equal(got, itoa(p.ID)) {
		t.Errorf("pets removed = %v", got)
	}
	pets := only(rows, "pets")
	if len(pets) != 1 || pets[0].Kind != "update" || pets[0].Diff["user_pets"]["from"] != float64(u.ID) || pets[0].Diff["user_pets"]["to"] != nil {
		t.Errorf("pet rows = %v", pets)
	}
	cards := only(rows, "cards")
	if len(cards) != 1 || cards[0].ResourceID != strconv.Itoa(c.ID) || cards[0].Diff["user_card"]["to"] != nil ||
		cards[0].After["number"] != core.Redacted {
		t.Errorf("card rows = %v", cards)
	}
}

// Foreign keys declared only by the referring side are found as well: a one-way edge to the
// deleted type (User has no edge to its comments) and a same-type one-to-one edge kept in the
// row's own table. The rows PostgreSQL changes through them (ON DELETE SET NULL) get update
// records naming the declaring edge.
func TestDeleteNullsReferencesDeclaredByTheReferrer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SaveX(ctx)
	a := e.client.Comment.Create().SetText("first").SetAuthor(u).SaveX(ctx)
	b := e.client.Comment.Create().SetText("second").SetTwin(a).SaveX(ctx)
	c := e.client.Comment.Create().SetText("third").SaveX(ctx)
	d := e.client.Comment.Create().SetText("fourth").SetTwin(c).SaveX(ctx)

	start := len(e.audit(t))
	e.client.User.DeleteOne(u).ExecX(ctx)
	rows := e.audit(t)[start:]
	comments := only(rows, "comments")
	if len(comments) != 1 {
		t.Fatalf("rows = %v, want the user's delete and the comment it nulled", rows)
	}
	if r := comments[0]; r.Kind != "update" || r.ResourceID != strconv.Itoa(a.ID) || r.Metadata["via"] != "comments.author" ||
		r.Diff["comment_author"]["from"] != float64(u.ID) || r.Diff["comment_author"]["to"] != nil {
		t.Errorf("comment row = %v", r)
	}

	start += len(rows)
	e.client.Comment.DeleteOne(a).ExecX(ctx)
	rows = e.audit(t)[start:]
	if len(rows) != 2 || rows[0].Kind != "delete" || rows[0].ResourceID != strconv.Itoa(a.ID) {
		t.Fatalf("rows = %v, want the delete and its twin's update", rows)
	}
	if r := rows[1]; r.Kind != "update" || r.ResourceID != strconv.Itoa(b.ID) || r.Metadata["via"] != "comments.twin" ||
		r.Diff["comment_twin"]["from"] != float64(a.ID) || r.Diff["comment_twin"]["to"] != nil {
		t.Errorf("twin row = %v", r)
	}

	// Twins deleted together: each has its delete record, and no update of the other.
	start += len(rows)
	e.client.Comment.Delete().Where(comment.IDIn(c.ID, d.ID)).ExecX(ctx)
	rows = e.audit(t)[start:]
	if len(rows) != 2 || rows[0].Kind != "delete" || rows[1].Kind != "delete" {
		t.Errorf("rows = %v, want two deletes", rows)
	}
}

// With ON DELETE CASCADE, the rows PostgreSQL deletes with the user get delete records, whichever
// side declares their foreign key.
func TestDeleteCascadeRecorded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.cascade(t, "pets", "user_pets", "users")
	e.cascade(t, "comments", "comment_author", "users")
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").SaveX(ctx)
	p := e.client.Pet.Create().SetName("rex").SetOwner(u).SaveX(ctx)
	c := e.client.Comment.Create().SetText("hi").SetAuthor(u).SaveX(ctx)
	start := len(e.audit(t))
	e.client.User.DeleteOne(u).ExecX(ctx)
	rows := e.audit(t)[start:]
	if len(rows) != 3 {
		t.Fatalf("rows = %v", rows)
	}
	for _, want := range []struct{ table, id, via string }{
		{"pets", strconv.Itoa(p.ID), "users.pets"},
		{"comments", strconv.Itoa(c.ID), "comments.author"},
	} {
		got := only(rows, want.table)
		if len(got) != 1 || got[0].Kind != "delete" || got[0].ResourceID != want.id || got[0].Metadata["via"] != want.via ||
			got[0].Before == nil || got[0].After != nil {
			t.Errorf("%s rows = %v", want.table, got)
		}
	}
	if n := e.client.Pet.Query().CountX(ctx) + e.client.Comment.Query().CountX(ctx); n != 0 {
		t.Errorf("%d rows left, want the cascade to delete them", n)
	}
}

// ent ignores adding a link that exists and removing one that does not; the record lists only
// the links that changed, row by row.
func TestEdgeUnchangedLinksLeftOut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g1 := e.client.Group.Create().SetName("admins").SaveX(ctx)
	g2 := e.client.Group.Create().SetName("ops").SaveX(ctx)
	u := e.client.User.Create().SetName("alice").SetEmail("a@x").AddGroups(g1).SaveX(ctx)
	v := e.client.User.Create().SetName("bob").SetEmail("b@x").SaveX(ctx)
	p := e.client.Pet.Create().SetName("rex").SetOwner(v).SaveX(ctx)
	start := len(e.audit(t))

	// Nothing changes: no record.
	e.client.User.UpdateOne(u).RemoveGroups(g2).AddGroups(g1).ExecX(ctx)
	e.client.User.UpdateOne(u).RemovePets(p).ExecX(ctx)
	if rows := e.audit(t)[start:]; len(rows) != 0 {
		t.Fatalf("rows = %v, want none for links that did not change", rows)
	}

	link := func(g, u int) string { return fmt.Sprintf(`{"group_id":%d,"user_id":%d}`, g, u) }
	kinds := func(rows []auditRow) []string {
		var out []string
		for _, r := range rows {
			out = append(out, r.Kind+" "+r.ResourceID)
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		name  string
		run   func()
		links []string
		users int
	}{
		{"one of two named links existed", func() { e.client.User.UpdateOne(u).RemoveGroups(g1, g2).ExecX(ctx) },
			[]string{"delete " + link(g1.ID, u.ID)}, 0},
		{"both added are new", func() { e.client.User.UpdateOne(u).AddGroups(g1, g2).ExecX(ctx) },
			[]string{"insert " + link(g1.ID, u.ID), "insert " + link(g2.ID, u.ID)}, 0},
		{"g2 removed, g1 linked already", func() { e.client.User.UpdateOne(u).RemoveGroups(g2).AddGroups(g1).SetAge(3).ExecX(ctx) },
			[]string{"delete " + link(g2.ID, u.ID)}, 1},
		{"bulk: each row loses what it had", func() {
			e.client.User.Update().Where(user.IDIn(u.ID, v.ID)).RemoveGroups(g1).RemovePets(p).SetAge(9).ExecX(ctx)
		}, []string{"delete " + link(g1.ID, u.ID)}, 2},
	} {
		start := len(e.audit(t))
		c.run()
		rows := e.audit(t)[start:]
		if got := kinds(only(rows, "user_groups")); !slices.Equal(got, c.links) {
			t.Errorf("%s: links %v, want %v", c.name, got, c.links)
		}
		if got := len(only(rows, "users")); got != c.users {
			t.Errorf("%s: %d user rows, want %d: %v", c.name, got, c.users, rows)
		}
	}
	if pets := only(e.audit(t), "pets"); pets[len(pets)-1].Diff["user_pets"]["to"] != nil {
		t.Errorf("the bulk update did not record the pet it unlinked: %v", pets)
	}
}

// A same-type one-to-one edge is bidirectional: linking a row sets the key of the row at the
// other end too, and clearing it clears both. Both rows get records.
func TestEdgeBidirectionalOneToOne(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.client.Comment.Create().SetText("a").SaveX(ctx)
	b := e.client.Comment.Create().SetText("b").SetTwin(a).SaveX(ctx)
	rows := e.audit(t)[1:]
	if len(rows) != 2 || rows[0].Kind != "insert" || rows[0].ResourceID != strconv.Itoa(b.ID) {
		t.Fatalf("rows = %v, want b's insert and a's update", rows)
	}
	if r := rows[1]; r.Kind != "update" || r.ResourceID != strconv.Itoa(a.ID) || r.Metadata["via"] != "comments.twin" ||
		r.Diff["comment_twin"]["from"] != nil || r.Diff["comment_twin"]["to"] != float64(b.ID) {
		t.Errorf("a = %v", r)
	}

	start := len(e.audit(t))
	e.client.Comment.UpdateOne(b).ClearTwin().ExecX(ctx)
	rows = e.audit(t)[start:]
	if len(rows) != 2 {
		t.Fatalf("rows = %v, want both rows updated", rows)
	}
	for i, want := range []struct{ id, from int }{{b.ID, a.ID}, {a.ID, b.ID}} {
		if r := rows[i]; r.Kind != "update" || r.ResourceID != strconv.Itoa(want.id) ||
			r.Diff["comment_twin"]["from"] != float64(want.from) || r.Diff["comment_twin"]["to"] != nil {
			t.Errorf("row %d = %v", i, r)
		}
	}
	if n := e.client.Comment.Query().Where(comment.HasTwin()).CountX(ctx); n != 0 {
		t.Errorf("%d comments still have a twin", n)
	}
}
