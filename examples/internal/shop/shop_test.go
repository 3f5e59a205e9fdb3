package shop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestLocalDatabaseCreatesAMissingDatabase: on a first run against a local server without the
// default database, the example creates it rather than stopping.
func TestLocalDatabaseCreatesAMissingDatabase(t *testing.T) {
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "shopexample_" + hex.EncodeToString(b)
	u := "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
	var stderr strings.Builder
	got, stop, err := localDatabase(ctx, "gin-gorm", u, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	if got != u || stderr.String() != "gin-gorm example: created the database of "+u+"\n" {
		t.Fatalf("URL %q, said %q", got, stderr.String())
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
}
