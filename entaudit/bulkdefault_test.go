package entaudit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/auditkit/auditkit/entaudit/internal/entest"
)

// A CreateBulk of creates that set no field reaches PostgreSQL as one INSERT ... DEFAULT VALUES,
// which inserts one row; ent gives the other creates the zero id. It succeeds as it does without
// auditing, and the one row it inserted is recorded, in and outside a transaction.
func TestCreateBulkDefaultValues(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []envOption
		inTx bool
	}{
		{"wrapped", nil, false},
		{"wrapped, in a transaction", nil, true},
		{"not wrapped", []envOption{unwrapped()}, false},
		{"no hook", []envOption{withoutHook()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opts...)
			ctx := context.Background()
			client := e.client
			var tx *entest.Tx
			if c.inTx {
				var err error
				if tx, err = e.client.Tx(ctx); err != nil {
					t.Fatal(err)
				}
				client = tx.Client()
			}
			notes, err := client.Note.CreateBulk(client.Note.Create(), client.Note.Create(), client.Note.Create()).Save(ctx)
			if err != nil {
				t.Fatalf("CreateBulk: %v", err)
			}
			if tx != nil {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			stored := e.client.Note.Query().AllX(ctx)
			if len(notes) != 3 || len(stored) != 1 || notes[0].ID != stored[0].ID {
				t.Fatalf("returned %v, stored %v", notes, stored)
			}
			rows := e.audit(t)
			if c.name == "no hook" {
				if len(rows) != 0 {
					t.Fatalf("rows = %v", rows)
				}
				return
			}
			if len(rows) != 1 || rows[0].Kind != "insert" || rows[0].ResourceID != strconv.Itoa(stored[0].ID) {
				t.Fatalf("rows = %v, want the insert of %d", rows, stored[0].ID)
			}
		})
	}
}
