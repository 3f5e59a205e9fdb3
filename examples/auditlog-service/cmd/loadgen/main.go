// Command loadgen loads a realistic audit_logs data set into a schema of its own and measures the
// read API against it, so that anyone can repeat the read-side benchmarks.
//
//	loadgen load  -schema readapi_bench -rows 1000000 -tenants 100 -days 30
//	loadgen bench -schema readapi_bench
//	loadgen drop  -schema readapi_bench
//
// The database is -database, or $AUDITKIT_BENCH_DATABASE_URL, or the test database.
//
// load creates the schema (it refuses one that exists), applies the migrations, drops the
// secondary indexes of audit_logs, COPYs the rows in time order (tenants interleaved, as
// applications write them), rebuilds the indexes and runs VACUUM ANALYZE. bench starts the API
// in this process on a loopback HTTP server with real signed tokens and measures: filtered pages
// (tenant + time range + one more filter), an export of every row in both formats (rows/s and
// memory), and stats over 30 days, per tenant and across tenants.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/schema"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	dbURL := fs.String("database", envOr("AUDITKIT_BENCH_DATABASE_URL", defaultURL), "PostgreSQL URL")
	schemaName := fs.String("schema", "", "the benchmark's own schema (required; never a shared one)")
	rows := fs.Int("rows", 1000000, "load: rows to load")
	tenants := fs.Int("tenants", 100, "load: tenants")
	days := fs.Int("days", 30, "load: days of history, ending now")
	seed := fs.Uint64("seed", 1, "load: random seed")
	pages := fs.Int("pages", 200, "bench: filtered page requests per filter")
	skipPages := fs.Bool("skip-pages", false, "bench: leave out the filtered pages")
	skipStats := fs.Bool("skip-stats", false, "bench: leave out the stats")
	skipExport := fs.Bool("skip-export", false, "bench: leave out the export")
	_ = fs.Parse(os.Args[2:])
	if *schemaName == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -schema is required")
		os.Exit(2)
	}
	if err := schema.ValidateSchemaName(*schemaName); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	switch cmd {
	case "load":
		err = load(ctx, *dbURL, *schemaName, loadOptions{rows: *rows, tenants: *tenants, days: *days, seed: *seed})
	case "bench":
		err = bench(ctx, *dbURL, *schemaName, benchOptions{pages: *pages, skipPages: *skipPages, skipStats: *skipStats, skipExport: *skipExport})
	case "drop":
		err = drop(ctx, *dbURL, *schemaName)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen load|bench|drop -schema NAME [flags]")
	os.Exit(2)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func connect(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 8
	return pgxpool.NewWithConfig(ctx, cfg)
}

func drop(ctx context.Context, dbURL, name string) error {
	pool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
	if err == nil {
		fmt.Printf("dropped schema %s\n", name)
	}
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errExists = errors.New("the schema exists already; drop it first or choose another name")

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }
