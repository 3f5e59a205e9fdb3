package core

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// More kinds of VerifyProblem, found by VerifyExport.
const (
	// ProblemManifestMismatch: the export file does not match its manifest (SHA-256, rows,
	// range, first or last hash).
	ProblemManifestMismatch = "manifest_mismatch"
	// ProblemManifestSignature: the manifest's signature does not verify with the public key.
	ProblemManifestSignature = "manifest_signature"
	// ProblemMalformed: a record (a line of an export) cannot be read as a link of the chain.
	ProblemMalformed = "malformed"
)

// ManifestVersion is the version of ExportManifest this release writes.
const ManifestVersion = 1

// manifestMagic opens every manifest message; it names the format's version.
const manifestMagic = "auditkit-export-manifest-v1\x00"

// ExportManifest describes a chain export (store.FormatChain) so that whoever holds the file, the
// manifest and the public key can check, without the database, that the file is the chain as
// the signer exported it: its SHA-256, range and end hashes, and the latest checkpoint it covers.
type ExportManifest struct {
	Version       int    `json:"version"`
	TenantKey     string `json:"tenant_key"`
	FromSeq       int64  `json:"from_seq"`        // seq of the first record (0 for an empty file)
	ToSeq         int64  `json:"to_seq"`          // seq of the last record
	FirstPrevHash string `json:"first_prev_hash"` // prev_hash of the first record, hex
	LastRowHash   string `json:"last_row_hash"`   // row_hash of the last record, hex
	FileSHA256    string `json:"file_sha256"`     // of the export file's bytes, hex
	Rows          int64  `json:"rows"`
	// Checkpoint is the chain's latest checkpoint at or before ToSeq, if any: signed by the
	// writer's key, it ties the export to what the chain was when the checkpoint was made.
	Checkpoint *Checkpoint `json:"-"`
	KeyID      string      `json:"key_id"`    // KeyID of the signing key
	Signature  []byte      `json:"signature"` // Ed25519 over Message(), base64 in JSON
}

type checkpointJSON struct {
	TenantKey      string    `json:"tenant_key"`
	Kind           string    `json:"kind"`
	Seq            int64     `json:"seq"`
	RowHash        string    `json:"row_hash"`
	CreatedAt      time.Time `json:"created_at"`
	PrevCheckpoint string    `json:"prev_checkpoint,omitempty"`
	KeyID          string    `json:"key_id"`
	Signature      string    `json:"signature"`
}

// MarshalJSON writes the manifest, its checkpoint's hashes and signature in hex.
func (m ExportManifest) MarshalJSON() ([]byte, error) {
	type plain ExportManifest // without the methods
	out := struct {
		plain
		Checkpoint *checkpointJSON `json:"checkpoint,omitempty"`
	}{plain: plain(m)}
	if cp := m.Checkpoint; cp != nil {
		out.Checkpoint = &checkpointJSON{cp.TenantKey, cp.Kind, cp.Seq, hex.EncodeToString(cp.RowHash[:]), cp.CreatedAt.UTC(),
			hex.EncodeToString(cp.PrevCheckpoint), cp.KeyID, hex.EncodeToString(cp.Signature)}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *ExportManifest) UnmarshalJSON(b []byte) error {
	type plain ExportManifest
	var in struct {
		plain
		Checkpoint *checkpointJSON `json:"checkpoint"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*m = ExportManifest(in.plain)
	if c := in.Checkpoint; c != nil {
		cp := &Checkpoint{TenantKey: c.TenantKey, Kind: c.Kind, Seq: c.Seq, CreatedAt: c.CreatedAt, KeyID: c.KeyID}
		rh, err1 := hex.DecodeString(c.RowHash)
		prev, err2 := hex.DecodeString(c.PrevCheckpoint)
		sig, err3 := hex.DecodeString(c.Signature)
		if err := errors.Join(err1, err2, err3); err != nil || len(rh) != 32 {
			return fmt.Errorf("manifest checkpoint: bad hex or hash length: %v", err)
		}
		copy(cp.RowHash[:], rh)
		if len(prev) > 0 {
			cp.PrevCheckpoint = prev
		}
		cp.Signature = sig
		m.Checkpoint = cp
	}
	return nil
}

// Message returns the bytes that are signed: "auditkit-export-manifest-v1", a zero byte, then the
// fields version, tenant key, from_seq, to_seq (decimal), first_prev_hash, last_row_hash,
// file_sha256 (32 raw bytes each), rows (decimal), the checkpoint's Hash (or NULL) and key_id,
// each framed as in the chain's canonical encoding: 0x00 for NULL, or 0x01, a big-endian uint32
// length and the bytes. It fails when a hash is not 64 hex digits.
func (m *ExportManifest) Message() ([]byte, error) {
	var hashes [3][]byte
	for i, h := range []string{m.FirstPrevHash, m.LastRowHash, m.FileSHA256} {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("auditkit: manifest hash %q is not 64 hex digits", h)
		}
		hashes[i] = b
	}
	var cp []byte
	if m.Checkpoint != nil {
		cp = m.Checkpoint.Hash()
	}
	fields := [][]byte{
		strconv.AppendInt(nil, int64(m.Version), 10), []byte(m.TenantKey),
		strconv.AppendInt(nil, m.FromSeq, 10), strconv.AppendInt(nil, m.ToSeq, 10),
		hashes[0], hashes[1], hashes[2], strconv.AppendInt(nil, m.Rows, 10), cp, []byte(m.KeyID),
	}
	return appendFields([]byte(manifestMagic), fields...), nil
}

// Sign fills KeyID and Signature with priv's.
func (m *ExportManifest) Sign(priv ed25519.PrivateKey) error {
	m.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	msg, err := m.Message()
	if err != nil {
		return err
	}
	m.Signature = ed25519.Sign(priv, msg)
	return nil
}

// VerifySignature checks m's signature with pub, and that m names pub as its key.
func (m *ExportManifest) VerifySignature(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("the public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if id := KeyID(pub); m.KeyID != id {
		return fmt.Errorf("signed with key %q, not %s", m.KeyID, id)
	}
	msg, err := m.Message()
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, m.Signature) {
		return errors.New("bad signature")
	}
	return nil
}

// NewExportManifest reads a chain export of tenantKey and returns its unsigned manifest: the
// file's SHA-256, rows, range and end hashes, with cp as its checkpoint. It does not judge the
// chain (VerifyExport does); it fails only when a line is not a chain record.
func NewExportManifest(r io.Reader, tenantKey string, cp *Checkpoint) (*ExportManifest, error) {
	m := &ExportManifest{Version: ManifestVersion, TenantKey: tenantKey, Checkpoint: cp}
	sum := sha256.New()
	var first, last [32]byte
	err := readChainExport(io.TeeReader(r, sum), func(line int, rec *exportRecord) error {
		if rec.err != nil {
			return fmt.Errorf("line %d: %w", line, rec.err)
		}
		if m.Rows == 0 {
			m.FromSeq, first = rec.seq, rec.prev
		}
		m.ToSeq, last = rec.seq, rec.stored
		m.Rows++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export manifest: %w", err)
	}
	m.FirstPrevHash, m.LastRowHash = hex.EncodeToString(first[:]), hex.EncodeToString(last[:])
	m.FileSHA256 = hex.EncodeToString(sum.Sum(nil))
	return m, nil
}

// ManifestCheckpoint returns the latest checkpoint of tenantKey's chain at or before seq (the
// last seq of an export), or nil when there is none, from audit_checkpoints in schema ("" =
// public).
func ManifestCheckpoint(ctx context.Context, db *pgxpool.Pool, schema, tenantKey string, seq int64) (*Checkpoint, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	var cp Checkpoint
	var rh []byte
	err := db.QueryRow(ctx, `SELECT tenant_key, kind, seq, row_hash, created_at, prev_checkpoint, key_id, signature
		FROM `+pgx.Identifier{schema, "audit_checkpoints"}.Sanitize()+`
		WHERE tenant_key = $1 AND seq <= $2 AND kind = 'checkpoint' ORDER BY seq DESC, created_at DESC LIMIT 1`, tenantKey, seq).
		Scan(&cp.TenantKey, &cp.Kind, &cp.Seq, &rh, &cp.CreatedAt, &cp.PrevCheckpoint, &cp.KeyID, &cp.Signature)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("manifest checkpoint: %w", err)
	}
	copy(cp.RowHash[:], rh)
	cp.CreatedAt = cp.CreatedAt.UTC()
	return &cp, nil
}

// VerifyExport checks a chain export (store.FormatChain) against its manifest without the
// database: every record's hash and link (as Verify does), the file's SHA-256, rows, range and end
// hashes against the manifest, and with pub the manifest's signature and its checkpoint's, and
// that the checkpoint's record has the hash it vouches for. The error is for a file that cannot be
// read; problems with its contents are in the report.
func VerifyExport(r io.Reader, m *ExportManifest, pub ed25519.PublicKey) (*VerifyReport, error) {
	if m == nil {
		return nil, errors.New("verify export: no manifest")
	}
	c := newChainChecker(m.TenantKey)
	if m.Version != ManifestVersion {
		c.add(0, ProblemManifestMismatch, "manifest version %d, this release reads %d", m.Version, ManifestVersion)
	}
	if pub != nil {
		if err := m.VerifySignature(pub); err != nil {
			c.add(0, ProblemManifestSignature, "the manifest does not verify: %v", err)
		}
	}
	var cps []Checkpoint
	if cp := m.Checkpoint; cp != nil {
		c.rep.Checkpoints++
		switch {
		case cp.TenantKey != m.TenantKey:
			c.add(cp.Seq, ProblemCheckpointMismatch, "the manifest's checkpoint is of chain %q, not %q", cp.TenantKey, m.TenantKey)
		case pub != nil && cp.VerifySignature(pub) != nil:
			c.add(cp.Seq, ProblemCheckpointSignature, "the manifest's checkpoint does not verify: %v", cp.VerifySignature(pub))
		case cp.Seq > m.ToSeq || cp.Seq < m.FromSeq-1:
			c.add(cp.Seq, ProblemCheckpointMismatch, "the manifest's checkpoint at seq %d is outside the export (%d to %d)", cp.Seq, m.FromSeq, m.ToSeq)
		default:
			cps = append(cps, *cp)
		}
	}
	c.start = m.FromSeq
	c.setStart(m.FromSeq, cps)
	c.setCheckpoints(cps, m.ToSeq)

	sum := sha256.New()
	err := readChainExport(io.TeeReader(r, sum), func(line int, rec *exportRecord) error {
		if rec.err != nil {
			c.rep.Rows++
			c.flushPending()
			c.add(rec.seq, ProblemMalformed, "line %d: %v", line, rec.err)
			return nil
		}
		if rec.key != m.TenantKey {
			c.add(rec.seq, ProblemManifestMismatch, "line %d is a record of chain %q, not %q", line, rec.key, m.TenantKey)
		}
		if c.last.valid && rec.seq < c.last.seq {
			c.rep.Rows++
			c.flushPending()
			c.add(rec.seq, ProblemReordered, "line %d has seq %d, after seq %d: the records are out of order", line, rec.seq, c.last.seq)
			return nil
		}
		c.row(&rec.fields, &rec.stored)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify export: %w", err)
	}
	c.finish(false)
	if got := hex.EncodeToString(sum.Sum(nil)); got != m.FileSHA256 {
		c.add(0, ProblemManifestMismatch, "the file's SHA-256 is %s, the manifest says %s", got, m.FileSHA256)
	}
	rep := &c.rep
	if rep.Rows != m.Rows {
		c.add(rep.To, ProblemManifestMismatch, "the file has %d records, the manifest says %d", rep.Rows, m.Rows)
	}
	if rep.Rows > 0 {
		if rep.To < m.ToSeq {
			c.add(rep.To+1, ProblemTruncatedTail, "the manifest says the export ends at seq %d, the file at seq %d", m.ToSeq, rep.To)
		} else if rep.To != m.ToSeq || rep.From != m.FromSeq {
			c.add(rep.To, ProblemManifestMismatch, "the file holds seq %d to %d, the manifest says %d to %d", rep.From, rep.To, m.FromSeq, m.ToSeq)
		}
		if h := hex.EncodeToString(rep.FirstPrevHash[:]); h != m.FirstPrevHash {
			c.add(rep.From, ProblemManifestMismatch, "the first record's prev_hash is %s, the manifest says %s", h, m.FirstPrevHash)
		}
		if h := hex.EncodeToString(rep.LastRowHash[:]); h != m.LastRowHash {
			c.add(rep.To, ProblemManifestMismatch, "the last record's row_hash is %s, the manifest says %s", h, m.LastRowHash)
		}
	}
	return c.report(), nil
}

// exportRecord is one line of a chain export.
type exportRecord struct {
	seq    int64
	key    string
	fields ChainFields
	prev   [32]byte
	stored [32]byte
	err    error // the line is not a record; seq is what could be read
}

// exportLine is the JSON form of a line of store.FormatChain.
type exportLine struct {
	Seq     int64     `json:"seq"`
	Fields  []*string `json:"fields"`
	RowHash string    `json:"row_hash"`
}

// readChainExport calls fn with each line of a chain export; a line that cannot be read as a
// record is passed with err set. An error reading r, or one fn returns, ends it.
func readChainExport(r io.Reader, fn func(line int, rec *exportRecord) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 256<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var rec exportRecord
		var l exportLine
		if err := json.Unmarshal(b, &l); err != nil {
			rec.err = err
		} else {
			rec.seq = l.Seq
			rec.err = parseExportLine(&l, &rec)
		}
		if err := fn(line, &rec); err != nil {
			return err
		}
	}
	return sc.Err()
}

func parseExportLine(l *exportLine, rec *exportRecord) error {
	if len(l.Fields) != ChainFieldCount && len(l.Fields) != ChainFieldCountV2 {
		return fmt.Errorf("%d fields, want %d (or %d for a record of version 1 or 2)", len(l.Fields), ChainFieldCount, ChainFieldCountV2)
	}
	for i, v := range l.Fields {
		if v != nil {
			rec.fields[i] = []byte(*v)
		}
	}
	if rec.fields.Len() != len(l.Fields) {
		return fmt.Errorf("%d fields for a record of version %q", len(l.Fields), rec.fields[chainFieldVersion])
	}
	if rec.fields[0] == nil || rec.fields[1] == nil || rec.fields[2] == nil {
		return errors.New("tenant key, seq or prev_hash is null")
	}
	rec.key = string(rec.fields[0])
	if string(rec.fields[1]) != strconv.FormatInt(l.Seq, 10) {
		return fmt.Errorf("seq %d but field 2 is %q", l.Seq, rec.fields[1])
	}
	prev, err := hex.DecodeString(string(rec.fields[2]))
	if err != nil || len(prev) != 32 {
		return errors.New("prev_hash (field 3) is not 64 hex digits")
	}
	rec.fields[2] = prev
	copy(rec.prev[:], prev)
	h, err := hex.DecodeString(l.RowHash)
	if err != nil || len(h) != 32 {
		return errors.New("row_hash is not 64 hex digits")
	}
	copy(rec.stored[:], h)
	return nil
}
