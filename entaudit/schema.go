package entaudit

import (
	"context"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
)

// Schema describes a generated ent package to Hook: which types are audited, how they are stored,
// and access to the generated mutations that the ent.Mutation interface does not expose. The
// entauditgen extension generates an implementation named AuditSchema in the ent package;
// applications do not implement Schema themselves.
type Schema interface {
	// Types lists the package's mutable types.
	Types() []*Type
	// Driver returns the driver m runs on: the client's driver, or the transaction's inside an
	// ent.Tx.
	Driver(m ent.Mutation) dialect.Driver
	// Predicates returns the predicates of m (the Where of an update or delete).
	Predicates(m ent.Mutation) []func(*sql.Selector)
	// ID returns the id m is bound to: the id of an UpdateOne or DeleteOne, of a create whose id
	// was given, and of every create once it ran.
	ID(m ent.Mutation) (any, bool)
	// Upsert reports whether m, a create that ran, carried an ON CONFLICT clause.
	Upsert(m ent.Mutation) bool
	// Batch places m, a create that reached the database as part of a CreateBulk, in the bulk;
	// it returns false for other mutations.
	Batch(m ent.Mutation) (Batch, bool)
	// Tx returns the ent transaction m runs in, or false when m runs outside of one.
	Tx(m ent.Mutation) (Tx, bool)
}

// Batch places a create in the CreateBulk it is part of. ent runs the creates of a bulk nested
// in one another, the first finishing last; Batch lets the hook deliver their records in
// statement order.
type Batch struct {
	// Key identifies the CreateBulk: the same for all its creates, different for another bulk
	// running at the same time. It is comparable.
	Key any
	// Index is the create's position in the CreateBulk, from 0.
	Index int
	// Size is the number of creates in the CreateBulk.
	Size int
}

// Tx gives access to the completion hooks of an ent transaction (ent's Tx.OnCommit and
// Tx.OnRollback).
type Tx interface {
	// Driver returns the transaction's driver. It is the same for every mutation of the
	// transaction, and runs statements inside it.
	Driver() dialect.Driver
	// OnCommit registers f to run when the transaction is committed. f must call commit, which
	// commits (and runs the hooks registered after f), or rollback, which rolls the transaction
	// back; it returns what the application's Commit returns.
	OnCommit(f func(ctx context.Context, commit, rollback func() error) error)
	// OnRollback registers f to run when the transaction is rolled back. f must call rollback.
	OnRollback(f func(ctx context.Context, rollback func() error) error)
}

// Type describes one ent type and its table.
type Type struct {
	// Name is the ent type name, such as "User"; it is what ent.Mutation.Type returns.
	Name string
	// Table is the table that stores the type; records use it as their resource type.
	Table string
	// IDColumn is the primary key column. Types without a single-column id (edge schemas with a
	// composite id) are generated with Skip set.
	IDColumn string
	// Skip turns auditing of the type off (the entaudit.Skip annotation).
	Skip bool
	// Redact lists the columns whose values are masked: Sensitive() fields and fields annotated
	// with entaudit.Redact.
	Redact []string
	// Omit lists the columns left out of images and diffs (fields annotated with entaudit.Omit).
	Omit []string
	// AutoUpdateTime lists the time columns ent sets on every update (fields with
	// UpdateDefault, such as the update_time of ent's mixin.Time). An update whose only changes
	// are to them is a no-op unless Options.RecordTimestampOnlyUpdates is set.
	AutoUpdateTime []string
	// Edges lists the type's edges and where each is stored.
	Edges []Edge
}

// EdgeStorage says where the link of an edge is stored.
type EdgeStorage uint8

// The places an edge can be stored.
const (
	// StoredInOwnTable: a foreign key column in the type's own table (M2O, inverse O2O). It is
	// part of the type's row images, so changes to it show in the type's own diff.
	StoredInOwnTable EdgeStorage = iota + 1
	// StoredInTargetTable: a foreign key column in the other type's table (O2M, O2O). Changing the
	// edge changes rows of the other table; each changed row gets its own update record.
	StoredInTargetTable
	// StoredInJoinTable: a row in a join table (M2M).
	StoredInJoinTable
)

// Edge describes one edge of a type.
type Edge struct {
	// Name is the edge name in the schema.
	Name string
	// Target is the ent type name at the other end.
	Target string
	// Storage says where the link is kept.
	Storage EdgeStorage
	// Table is the table holding the link: the type's own table, the target's table or the join
	// table.
	Table string
	// Column is the foreign key column (in Table) for StoredInOwnTable and StoredInTargetTable,
	// and the join table's column that refers to this type for StoredInJoinTable.
	Column string
	// TargetColumn is the join table's column that refers to the target (StoredInJoinTable only).
	TargetColumn string
}
