package pgtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/tmppg"
)

// EnvPG18Bin names the bin folder of a PostgreSQL 18 (or later) installation that
// RerunOnPostgreSQL18 starts a throw-away server from, when none is in the usual folders.
const EnvPG18Bin = "AUDITKIT_TEST_PG18_BIN"

// RerunOnPostgreSQL18 runs the calling package's tests again, but the test t itself, on a
// throw-away PostgreSQL 18 (or later) server, and fails t when they fail. The ORM integrations
// take a different plan there (an update returns its rows' before images itself), and their tests
// check the plan of the server they run on. The server comes from the installation EnvPG18Bin
// names, or from one in the usual folders; t is skipped, saying so, when there is none, or when
// the tests ran on PostgreSQL 18 already.
func RerunOnPostgreSQL18(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if v := ServerVersion(t, URL()); v >= 180000 {
		t.Skipf("the tests ran on PostgreSQL %d already", v/10000)
	}
	bin := os.Getenv(EnvPG18Bin)
	if bin == "" {
		var ok bool
		if bin, ok = tmppg.Find(18); !ok {
			t.Skipf("no PostgreSQL 18 or later: install it, or set %s to the bin folder of one", EnvPG18Bin)
		}
	}
	c, err := tmppg.StartIn(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if v := ServerVersion(t, c.URL); v < 180000 {
		t.Fatalf("%s runs PostgreSQL %d, want 18 or later", bin, v/10000)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.count=1", "-test.skip=^"+t.Name()+"$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), EnvURL+"="+c.URL, exampleEnvURL+"="+c.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests on PostgreSQL 18 failed (%v):\n%s", err, out)
	}
	if !bytes.HasSuffix(bytes.TrimSpace(out), []byte("PASS")) {
		t.Fatalf("the tests on PostgreSQL 18 did not pass:\n%s", out)
	}
	t.Logf("the tests passed on PostgreSQL 18 in %v", time.Since(start).Round(time.Second))
}

// ServerVersion returns the server_version_num of the server databaseURL names.
func ServerVersion(t testing.TB, databaseURL string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
