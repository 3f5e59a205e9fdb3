package store

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// loadgenStore opens a Store on the schema of a data set made by loadgen load, both closed when b
// ends.
func loadgenStore(b *testing.B, schemaName string) (*Store, *pgxpool.Pool) {
	b.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	s, err := New(pool, Options{Schema: schemaName})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s, pool
}
