package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Comment refers to other rows only through foreign keys in its own table: its author with a
// one-way edge (User has no edge back, so only this side knows the key), and its twin with a
// same-type one-to-one edge.
type Comment struct{ ent.Schema }

// Fields of Comment.
func (Comment) Fields() []ent.Field {
	return []ent.Field{field.String("text")}
}

// Edges of Comment.
func (Comment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("author", User.Type).Unique(),
		edge.To("twin", Comment.Type).Unique(),
	}
}
