package core

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Checkpoint kinds.
const (
	// CheckpointKindCheckpoint vouches for a chain up to Seq: the record at Seq has RowHash.
	CheckpointKindCheckpoint = "checkpoint"
	// CheckpointKindTruncation records that retention removed a chain's records before Seq:
	// RowHash is the prev_hash of the record at Seq (the row_hash of the last record removed), so
	// that the chain still verifies from Seq on.
	CheckpointKindTruncation = "truncation"
)

// Checkpoint is a signed statement about one tenant's chain, stored in audit_checkpoints and
// handed to whoever keeps copies (a webhook). Anyone holding a checkpoint and the public key
// catches a rewrite of the chain up to Seq, even one with recomputed hashes by a database
// superuser, who does not hold the private key. docs/chain.md specifies the signed message.
type Checkpoint struct {
	TenantKey string    // coalesce(tenant_id, ''): the chain
	Kind      string    // CheckpointKindCheckpoint or CheckpointKindTruncation
	Seq       int64     // the position vouched for
	RowHash   [32]byte  // see Kind
	CreatedAt time.Time // when it was signed; kept to the microsecond
	// PrevCheckpoint is the Hash of the chain's previous checkpoint of any kind, nil for the
	// first: checkpoints form a chain of their own, so one removed or replayed is noticed.
	PrevCheckpoint []byte
	KeyID          string // KeyID of the signing key's public key
	Signature      []byte // Ed25519 over Message()
}

// checkpointMagic opens every checkpoint message; it names the format's version.
const checkpointMagic = "auditkit-checkpoint-v1\x00"

// Message returns the bytes that are signed: "auditkit-checkpoint-v1", a zero byte, then the
// fields tenant key, kind, seq (decimal), row hash (32 bytes), created_at (microseconds since the
// Unix epoch, decimal) and previous checkpoint hash (32 bytes, or NULL for the first), each framed
// as in the chain's canonical encoding: 0x00 for NULL, or 0x01, a big-endian uint32 length and the
// bytes.
func (c *Checkpoint) Message() []byte {
	fields := [][]byte{
		[]byte(c.TenantKey),
		[]byte(c.Kind),
		strconv.AppendInt(nil, c.Seq, 10),
		c.RowHash[:],
		strconv.AppendInt(nil, c.CreatedAt.UnixMicro(), 10),
		c.PrevCheckpoint,
	}
	return appendFields([]byte(checkpointMagic), fields...)
}

// Hash returns the checkpoint's own hash, which the next checkpoint of the chain names as
// PrevCheckpoint: SHA-256 of Message() followed by Signature.
func (c *Checkpoint) Hash() []byte {
	h := sha256.New()
	h.Write(c.Message())
	h.Write(c.Signature)
	return h.Sum(nil)
}

// KeyID names a public key: the hex of the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign fills KeyID and Signature with priv's. CreatedAt is truncated to the microsecond first,
// as it is stored.
func (c *Checkpoint) Sign(priv ed25519.PrivateKey) {
	c.CreatedAt = c.CreatedAt.Truncate(time.Microsecond)
	c.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	c.Signature = ed25519.Sign(priv, c.Message())
}

// ErrBadCheckpoint is wrapped by the errors VerifySignature returns.
var ErrBadCheckpoint = errors.New("auditkit: checkpoint does not verify")

// VerifySignature checks c's signature with pub, and that c names pub as its key.
func (c *Checkpoint) VerifySignature(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: the public key has %d bytes, want %d", ErrBadCheckpoint, len(pub), ed25519.PublicKeySize)
	}
	if id := KeyID(pub); c.KeyID != id {
		return fmt.Errorf("%w: signed with key %s, not %s", ErrBadCheckpoint, c.KeyID, id)
	}
	if c.Kind != CheckpointKindCheckpoint && c.Kind != CheckpointKindTruncation {
		return fmt.Errorf("%w: unknown kind %q", ErrBadCheckpoint, c.Kind)
	}
	if !ed25519.Verify(pub, c.Message(), c.Signature) {
		return fmt.Errorf("%w: bad signature on the %s of chain %q at seq %d", ErrBadCheckpoint, c.Kind, c.TenantKey, c.Seq)
	}
	return nil
}
