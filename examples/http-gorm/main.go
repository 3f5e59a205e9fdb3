// Command http-gorm is a small net/http + GORM application (customers, orders, credit transfers)
// with auditkit, on the standard library's http.ServeMux: every request is recorded by httpaudit,
// every row change by gormaudit, and both share the request id, actor, tenant and IP. It plays the
// same scenario as examples/gin-gorm.
//
//	go run ./examples/http-gorm          # serve, and print curl commands with tokens for two tenants
//	go run ./examples/http-gorm -demo    # play a short scenario over HTTP, print the audit trail, exit
//
// It needs a PostgreSQL (AUDIT_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test) and
// migrates audit_logs and its own tables into the schema auditkit_example (-schema).
//
// The shop itself (models, database set-up, the scenario and the printed audit trail) is shared
// with examples/gin-gorm in examples/internal/shop; this command adds the ServeMux routes and
// httpaudit (app.go).
package main

import (
	"context"
	"io"
	"os"

	"github.com/auditkit/auditkit/examples/internal/shop"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// example is this command for shop.Run.
var example = shop.Example{Name: "http-gorm", Title: "net/http + GORM", Handler: routes}

// run is main without the process: it returns the exit code, so that tests can run the example
// with their own schema and address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return shop.Run(ctx, example, args, stdout, stderr)
}
