package core_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

func newSigningKey(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// headHash is the row hash a test gives the head of chain key at seq.
func headHash(key string, seq int64) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", key, seq))
	return sum[:]
}

// moveHead sets the head of chain key to seq, as a writer appending to it would.
func moveHead(t *testing.T, pool *pgxpool.Pool, key string, seq int64) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO audit_chain_heads (tenant_key, seq, row_hash) VALUES ($1, $2, $3)
		ON CONFLICT (tenant_key) DO UPDATE SET seq = excluded.seq, row_hash = excluded.row_hash`, key, seq, headHash(key, seq))
	if err != nil {
		t.Fatal(err)
	}
}

// checkCheckpointChain checks that cps (one tenant's, in any order) all verify with pub and form
// one unbroken chain: one first checkpoint, and every other names a distinct predecessor that
// exists. It returns them in chain order.
func checkCheckpointChain(t *testing.T, pub ed25519.PublicKey, cps []core.Checkpoint) []core.Checkpoint {
	t.Helper()
	byHash := make(map[string]int, len(cps))
	next := make(map[string]int, len(cps)) // predecessor hash -> successor
	first := -1
	for i := range cps {
		cp := &cps[i]
		if err := cp.VerifySignature(pub); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		byHash[string(cp.Hash())] = i
		if cp.PrevCheckpoint == nil {
			if first >= 0 {
				t.Fatalf("two checkpoints start the chain of %q: seq %d and seq %d", cp.TenantKey, cps[first].Seq, cp.Seq)
			}
			first = i
			continue
		}
		if j, ok := next[string(cp.PrevCheckpoint)]; ok {
			t.Fatalf("the checkpoint chain of %q forks: %s seq %d and %s seq %d name the same predecessor",
				cp.TenantKey, cps[j].Kind, cps[j].Seq, cp.Kind, cp.Seq)
		}
		next[string(cp.PrevCheckpoint)] = i
	}
	if len(cps) == 0 {
		return nil
	}
	if first < 0 {
		t.Fatal("no checkpoint starts the chain")
	}
	order := []core.Checkpoint{cps[first]}
	for cur := first; ; {
		j, ok := next[string(cps[cur].Hash())]
		if !ok {
			break
		}
		if !cps[j].CreatedAt.After(cps[cur].CreatedAt) {
			t.Errorf("created_at does not increase along the chain: %v then %v", cps[cur].CreatedAt, cps[j].CreatedAt)
		}
		order = append(order, cps[j])
		cur = j
	}
	if len(order) != len(cps) {
		t.Fatalf("the chain links %d of %d checkpoints", len(order), len(cps))
	}
	for h := range next {
		if _, ok := byHash[h]; !ok {
			t.Fatalf("a checkpoint names a predecessor that does not exist")
		}
	}
	return order
}

// TestCreateCheckpoints: every chain that moved gets one signed checkpoint at its head, chained to
// the tenant's previous one; a chain that did not move gets none; they load back in seq order and
// survive a JSON round trip.
func TestCreateCheckpoints(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	priv, pub := newSigningKey(t)
	moveHead(t, db.Pool, "acme", 3)
	moveHead(t, db.Pool, "", 1)
	moveHead(t, db.Pool, "globex", 7)

	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	cps, err := core.CreateCheckpoints(ctx, db.Pool, db.Schema, priv, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 3 || cps[0].TenantKey != "" || cps[1].TenantKey != "acme" || cps[2].TenantKey != "globex" {
		t.Fatalf("CreateCheckpoints = %+v", cps)
	}
	for _, cp := range cps {
		if err := cp.VerifySignature(pub); err != nil {
			t.Error(err)
		}
		if cp.Kind != core.CheckpointKindCheckpoint || cp.PrevCheckpoint != nil || !bytes.Equal(cp.RowHash[:], headHash(cp.TenantKey, cp.Seq)) ||
			!cp.CreatedAt.Equal(now.Truncate(time.Microsecond)) {
			t.Errorf("checkpoint %+v", cp)
		}
	}

	// Nothing moved: nothing to sign.
	if again, err := core.CreateCheckpoints(ctx, db.Pool, db.Schema, priv, now.Add(time.Minute)); err != nil || len(again) != 0 {
		t.Fatalf("second round = %+v, %v; want none", again, err)
	}

	// acme moves; its next checkpoint names the first. A clock behind the last checkpoint's is
	// moved after it.
	moveHead(t, db.Pool, "acme", 9)
	next, err := core.CreateCheckpoints(ctx, db.Pool, db.Schema, priv, now.Add(-time.Hour))
	if err != nil || len(next) != 1 {
		t.Fatalf("third round = %+v, %v", next, err)
	}
	if next[0].Seq != 9 || !bytes.Equal(next[0].PrevCheckpoint, cps[1].Hash()) || !next[0].CreatedAt.After(cps[1].CreatedAt) {
		t.Errorf("acme's second checkpoint %+v; want seq 9 naming the first, created after it", next[0])
	}

	loaded, err := core.LoadCheckpoints(ctx, db.Pool, db.Schema, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 2 || loaded[0].Seq != 3 || loaded[1].Seq != 9 {
		t.Fatalf("LoadCheckpoints = %+v", loaded)
	}
	checkCheckpointChain(t, pub, loaded)
	for _, cp := range loaded {
		b, err := json.Marshal(cp)
		if err != nil {
			t.Fatal(err)
		}
		var back core.Checkpoint
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if err := back.VerifySignature(pub); err != nil || !bytes.Equal(back.Hash(), cp.Hash()) {
			t.Errorf("JSON round trip of %s: %v", b, err)
		}
	}
	if r, err := core.LoadCheckpointRange(ctx, db.Pool, db.Schema, "acme", 4, 100, 0); err != nil || len(r) != 1 || r[0].Seq != 9 {
		t.Errorf("LoadCheckpointRange(4, 100) = %+v, %v", r, err)
	}
}

// TestCheckpointsConcurrentNeverFork: two processes (separate pools) create checkpoints while
// the heads move and truncations are recorded, all at once; every tenant's checkpoints still form
// one chain.
func TestCheckpointsConcurrentNeverFork(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	priv, pub := newSigningKey(t)
	second, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	tenants := []string{"a", "b", ""}
	const rounds = 40

	var wg sync.WaitGroup
	var created atomic.Int64
	errs := make(chan error, 16)
	// The checkpointers go on until the writers are done, and one round after, so that they run
	// while the heads move however the goroutines are scheduled, and the last heads are signed.
	writersDone := make(chan struct{})
	moving := func() bool {
		select {
		case <-writersDone:
			return false
		default:
			return true
		}
	}
	for _, pool := range []*pgxpool.Pool{db.Pool, second, db.Pool, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				done := !moving()
				cps, err := core.CreateCheckpoints(ctx, pool, db.Schema, priv, time.Now())
				if err != nil {
					errs <- err
					return
				}
				created.Add(int64(len(cps)))
				if i >= rounds && done {
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the writers
		defer wg.Done()
		defer close(writersDone)
		for seq := int64(1); seq <= rounds; seq++ {
			for _, k := range tenants {
				if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_chain_heads (tenant_key, seq, row_hash) VALUES ($1, $2, $3)
					ON CONFLICT (tenant_key) DO UPDATE SET seq = excluded.seq, row_hash = excluded.row_hash`, k, seq, headHash(k, seq)); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	wg.Add(1)
	go func() { // retention, recording truncations through the same chain
		defer wg.Done()
		for seq := int64(2); seq <= rounds; seq += 3 {
			err := pgx.BeginFunc(ctx, second, func(tx pgx.Tx) error {
				cp := core.Checkpoint{TenantKey: "a", Kind: core.CheckpointKindTruncation, Seq: seq, CreatedAt: time.Now()}
				copy(cp.RowHash[:], headHash("a", seq-1))
				_, err := core.AppendCheckpoint(ctx, tx, db.Schema, priv, &cp)
				return err
			})
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if created.Load() == 0 {
		t.Fatal("no checkpoint was created")
	}
	var total int
	for _, k := range tenants {
		cps, err := core.LoadCheckpoints(ctx, db.Pool, db.Schema, k)
		if err != nil {
			t.Fatal(err)
		}
		total += len(cps)
		order := checkCheckpointChain(t, pub, cps)
		// Along the chain, each kind's seq only grows.
		last := map[string]int64{}
		for _, cp := range order {
			if cp.Seq <= last[cp.Kind] {
				t.Errorf("chain %q: %s at seq %d after one at %d", k, cp.Kind, cp.Seq, last[cp.Kind])
			}
			last[cp.Kind] = cp.Seq
		}
	}
	var truncations int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints WHERE kind = 'truncation'`).Scan(&truncations); err != nil {
		t.Fatal(err)
	}
	if int64(total-truncations) != created.Load() {
		t.Errorf("%d checkpoints stored, %d reported created", total-truncations, created.Load())
	}
	t.Logf("%d checkpoints and %d truncations by 4 concurrent creators", created.Load(), truncations)
}

// webhookServer records the checkpoints POSTed to it; fail makes it answer 500.
type webhookServer struct {
	*httptest.Server
	mu       sync.Mutex
	got      []core.Checkpoint
	attempts atomic.Int64
	fail     atomic.Bool
	hold     chan struct{} // when set, requests wait for it to be closed
}

func newWebhookServer(t *testing.T) *webhookServer {
	w := &webhookServer{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.attempts.Add(1)
		if w.hold != nil {
			<-w.hold
		}
		if w.fail.Load() {
			http.Error(rw, "down", http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var cp core.Checkpoint
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &cp) != nil {
			http.Error(rw, "bad request", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, cp)
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

// TestCheckpointerWebhook: every checkpoint a Checkpointer stores reaches the webhook, signed.
func TestCheckpointerWebhook(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	priv, pub := newSigningKey(t)
	hook := newWebhookServer(t)
	c, err := core.StartCheckpointer(db.Pool, priv, core.CheckpointerOptions{Schema: db.Schema, Interval: time.Hour, Webhook: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	var stored []core.Checkpoint
	for seq := int64(1); seq <= 3; seq++ {
		for _, k := range []string{"a", "b"} {
			moveHead(t, db.Pool, k, seq)
		}
		cps, err := c.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, cps...)
	}
	moveHead(t, db.Pool, "c", 1) // vouched for by the round Stop runs
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 6 {
		t.Fatalf("stored %d checkpoints, want 6", len(stored))
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.got) != 7 {
		t.Fatalf("the webhook received %d checkpoints, want 7", len(hook.got))
	}
	for i, cp := range hook.got {
		if err := cp.VerifySignature(pub); err != nil {
			t.Error(err)
		}
		if i < len(stored) && !bytes.Equal(cp.Hash(), stored[i].Hash()) {
			t.Errorf("delivery %d is %+v, want %+v", i, cp, stored[i])
		}
	}
	if last := hook.got[6]; last.TenantKey != "c" {
		t.Errorf("the last delivery is %+v, want chain c's from Stop", last)
	}
}

// TestCheckpointerWebhookFailing: a webhook that keeps failing is tried WebhookAttempts times per
// checkpoint and then given up with an error in the log; it never holds up the rounds.
func TestCheckpointerWebhookFailing(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	priv, _ := newSigningKey(t)
	hook := newWebhookServer(t)
	hook.fail.Store(true)
	hook.hold = make(chan struct{})
	var logs checkpointLogBuffer
	c, err := core.StartCheckpointer(db.Pool, priv, core.CheckpointerOptions{
		Schema: db.Schema, Interval: time.Hour, Webhook: hook.URL,
		WebhookAttempts: 3, WebhookBackoff: 5 * time.Millisecond, WebhookTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	moveHead(t, db.Pool, "a", 1)
	moveHead(t, db.Pool, "b", 1)
	// The webhook holds every request; rounds go on regardless.
	start := time.Now()
	for seq := int64(1); seq <= 2; seq++ {
		moveHead(t, db.Pool, "a", seq)
		if _, err := c.Now(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("rounds took %v while the webhook hung", d)
	}
	close(hook.hold)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// 3 checkpoints (a@1, b@1, a@2), 3 attempts each.
	if n := hook.attempts.Load(); n != 9 {
		t.Errorf("the webhook saw %d attempts, want 9", n)
	}
	if got := strings.Count(logs.String(), "the checkpoint webhook failed"); got != 3 {
		t.Errorf("%d give-ups logged, want 3:\n%s", got, logs.String())
	}
}

// TestCheckpointerStopGivesUp: Stop with a context that ends abandons deliveries promptly.
func TestCheckpointerStopGivesUp(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	priv, _ := newSigningKey(t)
	hook := newWebhookServer(t)
	hook.hold = make(chan struct{})
	t.Cleanup(func() { close(hook.hold) })
	c, err := core.StartCheckpointer(db.Pool, priv, core.CheckpointerOptions{Schema: db.Schema, Interval: time.Hour, Webhook: hook.URL,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	moveHead(t, db.Pool, "a", 1)
	if _, err := c.Now(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Stop(ctx); err == nil {
		t.Error("Stop returned nil though the delivery could not finish")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
}

// TestOpenSignsCheckpoints: with a signing key, Open's Writer runs a Checkpointer, whose last
// round at Close vouches for the chains.
func TestOpenSignsCheckpoints(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	priv, pub := newSigningKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	w, err := core.Open(context.Background(), core.Config{
		DatabaseURL: db.URL, Schema: db.Schema,
		Chain: core.ChainConfig{SigningKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), CheckpointInterval: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	moveHead(t, db.Pool, "acme", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cps, err := core.LoadCheckpoints(ctx, db.Pool, db.Schema, "acme")
	if err != nil || len(cps) != 1 || cps[0].Seq != 5 {
		t.Fatalf("checkpoints after Close: %+v, %v", cps, err)
	}
	if err := cps[0].VerifySignature(pub); err != nil {
		t.Error(err)
	}
}

// checkpointLogBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type checkpointLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *checkpointLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *checkpointLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
