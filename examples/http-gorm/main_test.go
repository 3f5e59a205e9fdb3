package main

import (
	"context"
	"testing"

	"github.com/auditkit/auditkit/examples/internal/shop/shoptest"
)

// The example passes the tests every shop example passes; examples/internal/shop/shoptest says
// what each checks. TestDemo adds what is its own: the routes httpaudit records.

// TestDemo runs the example as `go run ./examples/http-gorm -demo` would and checks the audit
// trail it stored; the route of each http record is the ServeMux pattern that served it.
func TestDemo(t *testing.T) {
	pg := shoptest.Demo(t, run)
	routes := map[string]bool{}
	rs, err := pg.Pool.Query(context.Background(), `SELECT DISTINCT coalesce(route,'') FROM audit_logs WHERE kind = 'http'`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var r string
		if err := rs.Scan(&r); err != nil {
			t.Fatal(err)
		}
		routes[r] = true
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POST /customers", "PATCH /customers/{id}", "POST /customers/{id}/orders", "POST /transfers"} {
		if !routes[want] {
			t.Errorf("no http record with route %q: %v", want, routes)
		}
	}
}

func TestServeAndPrintedCurlCommands(t *testing.T) { shoptest.ServeAndPrintedCurlCommands(t, run) }

func TestCurlDataIsRedacted(t *testing.T) { shoptest.CurlDataIsRedacted(t, run) }

func TestPostgresUnreachable(t *testing.T) { shoptest.PostgresUnreachable(t, run) }

func TestDatabaseMissing(t *testing.T) { shoptest.DatabaseMissing(t, run) }
