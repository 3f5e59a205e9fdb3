package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/tmppg"
)

// TestThrowAwayClusterWhenNothingAnswers: with EnvURL unset and nothing answering where the
// default server would, the tests get a throw-away cluster, migrated schemas included.
func TestThrowAwayClusterWhenNothingAnswers(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Setenv(EnvURL, "")
		os.Unsetenv(EnvURL)
	}
	t.Setenv(exampleEnvURL, "")
	localAddr = "127.0.0.1:1"                               // nothing listens on port 1
	local.once, local.url, local.err = sync.Once{}, "", nil // init chose already
	t.Cleanup(func() {
		localAddr = "127.0.0.1:5432"
		local.once, local.url, local.err = sync.Once{}, "", nil
	})
	u := URL()
	if u == DefaultURL || local.err != nil {
		t.Fatalf("URL %q, %v", u, local.err)
	}
	if got := os.Getenv(exampleEnvURL); got != u {
		t.Fatalf("the examples' %s is %q, want %q", exampleEnvURL, got, u)
	}
	if !strings.HasPrefix(u, "postgres://postgres@127.0.0.1:") {
		t.Fatalf("URL %q", u)
	}
	db := New(t)
	if n := db.Count(t); n != 0 {
		t.Fatalf("%d rows in a new schema", n)
	}
}

// TestCreateDatabase: a missing database is created, and creating it again is not an error.
func TestCreateDatabase(t *testing.T) {
	ctx := context.Background()
	base, err := url.Parse(DefaultURL)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "pgtest_created_" + hex.EncodeToString(b)
	base.Path = "/" + name
	if _, err := pgx.Connect(ctx, base.String()); err == nil || !tmppg.MissingDatabase(err) {
		t.Fatalf("connecting to a missing database: %v", err)
	}
	for i, want := range []bool{true, false} {
		if created, err := tmppg.CreateDatabase(ctx, base.String()); err != nil || created != want {
			t.Fatalf("call %d: created %v, %v", i+1, created, err)
		}
	}
	conn, err := pgx.Connect(ctx, base.String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	base.Path = "/postgres"
	admin, err := pgx.Connect(ctx, base.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `DROP DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
}
