// Command gin-ent is a small Gin + ent service whose requests and database changes are audited
// by auditkit: ginaudit records every request (with the actor from a verified JWT) and entaudit
// every row the request created, changed or deleted, linked by the request id.
//
// Run it against the local PostgreSQL (it migrates what it needs into its own schema):
//
//	go run ./examples/gin-ent          # serve, and print curl commands with signed tokens
//	go run ./examples/gin-ent -demo    # play a short scenario and print the audit trail
//
// Flags and environment: -db or AUDIT_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
// -schema (default gin_ent_example), -addr (default 127.0.0.1:8080), AUDIT_JWT_SECRET (the HS256
// secret; by default a fresh random one per run, with which the program signs the tokens it
// prints: they work until it stops).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// defaultDatabaseURL is the local PostgreSQL the example uses when neither -db nor
// AUDIT_DATABASE_URL is given.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func main() {
	s := settings{DatabaseURL: envOr("AUDIT_DATABASE_URL", defaultDatabaseURL), Secret: os.Getenv("AUDIT_JWT_SECRET")}
	if s.Secret == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		s.Secret = hex.EncodeToString(b)
	}
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on")
	demo := flag.Bool("demo", false, "play a scripted scenario, print the audit trail and exit")
	flag.StringVar(&s.DatabaseURL, "db", s.DatabaseURL, "PostgreSQL URL")
	flag.StringVar(&s.Schema, "schema", "gin_ent_example", "PostgreSQL schema for the example's tables and audit_logs")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, s, *addr, *demo); err != nil {
		fmt.Fprintln(os.Stderr, "gin-ent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, s settings, addr string, demo bool) (err error) {
	a, err := open(ctx, s)
	if err != nil {
		return err
	}
	defer func() {
		// The signal context is done by now: closing takes a fresh deadline of its own, so that
		// the pending audit records are written.
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cerr := a.Close(closeCtx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing: %w", cerr))
		}
	}()
	if demo {
		addr = "127.0.0.1:0"
	}
	srv, err := a.serve(addr)
	if err != nil {
		return err
	}
	defer srv.stop()
	if demo {
		return runDemo(ctx, out, a, srv.url)
	}
	printCurl(out, s.Secret, srv.url)
	<-ctx.Done()
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
