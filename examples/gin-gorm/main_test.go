package main

import (
	"testing"

	"github.com/auditkit/auditkit/examples/internal/shop/shoptest"
)

// The example passes the tests every shop example passes; examples/internal/shop/shoptest says
// what each checks.

func TestDemo(t *testing.T) { shoptest.Demo(t, run) }

func TestServeAndPrintedCurlCommands(t *testing.T) { shoptest.ServeAndPrintedCurlCommands(t, run) }

func TestCurlDataIsRedacted(t *testing.T) { shoptest.CurlDataIsRedacted(t, run) }

func TestPostgresUnreachable(t *testing.T) { shoptest.PostgresUnreachable(t, run) }

func TestDatabaseMissing(t *testing.T) { shoptest.DatabaseMissing(t, run) }
