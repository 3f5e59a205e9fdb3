package store_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// writeChained writes n records of tenant, one at a time so that chain order is occurred_at
// order, the first one old.
func writeChained(t *testing.T, e *env, tenant string, n int, oldest time.Time) {
	t.Helper()
	for i := range n {
		e.write(t, &core.Record{ID: core.NewID(), OccurredAt: oldest.Add(time.Duration(i) * time.Hour),
			Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: tenant}})
	}
}

// firstLink returns the seq and prev_hash of the first remaining chained record of tenant.
func firstLink(t *testing.T, e *env, tenant string) (int64, []byte) {
	t.Helper()
	var seq int64
	var prev []byte
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT seq, prev_hash FROM audit_logs
		WHERE coalesce(tenant_id, '') = $1 AND seq IS NOT NULL ORDER BY seq LIMIT 1`, tenant).Scan(&seq, &prev); err != nil {
		t.Fatal(err)
	}
	return seq, prev
}

// TestCleanupAnchorsTheChain: Cleanup deleting the first records of a chain records, with the
// deletion, a signed truncation checkpoint at the first remaining record that names its
// prev_hash; a second cleanup that deletes more moves the anchor on, chained to the first.
func TestCleanupAnchorsTheChain(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store.Options{SigningKey: priv, CleanupBatchSize: 2})
	ctx := context.Background()
	base := time.Now().Add(-30 * 24 * time.Hour).UTC()
	writeChained(t, e, "acme", 6, base)
	writeChained(t, e, "globex", 2, base)

	// Records 1 to 3 of acme occurred before base+2h30m; batches of 2 delete them in two
	// transactions, each anchoring the chain.
	n, err := e.st.Cleanup(ctx, "acme", base.Add(150*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("Cleanup = %d, %v; want 3", n, err)
	}
	cps, err := core.LoadCheckpoints(ctx, e.db.Pool, e.db.Schema, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// A batch that leaves record 1 in place (the batches are not taken in chain order) anchors
	// nothing; the one that deletes it does.
	if len(cps) == 0 || len(cps) > 2 {
		t.Fatalf("truncation checkpoints = %+v; want one or two", cps)
	}
	seq, prev := firstLink(t, e, "acme")
	last := cps[len(cps)-1]
	if last.Kind != core.CheckpointKindTruncation || last.Seq != seq || seq != 4 || !bytes.Equal(last.RowHash[:], prev) {
		t.Errorf("truncation %+v; want seq %d naming prev_hash %x", last, seq, prev)
	}
	for _, cp := range cps {
		if err := cp.VerifySignature(pub); err != nil {
			t.Error(err)
		}
	}

	// Deleting everything anchors the chain after its head, where the next record links.
	if _, err := e.st.Cleanup(ctx, "acme", base.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var headSeq int64
	var headHash []byte
	if err := e.db.Pool.QueryRow(ctx, `SELECT seq, row_hash FROM audit_chain_heads WHERE tenant_key = 'acme'`).Scan(&headSeq, &headHash); err != nil {
		t.Fatal(err)
	}
	cps, _ = core.LoadCheckpoints(ctx, e.db.Pool, e.db.Schema, "acme")
	end := cps[len(cps)-1]
	if end.Seq != headSeq+1 || !bytes.Equal(end.RowHash[:], headHash) {
		t.Errorf("after deleting the whole chain: %+v; want seq %d naming the head's hash", end, headSeq+1)
	}
	if err := end.VerifySignature(pub); err != nil || !bytes.Equal(end.PrevCheckpoint, last.Hash()) {
		t.Errorf("the last truncation does not verify (%v) or does not name the one before it", err)
	}
	// globex was not touched.
	if other, _ := core.LoadCheckpoints(ctx, e.db.Pool, e.db.Schema, "globex"); len(other) != 0 {
		t.Errorf("globex got checkpoints: %+v", other)
	}
}

// TestRetentionWithoutKeyDeletes: without a signing key chained records are still deleted, and
// no checkpoint is recorded.
func TestRetentionWithoutKeyDeletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	ctx := context.Background()
	base := time.Now().Add(-30 * 24 * time.Hour).UTC()
	writeChained(t, e, "acme", 3, base)
	reports, err := e.st.ApplyRetention(ctx, store.RetentionPolicy{MaxAge: 24 * time.Hour})
	if err != nil || len(reports) != 1 || reports[0].Deleted != 3 {
		t.Fatalf("ApplyRetention = %+v, %v", reports, err)
	}
	var n int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d checkpoints, %v; want none", n, err)
	}
}
