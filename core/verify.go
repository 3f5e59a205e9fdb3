package core

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The kinds of VerifyProblem.
const (
	// ProblemHashMismatch: a record's row_hash is not the SHA-256 of its canonical encoding (a
	// field was edited after it was written).
	ProblemHashMismatch = "hash_mismatch"
	// ProblemBrokenLink: a record's prev_hash is not the row_hash of the record before it.
	ProblemBrokenLink = "broken_link"
	// ProblemGap: records are missing inside the range verified.
	ProblemGap = "gap"
	// ProblemDuplicate: two records carry the same seq.
	ProblemDuplicate = "duplicate"
	// ProblemReordered: the records at seq and seq+1 are each other's (swapped contents or seqs).
	ProblemReordered = "reordered"
	// ProblemTruncatedTail: audit_chain_heads says the chain goes further than its records do.
	ProblemTruncatedTail = "truncated_tail"
	// ProblemCheckpointMismatch: a checkpoint vouches for a hash the chain does not have at its seq.
	ProblemCheckpointMismatch = "checkpoint_mismatch"
	// ProblemCheckpointSignature: a checkpoint's signature does not verify with the public key.
	ProblemCheckpointSignature = "checkpoint_signature"
	// ProblemCheckpointChain: a checkpoint is missing, replayed or out of order (its
	// PrevCheckpoint is not the hash of the checkpoint before it).
	ProblemCheckpointChain = "checkpoint_chain"
	// ProblemHeadMismatch: the last record does not match audit_chain_heads.
	ProblemHeadMismatch = "head_mismatch"
)

// MaxVerifyProblems bounds VerifyReport.Problems; the first problem of each kind is kept beyond it.
const MaxVerifyProblems = 100

// verifyProgressEvery is how many rows pass between two calls of VerifyOptions.Progress.
const verifyProgressEvery = 100_000

// VerifyOptions configure Verify. The zero value verifies a whole chain in the public schema
// without checking checkpoints.
type VerifyOptions struct {
	Schema string // schema holding the audit tables; "" = public
	// FromSeq and ToSeq bound the records verified; 0 = from the start (or the latest
	// truncation) and to the head.
	FromSeq, ToSeq int64
	// PublicKey, when set, has every checkpoint of the chain checked: its signature and key, the
	// chain of checkpoints (each names the hash of the one before it), and the record it vouches
	// for. Without it, audit_checkpoints is only read to find where retention truncated the chain.
	PublicKey ed25519.PublicKey
	// KnownCheckpoints are checkpoints held outside the database (a webhook's copies): each must
	// still be in audit_checkpoints, and is checked against the chain like those. Removing the
	// newest checkpoint from the database is noticed only this way.
	KnownCheckpoints []Checkpoint
	// Progress is called with the number of rows read every 100,000 rows, and at the end.
	Progress func(rows int64)
	// BeforeRead, when set, runs first in Verify's read-only transaction, for example to set the
	// row-level security settings that let the session read the chain.
	BeforeRead func(ctx context.Context, tx pgx.Tx) error
}

// VerifyProblem is one finding of Verify or VerifyExport.
type VerifyProblem struct {
	Seq    int64  `json:"seq"`    // where it is seen
	Kind   string `json:"kind"`   // one of the Problem constants
	Reason string `json:"reason"` // for a person
}

// VerifyReport is what Verify or VerifyExport found.
type VerifyReport struct {
	TenantKey string // coalesce(tenant_id, ''): the chain
	From, To  int64  // seq of the first and last record read (0 when none)
	Rows      int64  // records read
	// FirstPrevHash is the prev_hash of the first record read and LastRowHash the row_hash of the
	// last: the range is vouched for by whoever trusts LastRowHash.
	FirstPrevHash, LastRowHash [32]byte
	Checkpoints                int // checkpoints checked
	// Problems holds the findings in the order they were found, at most MaxVerifyProblems plus the
	// first of each kind seen after that; MoreProblems counts those left out.
	Problems     []VerifyProblem
	MoreProblems int64
	OK           bool // no problem found
}

// MarshalJSON writes the report with snake_case keys and the hashes in lowercase hex.
func (r VerifyReport) MarshalJSON() ([]byte, error) {
	problems := r.Problems
	if problems == nil {
		problems = []VerifyProblem{}
	}
	return json.Marshal(struct {
		TenantKey     string          `json:"tenant_key"`
		From          int64           `json:"from_seq"`
		To            int64           `json:"to_seq"`
		Rows          int64           `json:"rows"`
		FirstPrevHash string          `json:"first_prev_hash"`
		LastRowHash   string          `json:"last_row_hash"`
		Checkpoints   int             `json:"checkpoints"`
		OK            bool            `json:"ok"`
		Problems      []VerifyProblem `json:"problems"`
		MoreProblems  int64           `json:"more_problems,omitempty"`
	}{r.TenantKey, r.From, r.To, r.Rows, hex.EncodeToString(r.FirstPrevHash[:]), hex.EncodeToString(r.LastRowHash[:]),
		r.Checkpoints, r.OK, problems, r.MoreProblems})
}

// ErrVerifyOptions is wrapped by the errors Verify returns for options it cannot use.
var ErrVerifyOptions = errors.New("auditkit: invalid verify options")

// Verify checks the chain of tenantKey (coalesce(tenant_id, ”): "" is the chain of records
// without a tenant) as docs/chain.md specifies: each record's row_hash against its contents, each
// prev_hash against the record before, the seqs without gap or duplicate, the last record against
// audit_chain_heads, and with opts.PublicKey every checkpoint of the chain. It reads one snapshot
// (a read-only repeatable-read transaction) and streams the records: memory does not grow with
// the chain.
//
// Problems with the chain are in the report (OK is false); the error is for what kept Verify from
// reading it.
func Verify(ctx context.Context, db *pgxpool.Pool, tenantKey string, opts VerifyOptions) (*VerifyReport, error) {
	if opts.FromSeq < 0 || opts.ToSeq < 0 || (opts.ToSeq > 0 && opts.ToSeq < opts.FromSeq) {
		return nil, fmt.Errorf("%w: seq range %d to %d", ErrVerifyOptions, opts.FromSeq, opts.ToSeq)
	}
	if opts.PublicKey != nil && len(opts.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: the public key has %d bytes, want %d", ErrVerifyOptions, len(opts.PublicKey), ed25519.PublicKeySize)
	}
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	q := pgx.Identifier{schema}.Sanitize() + "."
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if opts.BeforeRead != nil {
		if err := opts.BeforeRead(ctx, tx); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}

	var head struct {
		seq  int64
		hash []byte
		ok   bool
	}
	err = tx.QueryRow(ctx, `SELECT seq, row_hash FROM `+q+`audit_chain_heads WHERE tenant_key = $1`, tenantKey).Scan(&head.seq, &head.hash)
	switch {
	case err == nil:
		head.ok = true
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("verify: reading the chain head: %w", err)
	}
	cps, err := loadVerifyCheckpoints(ctx, tx, q, tenantKey)
	if err != nil {
		return nil, err
	}

	c := newChainChecker(tenantKey)
	if opts.PublicKey != nil || len(opts.KnownCheckpoints) > 0 {
		cps = c.checkCheckpoints(cps, opts.PublicKey, opts.KnownCheckpoints)
	} else {
		cps = truncationsOnly(cps)
	}
	c.setStart(opts.FromSeq, cps)
	c.setCheckpoints(cps, opts.ToSeq)

	sql := ChainSQL + ` FROM ` + q + `audit_logs WHERE coalesce(tenant_id, '') = $1 AND seq IS NOT NULL AND seq >= $2`
	args := []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}, tenantKey, c.start}
	if opts.ToSeq > 0 {
		sql += ` AND seq <= $3`
		args = append(args, opts.ToSeq)
	}
	rows, err := tx.Query(ctx, sql+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var f ChainFields
	var stored [32]byte
	for rows.Next() {
		vals := rows.RawValues()
		if len(vals) != ChainFieldCount+1 {
			rows.Close()
			return nil, fmt.Errorf("verify: got %d columns, want %d", len(vals), ChainFieldCount+1)
		}
		copy(f[:], vals)
		if len(vals[ChainFieldCount]) != 32 || len(f[2]) != 32 {
			c.malformed(&f, "row_hash or prev_hash is not 32 bytes")
			continue
		}
		copy(stored[:], vals[ChainFieldCount])
		c.row(&f, &stored)
		if f.Len() < ChainFieldCount && (f[32] != nil || f[33] != nil) {
			// Its hash does not cover these columns: whoever wrote them, the row was changed.
			seq, _ := parseSeq(f[1])
			c.add(seq, ProblemMalformed, "the record at seq %s is of version %s but carries trace context, which its hash does not cover",
				f[1], f[chainFieldVersion])
		}
		if opts.Progress != nil && c.rep.Rows%verifyProgressEvery == 0 {
			opts.Progress(c.rep.Rows)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: after %d rows: %w", c.rep.Rows, err)
	}
	c.finish(opts.ToSeq == 0)
	c.checkHead(head.ok, head.seq, head.hash, opts.ToSeq)
	if opts.Progress != nil {
		opts.Progress(c.rep.Rows)
	}
	return c.report(), nil
}

// ChainTenants returns the tenant keys that have a chain in schema ("" = public): those with a
// head in audit_chain_heads or chained records in audit_logs, in byte order. Finding the latter
// takes one index probe per tenant, not a scan of the table.
func ChainTenants(ctx context.Context, db *pgxpool.Pool, schema string) ([]string, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	q := pgx.Identifier{schema}.Sanitize() + "."
	rows, err := db.Query(ctx, `WITH RECURSIVE t(k) AS (
		SELECT min(coalesce(tenant_id, '')) FROM `+q+`audit_logs WHERE seq IS NOT NULL
		UNION ALL
		SELECT (SELECT min(coalesce(tenant_id, '')) FROM `+q+`audit_logs
		        WHERE seq IS NOT NULL AND coalesce(tenant_id, '') > t.k)
		FROM t WHERE t.k IS NOT NULL)
	SELECT k FROM (SELECT k FROM t WHERE k IS NOT NULL UNION SELECT tenant_key FROM `+q+`audit_chain_heads) u
	ORDER BY k COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("chain tenants: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("chain tenants: %w", err)
	}
	return keys, nil
}

// loadVerifyCheckpoints reads the checkpoints of a chain in the order they were created.
func loadVerifyCheckpoints(ctx context.Context, tx pgx.Tx, q, tenantKey string) ([]Checkpoint, error) {
	rows, err := tx.Query(ctx, `SELECT tenant_key, kind, seq, row_hash, created_at, prev_checkpoint, key_id, signature
		FROM `+q+`audit_checkpoints WHERE tenant_key = $1 ORDER BY created_at, seq`, tenantKey)
	if err != nil {
		return nil, fmt.Errorf("verify: reading checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var cp Checkpoint
		var rh []byte
		if err := rows.Scan(&cp.TenantKey, &cp.Kind, &cp.Seq, &rh, &cp.CreatedAt, &cp.PrevCheckpoint, &cp.KeyID, &cp.Signature); err != nil {
			return nil, fmt.Errorf("verify: reading checkpoints: %w", err)
		}
		copy(cp.RowHash[:], rh) // a wrong length fails the signature
		cp.CreatedAt = cp.CreatedAt.UTC()
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: reading checkpoints: %w", err)
	}
	return out, nil
}

func truncationsOnly(cps []Checkpoint) []Checkpoint {
	var out []Checkpoint
	for _, cp := range cps {
		if cp.Kind == CheckpointKindTruncation {
			out = append(out, cp)
		}
	}
	slices.SortStableFunc(out, func(a, b Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// chainChecker checks records one at a time, in seq order; Verify and VerifyExport feed it.
type chainChecker struct {
	rep      VerifyReport
	seen     map[string]bool // kinds reported
	buf      []byte          // encoding buffer, reused
	seqBuf   [24]byte
	start    int64     // the first seq expected
	startRef *[32]byte // the prev_hash the record at start must have, when known
	startBy  string    // what startRef comes from, for the reason
	startErr string    // the kind of problem when it does not
	// startTruncation says the start is a truncation's, checked through startRef.
	startTruncation bool

	cps []Checkpoint // to check against records, in seq order
	cpi int

	last, beforeLast rowState // the last two records read at distinct seqs
	dupHashes        [][32]byte
	pending          []VerifyProblem // the last record's problems, held back one record
}

// rowState is what the checker remembers of a record.
type rowState struct {
	seq              int64
	prev, stored     [32]byte
	hashOK, linkOK   bool
	asNext, asBefore bool // its hash matches its contents with seq+1 or seq-1
	// movedNext is the hash of its contents at seq+1 after its own row_hash, movedBefore at
	// seq-1 after the prev_hash of the record there (only computed when its hash is wrong).
	movedNext, movedBefore [32]byte
	valid                  bool
}

func newChainChecker(tenantKey string) *chainChecker {
	c := &chainChecker{seen: map[string]bool{}, buf: make([]byte, 0, 1024), start: 1}
	c.rep.TenantKey = tenantKey
	c.startRef, c.startBy, c.startErr = &zeroChainHash, "the start of the chain (32 zero bytes)", ProblemBrokenLink
	return c
}

var zeroChainHash [32]byte

func (c *chainChecker) add(seq int64, kind, format string, args ...any) {
	p := VerifyProblem{Seq: seq, Kind: kind, Reason: fmt.Sprintf(format, args...)}
	if len(c.rep.Problems) >= MaxVerifyProblems && c.seen[kind] {
		c.rep.MoreProblems++
		return
	}
	c.seen[kind] = true
	c.rep.Problems = append(c.rep.Problems, p)
}

func (c *chainChecker) flushPending() {
	for _, p := range c.pending {
		c.add(p.Seq, p.Kind, "%s", p.Reason)
	}
	c.pending = c.pending[:0]
}

func short(h []byte) string {
	if len(h) > 8 {
		h = h[:8]
	}
	return hex.EncodeToString(h) + "…"
}

// checkCheckpoints checks each checkpoint's signature (with pub, when set) and the chain of
// checkpoints, in the order they were created (cps come in that order), then the known ones, and
// returns those to check against the records, in seq order: the ones whose signature verified.
func (c *chainChecker) checkCheckpoints(cps []Checkpoint, pub ed25519.PublicKey, known []Checkpoint) []Checkpoint {
	var good []Checkpoint
	truncated := false
	for i := range cps {
		cp := &cps[i]
		c.rep.Checkpoints++
		if pub != nil {
			if err := cp.VerifySignature(pub); err != nil {
				c.add(cp.Seq, ProblemCheckpointSignature, "the %s at seq %d (created %s) does not verify: %v", cp.Kind, cp.Seq, cp.CreatedAt.Format(time.RFC3339Nano), err)
				for j := range cps {
					if j != i && string(cps[j].Signature) == string(cp.Signature) {
						c.add(cp.Seq, ProblemCheckpointChain, "the %s at seq %d is a replayed copy of the %s at seq %d", cp.Kind, cp.Seq, cps[j].Kind, cps[j].Seq)
						break
					}
				}
				continue
			}
		}
		truncated = truncated || cp.Kind == CheckpointKindTruncation
		good = append(good, *cp)
	}
	hashes := make([][]byte, len(good))
	for i := range good {
		hashes[i] = good[i].Hash()
	}
	for i := range good {
		cp := &good[i]
		switch {
		case i == 0 && cp.PrevCheckpoint != nil && !truncated:
			// With a truncation, retention may have removed the checkpoints before it.
			c.add(cp.Seq, ProblemCheckpointChain, "the first %s (seq %d) names a previous checkpoint %s that is not in audit_checkpoints: one was removed", cp.Kind, cp.Seq, short(cp.PrevCheckpoint))
		case i > 0 && string(cp.PrevCheckpoint) != string(hashes[i-1]):
			reason := fmt.Sprintf("the %s at seq %d does not follow the %s at seq %d", cp.Kind, cp.Seq, good[i-1].Kind, good[i-1].Seq)
			switch j := slices.IndexFunc(hashes[:i], func(h []byte) bool { return string(h) == string(cp.PrevCheckpoint) }); {
			case cp.PrevCheckpoint == nil:
				reason += ": it says it is the first (replayed or out of order)"
			case j >= 0:
				reason += fmt.Sprintf(": it names the one at seq %d as its predecessor (replayed or out of order)", good[j].Seq)
			default:
				reason += fmt.Sprintf(": its predecessor %s is missing", short(cp.PrevCheckpoint))
			}
			c.add(cp.Seq, ProblemCheckpointChain, "%s", reason)
		}
	}
	all := make([][]byte, len(cps))
	for i := range cps {
		all[i] = cps[i].Hash()
	}
	for i := range known {
		k := &known[i]
		if k.TenantKey != c.rep.TenantKey {
			continue
		}
		c.rep.Checkpoints++
		if pub != nil {
			if err := k.VerifySignature(pub); err != nil {
				c.add(k.Seq, ProblemCheckpointSignature, "the known %s at seq %d does not verify: %v", k.Kind, k.Seq, err)
				continue
			}
		}
		h := k.Hash()
		if !slices.ContainsFunc(all, func(x []byte) bool { return string(x) == string(h) }) {
			c.add(k.Seq, ProblemCheckpointChain, "the %s at seq %d (created %s) is missing from audit_checkpoints", k.Kind, k.Seq, k.CreatedAt.Format(time.RFC3339Nano))
			good = append(good, *k)
		}
	}
	slices.SortStableFunc(good, func(a, b Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	return good
}

// setStart decides where the chain is expected to start: from (when set), moved forward to the
// latest truncation, whose RowHash the first record must then name as prev_hash.
func (c *chainChecker) setStart(from int64, cps []Checkpoint) {
	if from > 1 {
		c.start, c.startRef = from, nil
	}
	for i := len(cps) - 1; i >= 0; i-- { // cps are in seq order
		cp := &cps[i]
		if cp.Kind == CheckpointKindTruncation && cp.Seq >= c.start {
			c.startTruncation = true
			c.start, c.startRef = cp.Seq, &cp.RowHash
			c.startBy, c.startErr = fmt.Sprintf("the truncation at seq %d", cp.Seq), ProblemCheckpointMismatch
			return
		}
	}
	for i := range cps {
		cp := &cps[i]
		if c.startRef == nil && cp.Kind == CheckpointKindCheckpoint && cp.Seq == c.start-1 {
			c.startRef = &cp.RowHash
			c.startBy, c.startErr = fmt.Sprintf("the checkpoint at seq %d", cp.Seq), ProblemCheckpointMismatch
		}
	}
}

// setCheckpoints keeps the checkpoints to check against records: those from the start to, with
// a bound, to.
func (c *chainChecker) setCheckpoints(cps []Checkpoint, to int64) {
	for _, cp := range cps {
		if cp.Seq >= c.start && (to == 0 || cp.Seq <= to) {
			c.cps = append(c.cps, cp)
		}
	}
}

// hashWith is the hash f would have at seq, with prev as prev_hash when set.
func (c *chainChecker) hashWith(f *ChainFields, seq int64, prev *[32]byte) [32]byte {
	savedSeq, savedPrev := f[1], f[2]
	f[1] = strconv.AppendInt(c.seqBuf[:0], seq, 10)
	if prev != nil {
		f[2] = prev[:]
	}
	c.buf = f.Encode(c.buf[:0])
	f[1], f[2] = savedSeq, savedPrev
	return sha256.Sum256(c.buf)
}

// parseSeq reads a decimal seq; ok is false for anything else.
func parseSeq(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, n >= 0
}

// malformed records a row the checker cannot read as a link.
func (c *chainChecker) malformed(f *ChainFields, why string) {
	seq, _ := parseSeq(f[1])
	c.rep.Rows++
	c.flushPending()
	c.add(seq, ProblemMalformed, "the record at seq %s is malformed: %s", f[1], why)
}

// row checks one record: f are its fields (f[1] its seq, f[2] its prev_hash, 32 bytes), stored
// its row_hash.
func (c *chainChecker) row(f *ChainFields, stored *[32]byte) {
	seq, ok := parseSeq(f[1])
	if !ok {
		c.malformed(f, "its seq is not a number")
		return
	}
	c.buf = f.Encode(c.buf[:0])
	r := rowState{seq: seq, stored: *stored, valid: true}
	copy(r.prev[:], f[2])
	r.hashOK = sha256.Sum256(c.buf) == *stored
	if !r.hashOK {
		// Whether the record belongs one place later or earlier, as it is or with the link it
		// would have there: what tells two swapped records from two edited ones.
		r.asNext = c.hashWith(f, seq+1, nil) == *stored
		r.asBefore = seq > 1 && c.hashWith(f, seq-1, nil) == *stored
		r.movedNext = c.hashWith(f, seq+1, stored)
		if c.last.valid && c.last.seq == seq-1 {
			r.movedBefore = c.hashWith(f, seq-1, &c.last.prev)
		}
	}
	c.rep.Rows++
	if c.rep.Rows == 1 {
		c.rep.From, c.rep.FirstPrevHash = seq, r.prev
	}
	c.rep.To, c.rep.LastRowHash = seq, r.stored

	if c.last.valid && seq == c.last.seq {
		c.add(seq, ProblemDuplicate, "record %s repeats seq %d", f[3], seq)
		c.dupHashes = append(c.dupHashes, r.stored)
		c.checkAt(seq, &r)
		return
	}
	r.linkOK = true
	var want *[32]byte
	wantBy := "" // what want is, for the reason; "" = the record before
	switch {
	case !c.last.valid:
		if seq > c.start {
			c.add(c.start, ProblemGap, "records %d to %d are missing: the first record has seq %d", c.start, seq-1, seq)
		} else if seq == c.start && c.startRef != nil {
			want, wantBy = c.startRef, c.startBy
		}
	case seq > c.last.seq+1:
		c.flushPending()
		c.add(c.last.seq+1, ProblemGap, "%s missing", seqRange(c.last.seq+1, seq-1))
	default:
		want = &c.last.stored
	}
	if want != nil && r.prev != *want && !c.inDups(&r.prev) {
		r.linkOK = false
	}
	if swap, linksTraded := c.swapped(&r); swap {
		c.pending = c.pending[:0]
		c.add(c.last.seq, ProblemReordered, "the records at seq %d and %d are swapped: each has the other's place in the chain", c.last.seq, seq)
		if linksTraded {
			// The record at seq holds the link that belongs at seq-1 and the other way round:
			// the next record links to the higher of the two, stored at seq-1.
			r.stored = c.last.stored
		}
		r.linkOK, r.hashOK = true, true
		c.beforeLast, c.last = c.last, r
		c.dupHashes = c.dupHashes[:0]
		c.checkAt(seq, &r)
		return
	}
	c.flushPending()
	if !r.hashOK {
		c.pending = append(c.pending, VerifyProblem{Seq: seq, Kind: ProblemHashMismatch, Reason: fmt.Sprintf(
			"the record at seq %d (id %s) was changed: its row_hash is %s, its contents hash to %s", seq, f[3], short(stored[:]), short(c.hashNow(f)))})
	}
	if !r.linkOK {
		kind := ProblemBrokenLink
		if !c.last.valid {
			kind = c.startErr
		}
		if wantBy == "" {
			wantBy = fmt.Sprintf("the row_hash of the record at seq %d", c.last.seq)
		}
		c.pending = append(c.pending, VerifyProblem{Seq: seq, Kind: kind, Reason: fmt.Sprintf(
			"the record at seq %d names %s as prev_hash, not %s %s", seq, short(r.prev[:]), wantBy, short(want[:]))})
	}
	c.beforeLast, c.last = c.last, r
	c.dupHashes = c.dupHashes[:0]
	c.checkAt(seq, &r)
}

// seqRange names the records from lo to hi.
func seqRange(lo, hi int64) string {
	if lo == hi {
		return fmt.Sprintf("record %d is", lo)
	}
	return fmt.Sprintf("records %d to %d are", lo, hi)
}

func (c *chainChecker) hashNow(f *ChainFields) []byte {
	c.buf = f.Encode(c.buf[:0])
	h := sha256.Sum256(c.buf)
	return h[:]
}

func (c *chainChecker) inDups(h *[32]byte) bool {
	for i := range c.dupHashes {
		if c.dupHashes[i] == *h {
			return true
		}
	}
	return false
}

// swapped tells whether r and the record before it are each other's: each links and hashes as it
// would in the other's place.
// linksTraded says the records' links went with them (rather than staying in place).
func (c *chainChecker) swapped(r *rowState) (swap, linksTraded bool) {
	p := &c.last
	if !c.last.valid || p.seq != r.seq-1 {
		return false, false
	}
	if !r.hashOK && !p.hashOK && r.linkOK && p.linkOK && p.movedNext == r.stored && r.movedBefore == p.stored {
		return true, false
	}
	if r.linkOK || p.linkOK || p.prev != r.stored {
		return false, false
	}
	var before *[32]byte
	switch {
	case c.beforeLast.valid && c.beforeLast.seq == p.seq-1:
		before = &c.beforeLast.stored
	case !c.beforeLast.valid && p.seq == c.start:
		before = c.startRef
	}
	ok := before != nil && r.prev == *before && (r.hashOK || r.asBefore) && (p.hashOK || p.asNext)
	return ok, ok
}

// checkAt checks the checkpoints at seq against the record r there.
func (c *chainChecker) checkAt(seq int64, r *rowState) {
	for c.cpi < len(c.cps) && c.cps[c.cpi].Seq < seq {
		c.cpi++ // no record at its seq: a gap, reported already
	}
	for ; c.cpi < len(c.cps) && c.cps[c.cpi].Seq == seq; c.cpi++ {
		cp := &c.cps[c.cpi]
		if cp.Kind == CheckpointKindTruncation && c.startTruncation && seq == c.start {
			continue // checked as the start's link
		}
		got, what := r.stored, "row_hash"
		if cp.Kind == CheckpointKindTruncation {
			got, what = r.prev, "prev_hash"
		}
		if got != cp.RowHash {
			c.add(seq, ProblemCheckpointMismatch, "the %s signed %s vouches for %s %s at seq %d; the record there has %s",
				cp.Kind, cp.CreatedAt.Format(time.RFC3339Nano), what, short(cp.RowHash[:]), seq, short(got[:]))
		}
	}
}

// finish reports what is left once the records ran out; toHead says the range went to the head,
// so that checkpoints beyond the last record mean records are missing.
func (c *chainChecker) finish(toHead bool) {
	c.flushPending()
	if !toHead {
		return
	}
	for ; c.cpi < len(c.cps); c.cpi++ {
		cp := &c.cps[c.cpi]
		if c.rep.Rows > 0 && cp.Seq <= c.rep.To {
			continue
		}
		c.add(cp.Seq, ProblemCheckpointMismatch, "the %s signed %s vouches for seq %d, but the chain ends at seq %d: records were removed",
			cp.Kind, cp.CreatedAt.Format(time.RFC3339Nano), cp.Seq, c.rep.To)
	}
}

// checkHead compares the end of the records with the chain's head.
func (c *chainChecker) checkHead(ok bool, seq int64, hash []byte, to int64) {
	last := c.rep.To
	if c.rep.Rows == 0 {
		last = c.start - 1
	}
	switch {
	case !ok:
		if c.rep.Rows > 0 && to == 0 {
			c.add(last, ProblemHeadMismatch, "audit_chain_heads has no head for this chain, which has records up to seq %d", last)
		}
	case to > 0 && to < seq:
		if last < to {
			c.add(last+1, ProblemGap, "records %d to %d are missing (the head is at seq %d)", last+1, to, seq)
		}
	case last < seq:
		c.add(last+1, ProblemTruncatedTail, "the head is at seq %d (row_hash %s) but the records end at seq %d: records %d to %d are missing",
			seq, short(hash), last, last+1, seq)
	case last > seq:
		c.add(seq+1, ProblemHeadMismatch, "records go on past the head at seq %d, to seq %d", seq, last)
	case string(c.rep.LastRowHash[:]) != string(hash):
		c.add(seq, ProblemHeadMismatch, "the head names row_hash %s at seq %d; the record there has %s", short(hash), seq, short(c.rep.LastRowHash[:]))
	}
}

func (c *chainChecker) report() *VerifyReport {
	c.rep.OK = len(c.rep.Problems) == 0 && c.rep.MoreProblems == 0
	rep := c.rep
	return &rep
}
