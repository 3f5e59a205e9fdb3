package main

import (
	"context"
	"testing"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// The loader and the benchmark run end to end on a small data set.
func TestLoadBenchDrop(t *testing.T) {
	ctx := context.Background()
	name := "t_loadgen_" + randomHex(4)
	t.Cleanup(func() {
		if err := drop(context.Background(), pgtest.URL(), name); err != nil {
			t.Error(err)
		}
	})
	if err := load(ctx, pgtest.URL(), name, loadOptions{rows: 3000, tenants: 5, days: 10, seed: 3}); err != nil {
		t.Fatal(err)
	}
	if err := load(ctx, pgtest.URL(), name, loadOptions{rows: 10, tenants: 1, days: 1, seed: 3}); err != errExists {
		t.Fatalf("loading into an existing schema: %v", err)
	}
	pool, err := connect(ctx, pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var rows, tenants, indexes int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT tenant_id) FROM "`+name+`".audit_logs`).Scan(&rows, &tenants); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_logs'`, name).Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	if rows != 3000 || tenants != 5 || indexes != 9 {
		t.Fatalf("loaded %d rows of %d tenants with %d indexes", rows, tenants, indexes)
	}
	if err := bench(ctx, pgtest.URL(), name, benchOptions{pages: 3}); err != nil {
		t.Fatal(err)
	}
}
