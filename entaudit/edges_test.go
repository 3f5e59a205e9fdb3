package entaudit_test

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/auditkit/auditkit/core"
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

// Linking pets to a user changes the pets' foreign keys: the user's record lists the edge, and
// every pet whose row changed gets an update record.
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
	if len(users) != 1 || !slices.Equal(edgeIDs(users[0], "pets", "added"), itoa(p1.ID, p2.ID)) {
		t.Fatalf("user rows = %v", users)
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
	if len(users) != 1 || !slices.Equal(edgeIDs(users[0], "pets", "removed"), itoa(p1.ID, p2.ID)) ||
		users[0].Metadata["edges"].(map[string]any)["pets"].(map[string]any)["cleared"] != true {
		t.Errorf("user rows after clear = %v", users)
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
	users := only(e.audit(t), "users")
	if len(users) != 4 {
		t.Fatalf("user rows = %v", users)
	}
	if got := edgeIDs(users[0], "groups", "added"); !slices.Equal(got, itoa(g1.ID)) {
		t.Errorf("create: groups added = %v", got)
	}
	if got := edgeIDs(users[1], "groups", "added"); !slices.Equal(got, itoa(g2.ID)) {
		t.Errorf("add: groups added = %v", got)
	}
	if got := edgeIDs(users[2], "groups", "removed"); !slices.Equal(got, itoa(g1.ID)) {
		t.Errorf("remove: groups removed = %v", got)
	}
	if got := edgeIDs(users[3], "groups", "removed"); !slices.Equal(got, itoa(g1.ID, g2.ID)) {
		t.Errorf("clear: groups removed = %v, want both links that existed", got)
	}
	groups := only(e.audit(t), "groups")
	if r := groups[len(groups)-1]; r.Kind != "update" || !slices.Equal(edgeIDs(r, "users", "added"), itoa(u.ID)) {
		t.Errorf("group row = %v", r)
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
