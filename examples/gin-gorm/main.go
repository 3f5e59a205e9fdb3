// Command gin-gorm is a small Gin + GORM application (customers, orders, credit transfers) with
// auditkit: every request is recorded by ginaudit, every row change by gormaudit, and both share
// the request id, actor, tenant and IP.
//
//	go run ./examples/gin-gorm          # serve, and print curl commands with tokens for two tenants
//	go run ./examples/gin-gorm -demo    # play a short scenario over HTTP, print the audit trail, exit
//
// It needs a PostgreSQL (AUDIT_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test) and
// migrates audit_logs and its own tables into the schema auditkit_example (-schema). Without a
// configured database it creates the default one on a local server that lacks it, or starts a
// throw-away cluster when nothing answers on 127.0.0.1:5432.
//
// The shop itself (models, database set-up, the scenario and the printed audit trail) is shared
// with examples/http-gorm in examples/internal/shop; this command adds the Gin routes and ginaudit
// (app.go).
package main

import (
	"context"
	"io"
	"os"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/examples/internal/shop"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// example is this command for shop.Run.
var example = shop.Example{Name: "gin-gorm", Title: "Gin + GORM", LocalDatabase: true, Handler: routes}

// run is main without the process: it returns the exit code, so that tests can run the example
// with their own schema and address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	gin.SetMode(gin.ReleaseMode)
	return shop.Run(ctx, example, args, stdout, stderr)
}
