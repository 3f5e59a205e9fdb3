package main

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestEraseCommand: erase without -yes shows the subject's key and records and changes nothing
// (exit 1); with -yes it destroys the key and records the erasure; missing flags are a usage
// error.
func TestEraseCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	key := make([]byte, core.MasterKeySize)
	_, _ = rand.Read(key)
	pii, err := core.NewPIICipher(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, PII: pii}),
		core.WriterOptions{FlushInterval: time.Millisecond})
	for i := range 3 {
		if err := w.Enqueue(&core.Record{Kind: core.KindCustom, Action: "seen", Tenant: core.Tenant{ID: "acme"},
			Actor: core.Actor{ID: "u1", Email: "ada@example.test"}, Metadata: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema, "-tenant", "acme", "-subject", "actor:u1"}
	usable := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_subject_keys WHERE wrapped_key IS NOT NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	code, stdout, stderr := runCmd(t, nil, append([]string{"erase"}, flags...)...)
	if code != exitFail || !strings.Contains(stdout, "would erase") || !strings.Contains(stdout, "1 keys") ||
		!strings.Contains(stdout, "3 records") || !strings.Contains(stderr, "-yes") || usable() != 1 {
		t.Fatalf("dry run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCmd(t, nil, append([]string{"erase", "-yes"}, flags...)...)
	if code != exitOK || !strings.Contains(stdout, "erased subject") || !strings.Contains(stdout, "3 records") || usable() != 0 {
		t.Fatalf("erase: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = $1 AND actor_id = 'auditkit-cli'`, core.SubjectErasedAction).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d erasure records (%v)", n, err)
	}
	if code, _, _ := runCmd(t, nil, "erase", "-database-url", pgtest.URL(), "-tenant", "acme"); code != exitUsage {
		t.Fatalf("without -subject: exit %d", code)
	}
}
