// Command gin-gorm is a small Gin + GORM application (customers, orders, credit transfers) with
// auditkit: every request is recorded by ginaudit, every row change by gormaudit, and both share
// the request id, actor, tenant and IP.
//
//	go run ./examples/gin-gorm          # serve, and print curl commands with tokens for two tenants
//	go run ./examples/gin-gorm -demo    # play a short scenario over HTTP, print the audit trail, exit
//
// It needs a PostgreSQL (AUDIT_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test) and
// migrates audit_logs and its own tables into the schema auditkit_example (-schema).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/tmppg"
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultSchema      = "auditkit_example"
	startHint          = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code, so that tests can run the example
// with their own schema and address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gin-gorm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (the demo uses a free loopback port)")
	dbURL := fs.String("db", envOr("AUDIT_DATABASE_URL", defaultDatabaseURL), "PostgreSQL URL")
	schemaName := fs.String("schema", defaultSchema, "schema for audit_logs and the example's tables")
	demo := fs.Bool("demo", false, "play a scripted scenario, print the audit trail and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	gin.SetMode(gin.ReleaseMode)

	secret := os.Getenv("AUDIT_JWT_SECRET")
	if secret == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = hex.EncodeToString(b) // a fresh signing key per run: printed tokens work until restart
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	explicit := os.Getenv("AUDIT_DATABASE_URL") != ""
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "db" })
	if !explicit {
		url, stopLocal, err := localDatabase(ctx, *dbURL, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "gin-gorm example: %v\n", err)
			return 1
		}
		defer stopLocal()
		*dbURL = url
	}

	a, err := setup(ctx, config{DatabaseURL: *dbURL, Schema: *schemaName, Secret: secret})
	if err != nil {
		if errors.Is(err, errUnreachable) {
			fmt.Fprintln(stderr, err) // it carries its fix
		} else {
			fmt.Fprintf(stderr, "gin-gorm example: %v\n", err)
		}
		return 1
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.close(cctx); err != nil {
			fmt.Fprintf(stderr, "gin-gorm example: closing: %v\n", err)
		}
	}()

	listen := *addr
	if *demo {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "gin-gorm example: cannot listen on %s: %v (choose another with -addr)\n", listen, err)
		return 1
	}
	srv := &http.Server{Handler: a.engine, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // in-flight requests finish and are recorded before the writer closes
	}()
	base := "http://" + ln.Addr().String()

	if *demo {
		if err := runDemo(ctx, a, base, stdout); err != nil {
			fmt.Fprintf(stderr, "gin-gorm example: demo: %v\n", err)
			return 1
		}
		return 0
	}
	printUsage(stdout, a, base)
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nshutting down; pending audit records are written first")
		return 0
	case err := <-served:
		fmt.Fprintf(stderr, "gin-gorm example: %v\n", err)
		return 1
	}
}

// printUsage prints ready-to-paste curl commands with tokens for two tenants.
func printUsage(w io.Writer, a *app, base string) {
	acme := a.token("alice", "alice@acme.example", "acme", "acme", 12*time.Hour)
	globex := a.token("bob", "bob@globex.example", "globex", "globex", 12*time.Hour)
	fmt.Fprintf(w, "auditkit Gin + GORM example listening on %s (schema %s)\n", base, a.cfg.Schema)
	fmt.Fprintf(w, "Tokens are HS256, signed with a key made for this run and valid for 12 hours.\n\n")
	fmt.Fprintln(w, "# alice, tenant acme (customer ids are those of a fresh schema; GET /customers lists yours)")
	for _, c := range curlCommands(base, acme) {
		fmt.Fprintln(w, c)
	}
	fmt.Fprintln(w, "\n# bob, tenant globex: his own customer, and alice's customer 1, which his tenant cannot see (404)")
	fmt.Fprintln(w, curl("POST", base+"/customers", globex, `{"name":"Grace","email":"grace@globex.example","credit_cents":500}`))
	fmt.Fprintln(w, curl("GET", base+"/customers", globex, ""))
	fmt.Fprintln(w, curl("PATCH", base+"/customers/1", globex, `{"name":"taken over"}`))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "# a forged token: recorded as anonymous with severity warning, answered 401")
	fmt.Fprintln(w, curl("GET", base+"/customers", signToken(strings.Repeat("x", 32), "mallory", "", "acme", "acme", time.Hour), ""))
	fmt.Fprintf(w, "\n# the audit trail\npsql %s -c %s\n", shellQuote(a.cfg.DatabaseURL), shellQuote(
		"SELECT occurred_at, request_id, kind, action, actor_id, tenant_id, status, resource_type, resource_id, diff FROM "+
			a.cfg.Schema+".audit_logs ORDER BY occurred_at DESC, id DESC LIMIT 20"))
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}

// curlCommands is what a tenant user can try: create, update, order, and two transfers (the
// second fails and rolls back). Customer ids are those the first two creates get in an empty
// schema.
func curlCommands(base, tok string) []string {
	return []string{
		curl("POST", base+"/customers", tok, `{"name":"Ada","email":"ada@example.com","tax_id":"DE123","credit_cents":10000}`),
		curl("POST", base+"/customers", tok, `{"name":"Brian","email":"brian@example.com","credit_cents":2000}`),
		curl("GET", base+"/customers", tok, ""),
		curl("PATCH", base+"/customers/1", tok, `{"email":"ada@lovelace.example"}`),
		curl("POST", base+"/customers/1/orders", tok, `{"item":"analytical engine","amount_cents":4200}`),
		curl("POST", base+"/transfers", tok, `{"from":1,"to":2,"amount_cents":5000}`),
		curl("POST", base+"/transfers", tok, `{"from":2,"to":1,"amount_cents":99999}`),
	}
}

func curl(method, url, tok, body string) string {
	var b strings.Builder
	b.WriteString("curl -s")
	if method != "GET" {
		b.WriteString(" -X " + method)
	}
	b.WriteString(" " + shellQuote(url) + " -H " + shellQuote("Authorization: Bearer "+tok))
	if body != "" {
		b.WriteString(" -H 'Content-Type: application/json' -d " + shellQuote(body))
	}
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// localDatabase makes a first run work without set-up when no database was configured: a local
// server without the database gets it created, and with nothing answering on 127.0.0.1:5432 a
// throw-away cluster is started from the local PostgreSQL installation (stop removes it). It
// returns the URL to use.
func localDatabase(ctx context.Context, dbURL string, stderr io.Writer) (string, func(), error) {
	if tmppg.Listening(tmppg.DefaultAddr, 2*time.Second) {
		conn, err := pgx.Connect(ctx, dbURL)
		if err == nil {
			_ = conn.Close(ctx)
		} else if tmppg.MissingDatabase(err) {
			if created, err := tmppg.CreateDatabase(ctx, dbURL); err != nil {
				return "", nil, fmt.Errorf("creating the database of %s: %w", dbURL, err)
			} else if created {
				fmt.Fprintf(stderr, "gin-gorm example: created the database of %s\n", dbURL)
			}
		}
		return dbURL, func() {}, nil // any other problem is reported by setup, with its fix
	}
	c, err := tmppg.Start(ctx)
	if err != nil {
		if errors.Is(err, tmppg.ErrNotInstalled) {
			return "", nil, fmt.Errorf("nothing answers on %s and %w", tmppg.DefaultAddr, err)
		}
		return "", nil, fmt.Errorf("nothing answers on %s, and a throw-away PostgreSQL could not be started: %w", tmppg.DefaultAddr, err)
	}
	fmt.Fprintf(stderr, "gin-gorm example: nothing answers on %s; using a throw-away PostgreSQL cluster on 127.0.0.1:%d, removed on exit\n",
		tmppg.DefaultAddr, c.Port)
	return c.URL, c.Stop, nil
}
