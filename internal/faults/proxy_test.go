package faults

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// pgTarget is the host:port of the test database.
func pgTarget(t *testing.T) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// startProxy starts a proxy to the test database, closed when t ends.
func startProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start(pgTarget(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// connect opens a connection to db through p with a short connect timeout.
func connect(t *testing.T, p *Proxy, db *pgtest.DB, timeout time.Duration) (*pgx.Conn, error) {
	t.Helper()
	u, err := p.URL(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnectTimeout = timeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return c, err
}

func mustConnect(t *testing.T, p *Proxy, db *pgtest.DB) *pgx.Conn {
	t.Helper()
	c, err := connect(t, p, db, 5*time.Second)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	return c
}

func selectOne(c *pgx.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var n int
	return c.QueryRow(ctx, `SELECT 1`).Scan(&n)
}

func TestProxyPassAndBlackhole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	p := startProxy(t)
	c := mustConnect(t, p, db)
	if err := selectOne(c, 5*time.Second); err != nil {
		t.Fatalf("pass: %v", err)
	}
	if err := p.Blackhole(); err != nil {
		t.Fatal(err)
	}
	if p.Mode() != Blackhole {
		t.Fatalf("mode %v, want blackhole", p.Mode())
	}
	start := time.Now()
	if err := selectOne(c, 300*time.Millisecond); err == nil {
		t.Fatal("a query went through the black hole")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("the query failed after %v, before its deadline: the black hole answered", d)
	}
	if _, err := connect(t, p, db, 300*time.Millisecond); err == nil {
		t.Fatal("a connection was established through the black hole")
	}
	if got := p.Counters().Held; got < 1 {
		t.Fatalf("Held = %d, want at least 1", got)
	}
	if err := p.Pass(); err != nil {
		t.Fatal(err)
	}
	c2 := mustConnect(t, p, db)
	if err := selectOne(c2, 5*time.Second); err != nil {
		t.Fatalf("after pass: %v", err)
	}
}

func TestProxyRefuseReopensSamePort(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	p := startProxy(t)
	addr := p.Addr()
	if err := p.Refuse(); err != nil {
		t.Fatal(err)
	}
	_, err := net.DialTimeout("tcp", addr, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want connection refused", err)
	}
	if err := p.Pass(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, p.Addr())
	}
	c := mustConnect(t, p, db)
	if err := selectOne(c, 5*time.Second); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
}

func TestProxyCut(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	p := startProxy(t)
	a, b := mustConnect(t, p, db), mustConnect(t, p, db)
	if n := p.Cut(); n != 2 {
		t.Fatalf("Cut closed %d connections, want 2", n)
	}
	for _, c := range []*pgx.Conn{a, b} {
		if err := selectOne(c, 5*time.Second); err == nil {
			t.Fatal("a query succeeded on a cut connection")
		}
	}
	if got := p.Counters().Cut; got != 2 {
		t.Fatalf("Counters().Cut = %d, want 2", got)
	}
	if err := selectOne(mustConnect(t, p, db), 5*time.Second); err != nil {
		t.Fatalf("new connection after a cut: %v", err)
	}
}

// copyRows copies n rows into t_copy through c.
func copyRows(c *pgx.Conn, n int) error {
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{int64(i), "a row long enough to fill some bytes of the COPY stream"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.CopyFrom(ctx, pgx.Identifier{"t_copy"}, []string{"id", "v"}, pgx.CopyFromRows(rows))
	return err
}

func countCopied(t *testing.T, db *pgtest.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM t_copy`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProxyCutMidCopy(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE t_copy (id bigint PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t)
	c := mustConnect(t, p, db)
	p.CutMidCopy(1, 1)
	if err := copyRows(c, 5000); err == nil {
		t.Fatal("a COPY cut in the middle succeeded")
	}
	if got := p.Counters().MidCopyCuts; got != 1 {
		t.Fatalf("MidCopyCuts = %d, want 1", got)
	}
	// The server rolls the broken COPY back once it notices the lost connection.
	deadline := time.Now().Add(5 * time.Second)
	for countCopied(t, db) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := countCopied(t, db); n != 0 {
		t.Fatalf("%d rows of a COPY cut in the middle were stored", n)
	}
	// Armed once: the next COPY goes through.
	if err := copyRows(mustConnect(t, p, db), 5000); err != nil {
		t.Fatalf("COPY after the armed cut: %v", err)
	}
	if n := countCopied(t, db); n != 5000 {
		t.Fatalf("%d rows stored, want 5000", n)
	}
}

func TestProxyCutAfterCopy(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE t_copy (id bigint PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t)
	c := mustConnect(t, p, db)
	p.CutAfterCopy(1)
	if err := copyRows(c, 100); err == nil {
		t.Fatal("the client learned of a COPY whose CommandComplete was dropped")
	}
	if got := p.Counters().AfterCopyCuts; got != 1 {
		t.Fatalf("AfterCopyCuts = %d, want 1", got)
	}
	if n := countCopied(t, db); n != 100 {
		t.Fatalf("%d rows stored, want the 100 the server committed", n)
	}
}

func TestProxyHoldCommitReply(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE t_commit (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t)
	commit := func(c *pgx.Conn, id int, timeout time.Duration) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO t_commit VALUES ($1)", id); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return tx.Commit(cctx)
	}
	p.HoldCommitReply(1)
	// A COMMIT that answers ROLLBACK (the transaction failed) is not held.
	c := mustConnect(t, p, db)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Fatalf("Commit of a failed transaction = %v, want %v", err, pgx.ErrTxCommitRollback)
	}
	start := time.Now()
	if err := commit(c, 1, 300*time.Millisecond); err == nil {
		t.Fatal("the client learned of a COMMIT whose reply was held back")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("Commit returned after %v, before its deadline", d)
	}
	if got := p.Counters().HeldCommits; got != 1 {
		t.Fatalf("HeldCommits = %d, want 1", got)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM t_commit").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows stored, want the one the server committed", n)
	}
	// Armed once: the next COMMIT is answered.
	if err := commit(mustConnect(t, p, db), 2, 10*time.Second); err != nil {
		t.Fatalf("COMMIT after the armed hold: %v", err)
	}
}

func TestStartURL(t *testing.T) {
	for in, target := range map[string]string{
		"postgres://u@127.0.0.1:6543/db?sslmode=require": "127.0.0.1:6543",
		"postgres://u@127.0.0.1/db":                      "127.0.0.1:5432",
	} {
		p, u, err := StartURL(in)
		if err != nil {
			t.Fatalf("StartURL(%q): %v", in, err)
		}
		_ = p.Close()
		if p.target != target {
			t.Errorf("StartURL(%q) proxies to %s, want %s", in, p.target, target)
		}
		if want := "postgres://u@" + p.Addr() + "/db?sslmode=disable"; u != want {
			t.Errorf("StartURL(%q) = %q, want %q", in, u, want)
		}
	}
	if _, _, err := StartURL("host=127.0.0.1 dbname=db"); err == nil {
		t.Error("StartURL of a URL without a server succeeded")
	}
}
