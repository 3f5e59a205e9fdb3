package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"
)

// Asset has a field of every kind ent maps to its own PostgreSQL type, and a unique key for
// upserts.
type Asset struct{ ent.Schema }

// Fields of Asset.
func (Asset) Fields() []ent.Field {
	return []ent.Field{
		field.String("sku").Unique(),
		field.Bytes("data").Optional(),
		field.Bytes("digest").Optional().Nillable(),
		field.JSON("meta", map[string]any{}).Optional(),
		field.Strings("tags").Optional(),
		field.Time("seen_at").Optional().Nillable(),
		field.UUID("ref", uuid.UUID{}).Optional(),
		field.Enum("status").Values("draft", "live", "gone").Default("draft"),
		field.Float("price").Optional(),
		field.Bool("active").Default(false),
		field.Int64("size").Optional(),
		field.String("note").Optional().Nillable(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
	}
}

// Note has only optional fields: a create may set none of them.
type Note struct{ ent.Schema }

// Fields of Note.
func (Note) Fields() []ent.Field {
	return []ent.Field{field.String("label").Optional()}
}
