package entaudit_test

import (
	"testing"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestOnPostgreSQL18 runs this package's tests again on PostgreSQL 18 or later, where an update
// returns its rows' before images itself (capture.go, returnsOld) instead of the hook reading them
// first; the tests check the plan that the server they run on gets (see
// pgtest.RerunOnPostgreSQL18).
func TestOnPostgreSQL18(t *testing.T) {
	pgtest.RerunOnPostgreSQL18(t)
}
