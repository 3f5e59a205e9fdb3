package gormaudit_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/tmppg"
)

// pg18BinEnv names the bin folder of a PostgreSQL 18 (or later) installation that
// TestOnPostgreSQL18 starts a throw-away server from, when none is in the usual folders.
const pg18BinEnv = "AUDITKIT_TEST_PG18_BIN"

// TestOnPostgreSQL18 runs this package's tests again on PostgreSQL 18 or later, where an update
// returns its rows' before images itself (fuse.go) instead of the plugin reading them first; the
// tests check the plan that the server they run on gets. It starts a throw-away server from the
// installation pg18BinEnv names, or from one in the usual folders, and skips, saying so, when
// there is none, or when the tests ran on PostgreSQL 18 already.
func TestOnPostgreSQL18(t *testing.T) {
	ctx := context.Background()
	if v := serverVersion(t, pgtest.URL()); v >= 180000 {
		t.Skipf("the tests ran on PostgreSQL %d already", v/10000)
	}
	bin := os.Getenv(pg18BinEnv)
	if bin == "" {
		var ok bool
		if bin, ok = tmppg.Find(18); !ok {
			t.Skipf("no PostgreSQL 18 or later: install it, or set %s to the bin folder of one", pg18BinEnv)
		}
	}
	c, err := tmppg.StartIn(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if v := serverVersion(t, c.URL); v < 180000 {
		t.Fatalf("%s runs PostgreSQL %d, want 18 or later", bin, v/10000)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.count=1", "-test.skip=^TestOnPostgreSQL18$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), pgtest.EnvURL+"="+c.URL, "AUDIT_DATABASE_URL="+c.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests on PostgreSQL 18 failed (%v):\n%s", err, out)
	}
	if !bytes.HasSuffix(bytes.TrimSpace(out), []byte("PASS")) {
		t.Fatalf("the tests on PostgreSQL 18 did not pass:\n%s", out)
	}
	t.Logf("the tests passed on PostgreSQL 18 in %v", time.Since(start).Round(time.Second))
}

// serverVersion returns the server_version_num of the server databaseURL names.
func serverVersion(t *testing.T, databaseURL string) int {
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
