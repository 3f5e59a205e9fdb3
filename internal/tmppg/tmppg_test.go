package tmppg_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/tmppg"
)

// TestStartAndStop: a cluster starts from the local installation, has a database "test" that
// takes connections, and Stop removes it.
func TestStartAndStop(t *testing.T) {
	ctx := context.Background()
	c, err := tmppg.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil || db != "test" {
		t.Fatalf("database %q, %v", db, err)
	}
	_ = conn.Close(ctx)
	dir := c.Dir
	c.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s is still there after Stop: %v", dir, err)
	}
	if tmppg.Listening(fmt.Sprintf("127.0.0.1:%d", c.Port), time.Second) {
		t.Fatalf("something still listens on port %d", c.Port)
	}
}

const childEnv = "TMPPG_TEST_CHILD"

// TestWatcherRemovesTheClusterOfAProcessThatEnded: a process that ends without calling Stop (a
// test binary has no exit hook) leaves nothing behind: the watcher stops the server and removes
// the directory.
func TestWatcherRemovesTheClusterOfAProcessThatEnded(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		return // the parent's own run of this test runs the child below
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildStartsAndExits$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var dir string
	var port int
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "cluster %s %d", &dir, &port); err == nil {
			break
		}
	}
	if dir == "" {
		t.Fatalf("the child did not say where its cluster was:\n%s", out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		if os.IsNotExist(statErr) && !tmppg.Listening(fmt.Sprintf("127.0.0.1:%d", port), time.Second) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after its process ended, the cluster in %s is still there (%v)", dir, statErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestChildStartsAndExits is the child of TestWatcherRemovesTheClusterOfAProcessThatEnded: it
// starts a cluster, says where, and exits without stopping it.
func TestChildStartsAndExits(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		return // run by TestWatcherRemovesTheClusterOfAProcessThatEnded only
	}
	c, err := tmppg.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("cluster %s %d\n", c.Dir, c.Port)
	os.Exit(0)
}

// TestStartIn: a cluster starts from the installation folder it is given, and a folder without
// PostgreSQL's programs is refused as not installed.
func TestStartIn(t *testing.T) {
	dir, ok := tmppg.Find(0)
	if !ok {
		t.Fatal("no PostgreSQL installation found in the usual folders")
	}
	ctx := context.Background()
	c, err := tmppg.StartIn(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dir, fmt.Sprint("/", version/10000, "/")) {
		t.Errorf("server version %d started from %s", version, dir)
	}
	if _, err := tmppg.StartIn(ctx, t.TempDir()); !errors.Is(err, tmppg.ErrNotInstalled) {
		t.Fatalf("a folder without initdb: %v, want ErrNotInstalled", err)
	}
	if _, ok := tmppg.Find(1000); ok {
		t.Error("found an installation of PostgreSQL 1000")
	}
}
