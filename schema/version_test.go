package schema_test

import (
	"testing"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/schema"
)

// TestSchemaVersionIsTheLatestMigration: core.Open checks the tables against core.SchemaVersion,
// so it must move with every migration added here.
func TestSchemaVersionIsTheLatestMigration(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	if latest := ms[len(ms)-1].Version; core.SchemaVersion != latest {
		t.Fatalf("core.SchemaVersion = %d, but the highest embedded migration is %d; update core.SchemaVersion", core.SchemaVersion, latest)
	}
}
