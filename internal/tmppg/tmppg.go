// Package tmppg starts a throw-away PostgreSQL cluster from the local installation, for a first
// run on a machine where PostgreSQL is installed but not running: the test suite (through
// internal/pgtest) and the examples' -demo mode use it when no database is configured and nothing
// answers on 127.0.0.1:5432.
//
// The cluster lives in a new temporary directory, listens on a free loopback port with trust
// authentication, has a database named "test", and is removed by Stop or, when the process ends
// without calling Stop (a test binary has no exit hook), by a small watcher process that stops
// the server and removes the directory once the process that started it is gone.
package tmppg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditkit/auditkit/internal/freeport"
)

// DefaultAddr is where a locally running PostgreSQL answers on a usual installation.
const DefaultAddr = "127.0.0.1:5432"

// InstallHint names the command that installs PostgreSQL on Debian and Ubuntu.
const InstallHint = "install PostgreSQL (Debian, Ubuntu: apt-get install -y postgresql; macOS: brew install postgresql) or point the database URL at a running server"

// ErrNotInstalled is returned by Start when no initdb and pg_ctl can be found.
var ErrNotInstalled = errors.New("PostgreSQL is not installed")

// Listening reports whether something accepts TCP connections at addr within timeout.
func Listening(addr string, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Cluster is a running throw-away PostgreSQL cluster.
type Cluster struct {
	// URL connects to its database "test" as user postgres.
	URL string
	// Port is the loopback port the server listens on.
	Port int
	// Dir is the temporary directory that holds the cluster; Stop removes it.
	Dir string

	pgCtl string
	cred  *syscall.Credential
}

// Start creates and starts a cluster, or returns an error that says what is missing. initdb and
// pg_ctl are taken from PATH or, failing that, from the usual installation folders (Debian's
// /usr/lib/postgresql/<version>/bin, the newest version first, and others). As root, PostgreSQL
// refuses to run, so the cluster runs as the "postgres" user the packages create.
func Start(ctx context.Context) (*Cluster, error) {
	initdb, pgCtl, err := findBinaries()
	if err != nil {
		return nil, err
	}
	return start(ctx, initdb, pgCtl)
}

// StartIn is Start with the initdb and pg_ctl of the folder dir (an installation's bin folder).
func StartIn(ctx context.Context, dir string) (*Cluster, error) {
	initdb, pgCtl := filepath.Join(dir, "initdb"), filepath.Join(dir, "pg_ctl")
	if !executable(initdb) || !executable(pgCtl) {
		return nil, fmt.Errorf("%w: no initdb and pg_ctl in %s", ErrNotInstalled, dir)
	}
	return start(ctx, initdb, pgCtl)
}

// Find returns the bin folder of a local installation of PostgreSQL whose major version is at
// least min, from the usual installation folders (the newest version first), or false.
func Find(min int) (string, bool) {
	for _, d := range installFolders() {
		if versionOf(d) >= min && executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "pg_ctl")) {
			return d, true
		}
	}
	return "", false
}

func start(ctx context.Context, initdb, pgCtl string) (*Cluster, error) {
	cred, owner, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "auditkit-pg-")
	if err != nil {
		return nil, fmt.Errorf("tmppg: %w", err)
	}
	c := &Cluster{Dir: dir, pgCtl: pgCtl, cred: cred}
	fail := func(err error) (*Cluster, error) {
		c.Stop()
		return nil, err
	}
	if owner != nil {
		if err := os.Chown(dir, owner[0], owner[1]); err != nil {
			return fail(fmt.Errorf("tmppg: %w", err))
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run(ctx, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return fail(fmt.Errorf("tmppg: initdb: %v: %s", err, lastLines(out, 5)))
	}
	// The port is free when it is drawn, and stays so unless another program draws it too before
	// the server binds it: the server is then started again on a new port.
	var port int
	for attempt := 1; ; attempt++ {
		var err error
		if port, err = freeport.Loopback(); err != nil {
			return fail(fmt.Errorf("tmppg: %w", err))
		}
		opts := strings.Join([]string{
			"-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1", "-k", dir,
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=300",
			// Deadlocks, which tests of concurrent writers meet and run again, found in 0.1 s
			// rather than 1.
			"-c", "deadlock_timeout=100ms",
		}, " ")
		logFile := filepath.Join(dir, "server.log")
		_ = os.Remove(logFile) // the log of an attempt on a taken port
		out, err := c.run(ctx, pgCtl, "-D", data, "-l", logFile, "-w", "-t", "120", "-o", opts, "start")
		if err == nil {
			break
		}
		log, _ := os.ReadFile(logFile)
		if attempt < 3 && bytes.Contains(log, []byte("Address already in use")) {
			continue
		}
		return fail(fmt.Errorf("tmppg: pg_ctl start: %v: %s %s", err, lastLines(out, 3), lastLines(log, 5)))
	}
	c.Port = port
	if err := c.watch(); err != nil {
		return fail(err)
	}
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fail(fmt.Errorf("tmppg: %w", err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE DATABASE test`); err != nil {
		return fail(fmt.Errorf("tmppg: create database test: %w", err))
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", port)
	return c, nil
}

// Stop stops the server at once and removes its directory. It is safe to call more than once.
func (c *Cluster) Stop() {
	if c == nil || c.Dir == "" {
		return
	}
	data := filepath.Join(c.Dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, _ = c.run(ctx, c.pgCtl, "-D", data, "-m", "immediate", "-w", "stop")
		cancel()
	}
	_ = os.RemoveAll(c.Dir)
	c.Dir = ""
}

// watch starts the watcher that stops the server and removes its directory once this process is
// gone. It runs in a session of its own, so that a signal to the test's process group does not
// end it before it has cleaned up.
func (c *Cluster) watch() error {
	script := `while [ -d /proc/"$1" ]; do sleep 1; done; "$2" -D "$3/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$3"`
	cmd := exec.Command("/bin/sh", "-c", script, "tmppg-watch", strconv.Itoa(os.Getpid()), c.pgCtl, c.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: c.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tmppg: starting the cleanup watcher: %w", err)
	}
	return cmd.Process.Release()
}

// run runs a PostgreSQL program as the cluster's user and returns its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "LANG=C.UTF-8")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Env = append(cmd.Env, "HOME="+c.Dir)
	}
	return cmd.CombinedOutput()
}

// installDirs are the folders (glob patterns) where PostgreSQL's programs are looked for when
// they are not in PATH.
var installDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
	"/opt/homebrew/opt/postgresql*/bin", "/usr/local/opt/postgresql*/bin", "/opt/homebrew/bin", "/usr/local/bin"}

// findBinaries looks for initdb and pg_ctl of one installation.
func findBinaries() (initdb, pgCtl string, err error) {
	if i, err1 := exec.LookPath("initdb"); err1 == nil {
		if p, err2 := exec.LookPath("pg_ctl"); err2 == nil {
			return i, p, nil
		}
	}
	for _, d := range installFolders() {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "pg_ctl")
		if executable(i) && executable(p) {
			return i, p, nil
		}
	}
	return "", "", fmt.Errorf("%w: no initdb and pg_ctl in PATH or in the usual installation folders; %s", ErrNotInstalled, InstallHint)
}

// installFolders returns the folders installDirs name, the newest version first within each.
func installFolders() []string {
	var dirs []string
	for _, pattern := range installDirs {
		m, _ := filepath.Glob(pattern)
		slices.SortFunc(m, func(a, b string) int { return versionOf(b) - versionOf(a) }) // newest first
		dirs = append(dirs, m...)
	}
	return dirs
}

// versionOf reads the major version out of an installation folder such as
// /usr/lib/postgresql/15/bin; 0 when there is none.
func versionOf(dir string) int {
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		part = strings.TrimPrefix(strings.TrimPrefix(part, "pgsql-"), "postgresql@")
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// runAs returns the credential to run PostgreSQL with, and the uid and gid to give its
// directory: none when not root; the "postgres" user's when root.
func runAs() (*syscall.Credential, []int, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, nil, fmt.Errorf("tmppg: PostgreSQL does not run as root and there is no \"postgres\" user to run it as: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("tmppg: user postgres has uid %q and gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, []int{uid, gid}, nil
}

// MissingDatabase reports whether err, from connecting, says that the database does not exist.
func MissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000" // invalid_catalog_name
}

// CreateDatabase creates the database databaseURL names, connecting to the "postgres" database
// of the same server, and reports whether it created it: another process creating it at the same
// time is not an error.
func CreateDatabase(ctx context.Context, databaseURL string) (bool, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return false, err
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") { // duplicate_database, or lost the race
		return false, nil
	}
	return err == nil, err
}

// lastLines returns the last n lines of b, trimmed, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
