package shop

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
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultSchema      = "auditkit_example"
)

// Example is what sets one example command apart from the others.
type Example struct {
	// Name is the command's name ("gin-gorm"): its flag set, the prefix of its messages, its
	// tokens' audience (Name + "-example") and its demo's User-Agent (Name + "-demo").
	Name string
	// Title names its stack in the usage text ("Gin + GORM").
	Title string
	// LocalDatabase makes a run without a configured database (no -db, no AUDIT_DATABASE_URL)
	// create the default database on a local server that lacks it, or start a throw-away
	// cluster when nothing answers on 127.0.0.1:5432.
	LocalDatabase bool
	// Handler builds the audited HTTP handler: the router, the HTTP audit middleware (given
	// a.Audit and a.Writer) and the handlers calling a's operations.
	Handler func(a *App) (http.Handler, error)
}

// Run is an example's main without the process: it parses args, sets the shop up, and either
// serves it (printing curl commands with tokens for two tenants, until ctx ends or SIGINT or
// SIGTERM) or, with -demo, plays the scenario against it and prints the audit trail. It returns
// the exit code, so that tests can run an example with their own schema and address.
func Run(ctx context.Context, ex Example, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(ex.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (the demo uses a free loopback port)")
	dbURL := fs.String("db", envOr("AUDIT_DATABASE_URL", defaultDatabaseURL), "PostgreSQL URL")
	schemaName := fs.String("schema", defaultSchema, "schema for audit_logs and the example's tables")
	demo := fs.Bool("demo", false, "play a scripted scenario, print the audit trail and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if ex.Name == "" || ex.Handler == nil {
		fmt.Fprintln(stderr, "shop: an Example needs a Name and a Handler")
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "%s example: %s\n", ex.Name, fmt.Sprintf(format, args...))
		return 1
	}

	secret := os.Getenv("AUDIT_JWT_SECRET")
	if secret == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = hex.EncodeToString(b) // a fresh signing key per run: printed tokens work until restart
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if ex.LocalDatabase {
		explicit := os.Getenv("AUDIT_DATABASE_URL") != ""
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "db" })
		if !explicit {
			url, stopLocal, err := localDatabase(ctx, ex.Name, *dbURL, stderr)
			if err != nil {
				return fail("%v", err)
			}
			defer stopLocal()
			*dbURL = url
		}
	}

	a, err := Setup(ctx, Config{DatabaseURL: *dbURL, Schema: *schemaName, Secret: secret, Audience: ex.Name + "-example"})
	if err != nil {
		if errors.Is(err, ErrUnreachable) {
			fmt.Fprintln(stderr, err) // it carries its fix
			return 1
		}
		return fail("%v", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.Close(cctx); err != nil {
			fail("closing: %v", err)
		}
	}()
	handler, err := ex.Handler(a)
	if err != nil {
		return fail("%v", err)
	}

	listen := *addr
	if *demo {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fail("cannot listen on %s: %v (choose another with -addr)", listen, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // in-flight requests finish and are recorded before the writer closes
	}()
	base := "http://" + ln.Addr().String()

	if *demo {
		if err := runDemo(ctx, a, ex.Name+"-demo", base, stdout); err != nil {
			return fail("demo: %v", err)
		}
		return 0
	}
	printUsage(stdout, a, ex.Title, base)
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nshutting down; pending audit records are written first")
		return 0
	case err := <-served:
		return fail("%v", err)
	}
}

// printUsage prints ready-to-paste curl commands with tokens for two tenants.
func printUsage(w io.Writer, a *App, title, base string) {
	acme := a.Token("alice", "alice@acme.example", "acme", "acme", 12*time.Hour)
	globex := a.Token("bob", "bob@globex.example", "globex", "globex", 12*time.Hour)
	fmt.Fprintf(w, "auditkit %s example listening on %s (schema %s)\n", title, base, a.Cfg.Schema)
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
	forged := signToken(strings.Repeat("x", 32), a.Cfg.Audience, "mallory", "", "acme", "acme", time.Hour)
	fmt.Fprintln(w, curl("GET", base+"/customers", forged, ""))
	fmt.Fprintf(w, "\n# the audit trail\npsql %s -c %s\n", shellQuote(a.Cfg.DatabaseURL), shellQuote(
		"SELECT occurred_at, request_id, kind, action, actor_id, tenant_id, status, resource_type, resource_id, diff FROM "+
			a.Cfg.Schema+".audit_logs ORDER BY occurred_at DESC, id DESC LIMIT 20"))
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
