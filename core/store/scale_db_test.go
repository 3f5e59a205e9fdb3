package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

// ownDatabase creates a database of its own for tb, migrated in schema public, and drops it when
// tb ends. Plans and timings that depend on VACUUM marking pages all-visible need it: in the
// shared test database other tests' open transactions keep VACUUM from doing so.
func ownDatabase(tb testing.TB, prefix string) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := prefix + "_" + hex.EncodeToString(suffix)
	admin, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		tb.Fatalf("%v (%s)", err, pgtest.Hint)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if _, kept := keptDatabases.Load(name); kept {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.URL())
		if err != nil {
			tb.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			tb.Error(err)
		}
	})
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := schema.Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	return pool
}

// keptDatabases holds the names of the databases of ownDatabase that keepDatabase kept.
var keptDatabases sync.Map

// keepDatabase keeps pool's database, made by ownDatabase, when tb ends, and prints its name.
func keepDatabase(tb testing.TB, pool *pgxpool.Pool) {
	name := pool.Config().ConnConfig.Database
	keptDatabases.Store(name, true)
	fmt.Printf("database %s is kept; drop it with: psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE %s'\n", name, name)
}

// existingDatabase connects to the database name, kept earlier by keepDatabase, and applies the
// migrations added since.
func existingDatabase(tb testing.TB, name string) *pgxpool.Pool {
	tb.Helper()
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := schema.Migrate(context.Background(), pool); err != nil {
		tb.Fatal(err)
	}
	return pool
}
