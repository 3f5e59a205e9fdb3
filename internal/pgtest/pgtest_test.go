package pgtest_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// closedPort returns a loopback address nothing listens on while the test runs.
func closedPort(t *testing.T) string {
	t.Helper()
	return testnet.ClosedAddr(t)
}

func TestCreateWithoutServerSaysHowToStartIt(t *testing.T) {
	t.Setenv(pgtest.EnvURL, "postgres://postgres@"+closedPort(t)+"/test?sslmode=disable&connect_timeout=5")
	db, err := pgtest.Create(context.Background(), "t_noserver", false)
	if err == nil {
		_ = db.Drop(context.Background())
		t.Fatal("Create succeeded without a server")
	}
	if !strings.Contains(err.Error(), pgtest.Hint) {
		t.Fatalf("error does not say how to start PostgreSQL: %v", err)
	}
}

func TestCreateWithoutDatabaseSaysHowToCreateIt(t *testing.T) {
	// The server of the test database, another database name.
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/auditkit_no_such_db"
	t.Setenv(pgtest.EnvURL, u.String())
	db, err := pgtest.Create(context.Background(), "t_nodb", false)
	if err == nil {
		_ = db.Drop(context.Background())
		t.Fatal("Create succeeded in a database that does not exist")
	}
	msg := err.Error()
	if !strings.Contains(msg, "create it with: createdb -h ") || !strings.Contains(msg, " auditkit_no_such_db") {
		t.Fatalf("error does not say how to create the database: %v", err)
	}
	if strings.Contains(msg, pgtest.Hint) {
		t.Fatalf("error tells to start a server that is running: %v", err)
	}
}
