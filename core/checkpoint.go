package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Creating, storing and sending checkpoints.
//
// The checkpoints of one tenant form a chain of their own (each names the Hash of the one before
// it, of any kind), so two processes must never both extend it from the same predecessor.
// AppendCheckpoint serialises them with a transaction-level advisory lock per (schema, tenant
// key), taken before the predecessor is read; writers of records never take that lock, so
// checkpoints never hold up a batch. The predecessor is the latest checkpoint of the tenant: its
// created_at is kept strictly increasing along the chain, so the latest is found by created_at
// among the highest seq of each kind, with two index lookups.

// checkpointCols are the audit_checkpoints columns, in the order scanCheckpoint reads them.
const checkpointCols = `tenant_key, kind, seq, row_hash, created_at, prev_checkpoint, key_id, signature`

// AppendCheckpoint signs cp as the next link of its tenant's checkpoint chain and stores it,
// within tx: it locks that chain until tx ends, sets cp.PrevCheckpoint to the Hash of the
// tenant's latest checkpoint of any kind, moves cp.CreatedAt just after that checkpoint's when
// clocks disagree, signs cp with priv and inserts it. cp.TenantKey, Kind, Seq, RowHash and
// CreatedAt must be set.
//
// It stores nothing and returns false when the tenant already has a checkpoint of cp.Kind at
// cp.Seq or later: another process vouched for that much already. Retention uses it for
// truncations in the transaction that deletes the rows.
func AppendCheckpoint(ctx context.Context, tx pgx.Tx, schema string, priv ed25519.PrivateKey, cp *Checkpoint) (bool, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return false, errors.New("auditkit: checkpoint: no Ed25519 signing key")
	}
	if cp.Kind != CheckpointKindCheckpoint && cp.Kind != CheckpointKindTruncation {
		return false, fmt.Errorf("auditkit: checkpoint: unknown kind %q", cp.Kind)
	}
	table := pgx.Identifier{schema, "audit_checkpoints"}.Sanitize()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
		"auditkit checkpoints "+schema+"/"+cp.TenantKey); err != nil {
		return false, fmt.Errorf("auditkit: checkpoint of chain %q: lock: %w", cp.TenantKey, err)
	}
	rows, err := tx.Query(ctx, `SELECT `+checkpointCols+` FROM `+table+` c
		WHERE tenant_key = $1 AND seq = (SELECT max(seq) FROM `+table+` m WHERE m.tenant_key = $1 AND m.kind = c.kind)`,
		cp.TenantKey)
	if err != nil {
		return false, fmt.Errorf("auditkit: checkpoint of chain %q: %w", cp.TenantKey, err)
	}
	latest, err := scanCheckpoints(rows)
	if err != nil {
		return false, fmt.Errorf("auditkit: checkpoint of chain %q: %w", cp.TenantKey, err)
	}
	var prev *Checkpoint
	for i := range latest {
		l := &latest[i]
		if l.Kind == cp.Kind && l.Seq >= cp.Seq {
			return false, nil
		}
		if prev == nil || l.CreatedAt.After(prev.CreatedAt) {
			prev = l
		}
	}
	cp.PrevCheckpoint = nil
	cp.CreatedAt = cp.CreatedAt.Truncate(time.Microsecond)
	if prev != nil {
		cp.PrevCheckpoint = prev.Hash()
		if !cp.CreatedAt.After(prev.CreatedAt) {
			cp.CreatedAt = prev.CreatedAt.Add(time.Microsecond)
		}
	}
	cp.Sign(priv)
	tag, err := tx.Exec(ctx, `INSERT INTO `+table+` (`+checkpointCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		cp.TenantKey, cp.Kind, cp.Seq, cp.RowHash[:], cp.CreatedAt, cp.PrevCheckpoint, cp.KeyID, cp.Signature)
	if err != nil {
		return false, fmt.Errorf("auditkit: checkpoint of chain %q: insert: %w", cp.TenantKey, err)
	}
	return tag.RowsAffected() == 1, nil
}

// CreateCheckpoints signs and stores a checkpoint (CheckpointKindCheckpoint, at the head's seq
// and row hash, created at now) for every chain of schema whose head moved past its latest
// checkpoint, and returns those it stored, in the order of their tenant keys. Each chain is its
// own short transaction (AppendCheckpoint), so processes may run it at the same time: a chain is
// checkpointed by one of them, and its checkpoint chain never forks. A chain that fails does not
// stop the others; the errors are joined.
func CreateCheckpoints(ctx context.Context, pool *pgxpool.Pool, schema string, priv ed25519.PrivateKey, now time.Time) ([]Checkpoint, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("auditkit: checkpoint: no Ed25519 signing key")
	}
	heads := pgx.Identifier{schema, "audit_chain_heads"}.Sanitize()
	cps := pgx.Identifier{schema, "audit_checkpoints"}.Sanitize()
	rows, err := pool.Query(ctx, `SELECT h.tenant_key FROM `+heads+` h WHERE h.seq > coalesce(
		(SELECT max(c.seq) FROM `+cps+` c WHERE c.tenant_key = h.tenant_key AND c.kind = 'checkpoint'), 0)
		ORDER BY h.tenant_key COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("auditkit: checkpoints: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("auditkit: checkpoints: %w", err)
	}
	var (
		out  []Checkpoint
		errs []error
	)
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		cp := Checkpoint{TenantKey: key, Kind: CheckpointKindCheckpoint, CreatedAt: now}
		var stored bool
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var hash []byte
			if err := tx.QueryRow(ctx, `SELECT seq, row_hash FROM `+heads+` WHERE tenant_key = $1`, key).Scan(&cp.Seq, &hash); err != nil {
				return fmt.Errorf("auditkit: checkpoint of chain %q: head: %w", key, err)
			}
			if len(hash) != len(cp.RowHash) {
				return fmt.Errorf("auditkit: checkpoint of chain %q: the head holds a %d-byte hash", key, len(hash))
			}
			copy(cp.RowHash[:], hash)
			var err error
			stored, err = AppendCheckpoint(ctx, tx, schema, priv, &cp)
			return err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if stored {
			out = append(out, cp)
		}
	}
	return out, errors.Join(errs...)
}

// LoadCheckpoints returns the checkpoints of one chain (tenant key: the tenant id, or "" for
// records without a tenant), of both kinds, ordered by seq (and by creation at the same seq).
func LoadCheckpoints(ctx context.Context, pool *pgxpool.Pool, schema, tenantKey string) ([]Checkpoint, error) {
	return LoadCheckpointRange(ctx, pool, schema, tenantKey, 0, math.MaxInt64, 0)
}

// LoadCheckpointRange is LoadCheckpoints restricted to fromSeq <= seq <= toSeq, and to the first
// limit checkpoints when limit is positive.
func LoadCheckpointRange(ctx context.Context, pool *pgxpool.Pool, schema, tenantKey string, fromSeq, toSeq int64, limit int) ([]Checkpoint, error) {
	q := `SELECT ` + checkpointCols + ` FROM ` + pgx.Identifier{schema, "audit_checkpoints"}.Sanitize() +
		` WHERE tenant_key = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq, created_at`
	args := []any{tenantKey, fromSeq, toSeq}
	if limit > 0 {
		q += ` LIMIT $4`
		args = append(args, limit)
	}
	rows, err := pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("auditkit: load checkpoints of chain %q: %w", tenantKey, err)
	}
	cps, err := scanCheckpoints(rows)
	if err != nil {
		return nil, fmt.Errorf("auditkit: load checkpoints of chain %q: %w", tenantKey, err)
	}
	return cps, nil
}

// scanCheckpoints reads rows of checkpointCols and closes rows.
func scanCheckpoints(rows pgx.Rows) ([]Checkpoint, error) {
	var (
		out       []Checkpoint
		cp        Checkpoint
		hash      []byte
		prev, sig []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&cp.TenantKey, &cp.Kind, &cp.Seq, &hash, &cp.CreatedAt, &prev, &cp.KeyID, &sig}, func() error {
		if len(hash) != len(cp.RowHash) {
			return fmt.Errorf("the checkpoint of chain %q at seq %d holds a %d-byte row hash", cp.TenantKey, cp.Seq, len(hash))
		}
		c := cp
		copy(c.RowHash[:], hash)
		c.CreatedAt = c.CreatedAt.UTC()
		c.PrevCheckpoint = bytes.Clone(prev)
		c.Signature = bytes.Clone(sig)
		out = append(out, c)
		return nil
	})
	return out, err
}

// checkpointWire is the JSON form of a Checkpoint.
type checkpointWire struct {
	TenantKey      string    `json:"tenant_key"`
	Kind           string    `json:"kind"`
	Seq            int64     `json:"seq"`
	RowHash        string    `json:"row_hash"`
	CreatedAt      time.Time `json:"created_at"`
	PrevCheckpoint *string   `json:"prev_checkpoint"`
	KeyID          string    `json:"key_id"`
	Signature      string    `json:"signature"`
}

// MarshalJSON encodes c as the webhook and the API send it: {"tenant_key", "kind", "seq",
// "row_hash" (hex), "created_at" (RFC 3339, UTC, microseconds), "prev_checkpoint" (hex, or null
// for the first), "key_id", "signature" (standard base64)}.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	j := checkpointWire{
		TenantKey: c.TenantKey, Kind: c.Kind, Seq: c.Seq, RowHash: hex.EncodeToString(c.RowHash[:]),
		CreatedAt: c.CreatedAt.UTC().Truncate(time.Microsecond), KeyID: c.KeyID,
		Signature: base64.StdEncoding.EncodeToString(c.Signature),
	}
	if c.PrevCheckpoint != nil {
		s := hex.EncodeToString(c.PrevCheckpoint)
		j.PrevCheckpoint = &s
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form MarshalJSON writes, so that a kept copy can be verified.
func (c *Checkpoint) UnmarshalJSON(b []byte) error {
	var j checkpointWire
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	hash, err := hex.DecodeString(j.RowHash)
	if err != nil || len(hash) != len(c.RowHash) {
		return fmt.Errorf("auditkit: checkpoint: row_hash %q is not 32 bytes of hex", j.RowHash)
	}
	sig, err := base64.StdEncoding.DecodeString(j.Signature)
	if err != nil {
		return fmt.Errorf("auditkit: checkpoint: signature is not base64: %w", err)
	}
	var prev []byte
	if j.PrevCheckpoint != nil {
		if prev, err = hex.DecodeString(*j.PrevCheckpoint); err != nil {
			return fmt.Errorf("auditkit: checkpoint: prev_checkpoint is not hex: %w", err)
		}
	}
	*c = Checkpoint{TenantKey: j.TenantKey, Kind: j.Kind, Seq: j.Seq, CreatedAt: j.CreatedAt.UTC(),
		PrevCheckpoint: prev, KeyID: j.KeyID, Signature: sig}
	copy(c.RowHash[:], hash)
	return nil
}

// SendCheckpoint POSTs cp as JSON (Checkpoint.MarshalJSON) to url, once; any status other than
// 2xx is an error. client nil means http.DefaultClient; ctx bounds the attempt.
func SendCheckpoint(ctx context.Context, client *http.Client, url string, cp Checkpoint) error {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("auditkit: checkpoint webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("auditkit: checkpoint webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("auditkit: checkpoint webhook answered %s", resp.Status)
	}
	return nil
}

// CheckpointerOptions configure a Checkpointer. The zero value (with a schema) is usable.
type CheckpointerOptions struct {
	// Schema holds audit_chain_heads and audit_checkpoints. Empty means "public".
	Schema string
	// Interval is the time between two rounds. Zero means DefaultCheckpointInterval (1m).
	Interval time.Duration
	// Webhook, when set, receives every checkpoint the Checkpointer stores (SendCheckpoint).
	// Deliveries run in the background, one at a time, in order; a failed one is retried up to
	// WebhookAttempts times, then logged and given up.
	Webhook string
	// WebhookTimeout bounds one delivery attempt. Zero means 10s.
	WebhookTimeout time.Duration
	// WebhookAttempts is how many times a delivery is tried. Zero means 5.
	WebhookAttempts int
	// WebhookBackoff is the wait after the first failed attempt; it doubles after each. Zero
	// means 1s.
	WebhookBackoff time.Duration
	// WebhookQueue bounds the checkpoints waiting for delivery; more are logged and dropped (they
	// stay in audit_checkpoints). Zero means 1000.
	WebhookQueue int
	// HTTPClient sends the webhook's requests. Nil means a client of its own.
	HTTPClient *http.Client
	// Logger receives failed rounds and deliveries. Nil means slog.Default().
	Logger *slog.Logger
}

func (o CheckpointerOptions) withDefaults() CheckpointerOptions {
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if o.Interval <= 0 {
		o.Interval = DefaultCheckpointInterval
	}
	if o.WebhookTimeout <= 0 {
		o.WebhookTimeout = 10 * time.Second
	}
	if o.WebhookAttempts <= 0 {
		o.WebhookAttempts = 5
	}
	if o.WebhookBackoff <= 0 {
		o.WebhookBackoff = time.Second
	}
	if o.WebhookQueue <= 0 {
		o.WebhookQueue = 1000
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Checkpointer signs a checkpoint of every chain that moved, every Interval, until Stop. Open
// starts one when Config.Chain.SigningKey is set and stops it when the Writer closes; users of
// NewWriter start their own with StartCheckpointer. Any number of processes may run one on the
// same schema.
type Checkpointer struct {
	pool *pgxpool.Pool
	priv ed25519.PrivateKey
	opts CheckpointerOptions

	life     context.Context // cancelled when Stop gives up
	cancel   context.CancelFunc
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // the loop ended
	queue    chan Checkpoint
	sent     chan struct{} // the webhook sender ended
	mu       sync.Mutex    // guards closed against sends on queue
	closed   bool
}

// StartCheckpointer starts a Checkpointer signing with priv through pool, which the caller keeps
// open until Stop returns. Its first round runs after one Interval.
func StartCheckpointer(pool *pgxpool.Pool, priv ed25519.PrivateKey, opts CheckpointerOptions) (*Checkpointer, error) {
	if pool == nil {
		return nil, errors.New("auditkit: StartCheckpointer needs a pool")
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("auditkit: StartCheckpointer needs an Ed25519 private key")
	}
	if opts.Webhook != "" {
		if msg := WebhookURLProblem(opts.Webhook); msg != "" {
			return nil, fmt.Errorf("auditkit: checkpoint webhook: %s", msg)
		}
	}
	opts = opts.withDefaults()
	life, cancel := context.WithCancel(context.Background())
	c := &Checkpointer{pool: pool, priv: priv, opts: opts, life: life, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}), sent: make(chan struct{})}
	if opts.Webhook != "" {
		c.queue = make(chan Checkpoint, opts.WebhookQueue)
		go c.deliver()
	} else {
		close(c.sent)
	}
	go c.loop()
	return c, nil
}

// Now runs one round at once and returns the checkpoints it stored (handed to the webhook too).
func (c *Checkpointer) Now(ctx context.Context) ([]Checkpoint, error) {
	cps, err := CreateCheckpoints(ctx, c.pool, c.opts.Schema, c.priv, time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cp := range cps {
		if c.queue == nil || c.closed {
			break
		}
		select {
		case c.queue <- cp:
		default:
			c.opts.Logger.Error("auditkit: the checkpoint webhook is behind; a checkpoint is not sent (it stays in audit_checkpoints)",
				"tenant_key", cp.TenantKey, "seq", cp.Seq)
		}
	}
	return cps, err
}

func (c *Checkpointer) loop() {
	defer close(c.done)
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.life, c.opts.Interval)
			if _, err := c.Now(ctx); err != nil && c.life.Err() == nil {
				c.opts.Logger.Error("auditkit: checkpoint round failed", "err", err)
			}
			cancel()
		case <-c.stop:
			return
		}
	}
}

// deliver sends the queued checkpoints to the webhook in order, retrying each a bounded number
// of times.
func (c *Checkpointer) deliver() {
	defer close(c.sent)
	for cp := range c.queue {
		wait := c.opts.WebhookBackoff
		for attempt := 1; ; attempt++ {
			ctx, cancel := context.WithTimeout(c.life, c.opts.WebhookTimeout)
			err := SendCheckpoint(ctx, c.opts.HTTPClient, c.opts.Webhook, cp)
			cancel()
			if err == nil {
				break
			}
			if attempt >= c.opts.WebhookAttempts || c.life.Err() != nil {
				c.opts.Logger.Error("auditkit: the checkpoint webhook failed; the checkpoint stays in audit_checkpoints",
					"tenant_key", cp.TenantKey, "seq", cp.Seq, "attempts", attempt, "err", err)
				break
			}
			select {
			case <-time.After(wait):
			case <-c.life.Done():
			}
			wait *= 2
		}
	}
}

// Stop ends the rounds, runs a last one (so that the records written before Stop are vouched
// for) and waits for the webhook's deliveries, all within ctx: when ctx ends first, the last
// round is skipped or cancelled, deliveries are abandoned, and ctx's error is returned. Later
// calls return nil at once.
func (c *Checkpointer) Stop(ctx context.Context) error {
	first := false
	c.stopOnce.Do(func() { first = true; close(c.stop) })
	if !first {
		return nil
	}
	defer c.cancel()
	select {
	case <-c.done:
	case <-ctx.Done():
		c.cancel()
		<-c.done
	}
	var err error
	if ctx.Err() == nil {
		if _, rerr := c.Now(ctx); rerr != nil {
			err = fmt.Errorf("auditkit: last checkpoint round: %w", rerr)
		}
	}
	c.mu.Lock()
	c.closed = true
	if c.queue != nil {
		close(c.queue)
	}
	c.mu.Unlock()
	select {
	case <-c.sent:
	case <-ctx.Done():
		c.cancel()
		<-c.sent
	}
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("auditkit: stopping the checkpointer: %w", ctx.Err()))
	}
	return err
}
