// Package schema holds the ent schemas of the gin-ent example.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Customer is a tenant's customer.
type Customer struct{ ent.Schema }

// Fields of Customer.
func (Customer) Fields() []ent.Field {
	return []ent.Field{
		field.String("tenant_id").Immutable(),
		field.String("name").NotEmpty(),
		field.String("email"),
		field.Enum("tier").Values("basic", "gold").Default("basic"),
		field.Int("credit").Default(0),
		// Sensitive: never shown by ent, and redacted in audit records.
		field.String("api_secret").Optional().Sensitive(),
	}
}

// Edges of Customer.
func (Customer) Edges() []ent.Edge {
	return []ent.Edge{edge.To("orders", Order.Type)}
}

// Indexes of Customer.
func (Customer) Indexes() []ent.Index {
	return []ent.Index{index.Fields("tenant_id", "email").Unique()}
}

// Order belongs to a customer.
type Order struct{ ent.Schema }

// Fields of Order.
func (Order) Fields() []ent.Field {
	return []ent.Field{
		field.Int("amount").Positive(),
		field.String("status").Default("open"),
	}
}

// Edges of Order.
func (Order) Edges() []ent.Edge {
	return []ent.Edge{edge.From("customer", Customer.Type).Ref("orders").Unique()}
}
