// Package schema holds the ent schemas of the entaudit tests.
package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/auditkit/auditkit/entaudit"
)

// User exercises every kind of field and edge.
type User struct{ ent.Schema }

// Fields of User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("name"),
		field.String("email").Unique(),
		field.Int("age").Default(0),
		field.String("nickname").Optional().Nillable(),
		field.String("password_hash").Optional().Sensitive(),
		field.String("recovery_code").Optional().Annotations(entaudit.Redact()),
		field.Bytes("avatar").Optional().Annotations(entaudit.Omit()),
		field.JSON("profile", map[string]any{}).Optional(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

// Edges of User.
func (User) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("pets", Pet.Type),
		edge.To("groups", Group.Type),
		edge.To("card", Card.Type).Unique(),
	}
}

// Pet is owned by a user: its foreign key lives in the pets table.
type Pet struct{ ent.Schema }

// Fields of Pet.
func (Pet) Fields() []ent.Field {
	return []ent.Field{field.String("name")}
}

// Edges of Pet.
func (Pet) Edges() []ent.Edge {
	return []ent.Edge{edge.From("owner", User.Type).Ref("pets").Unique()}
}

// Group has many users through a join table.
type Group struct{ ent.Schema }

// Fields of Group.
func (Group) Fields() []ent.Field {
	return []ent.Field{field.String("name")}
}

// Edges of Group.
func (Group) Edges() []ent.Edge {
	return []ent.Edge{edge.From("users", User.Type).Ref("groups")}
}

// Card belongs to one user (O2O); its number is sensitive.
type Card struct{ ent.Schema }

// Fields of Card.
func (Card) Fields() []ent.Field {
	return []ent.Field{field.String("number").Sensitive()}
}

// Edges of Card.
func (Card) Edges() []ent.Edge {
	return []ent.Edge{edge.From("owner", User.Type).Ref("card").Unique()}
}
