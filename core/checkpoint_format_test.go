package core_test

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

func TestCheckpointSignAndVerify(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cp := core.Checkpoint{TenantKey: "acme", Kind: core.CheckpointKindCheckpoint, Seq: 42,
		RowHash: [32]byte{1, 2, 3}, CreatedAt: time.Date(2026, 12, 5, 10, 0, 0, 123456789, time.UTC)}
	cp.Sign(priv)
	if err := cp.VerifySignature(pub); err != nil {
		t.Fatal(err)
	}
	if cp.CreatedAt.Nanosecond() != 123456000 {
		t.Fatalf("CreatedAt not truncated to the microsecond: %v", cp.CreatedAt)
	}
	first := cp.Hash()
	for name, tamper := range map[string]func(c *core.Checkpoint){
		"seq":     func(c *core.Checkpoint) { c.Seq++ },
		"hash":    func(c *core.Checkpoint) { c.RowHash[0] ^= 1 },
		"tenant":  func(c *core.Checkpoint) { c.TenantKey = "acme2" },
		"kind":    func(c *core.Checkpoint) { c.Kind = core.CheckpointKindTruncation },
		"time":    func(c *core.Checkpoint) { c.CreatedAt = c.CreatedAt.Add(time.Microsecond) },
		"prev":    func(c *core.Checkpoint) { c.PrevCheckpoint = first },
		"unknown": func(c *core.Checkpoint) { c.Kind = "other" },
	} {
		c := cp
		tamper(&c)
		if err := c.VerifySignature(pub); !errors.Is(err, core.ErrBadCheckpoint) {
			t.Errorf("%s changed: VerifySignature = %v", name, err)
		}
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if err := cp.VerifySignature(other); !errors.Is(err, core.ErrBadCheckpoint) {
		t.Errorf("another key: %v", err)
	}
	// The next checkpoint names this one; the message changes with it.
	next := core.Checkpoint{TenantKey: "acme", Kind: core.CheckpointKindCheckpoint, Seq: 50, CreatedAt: cp.CreatedAt, PrevCheckpoint: first}
	next.Sign(priv)
	if err := next.VerifySignature(pub); err != nil {
		t.Fatal(err)
	}
	if string(next.Message()) == string((&core.Checkpoint{TenantKey: "acme", Kind: core.CheckpointKindCheckpoint, Seq: 50, CreatedAt: cp.CreatedAt}).Message()) {
		t.Fatal("PrevCheckpoint is not part of the message")
	}
}
