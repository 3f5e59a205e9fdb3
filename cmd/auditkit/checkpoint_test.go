package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestCheckpointCommand: checkpoint signs the chains that moved, prints them and pushes them to
// -webhook; without a key it fails naming AUDIT_SIGNING_KEY.
func TestCheckpointCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyEnv := "AUDIT_SIGNING_KEY=" + strings.ReplaceAll(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "\n", `\n`)
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO audit_chain_heads (tenant_key, seq, row_hash) VALUES ('acme', 4, $1)`, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	var got []core.Checkpoint
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var cp core.Checkpoint
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &cp) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, cp)
		mu.Unlock()
	}))
	defer hook.Close()
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema}

	code, stdout, stderr := runCmd(t, []string{keyEnv}, append([]string{"checkpoint", "-webhook", hook.URL}, flags...)...)
	if code != exitOK || !strings.Contains(stdout, `chain="acme" seq=4`) || !strings.Contains(stderr, "1 checkpoints signed with key "+core.KeyID(pub)) {
		t.Fatalf("checkpoint: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	mu.Lock()
	if len(got) != 1 || got[0].VerifySignature(pub) != nil {
		t.Errorf("the webhook received %+v", got)
	}
	mu.Unlock()
	// Nothing moved: nothing signed.
	if code, stdout, stderr = runCmd(t, []string{keyEnv}, append([]string{"checkpoint"}, flags...)...); code != exitOK || stdout != "" {
		t.Errorf("second run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr = runCmd(t, nil, append([]string{"checkpoint"}, flags...)...); code != exitFail || !strings.Contains(stderr, "set AUDIT_SIGNING_KEY") {
		t.Errorf("without a key: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr = runCmd(t, []string{keyEnv}, append([]string{"checkpoint", "-webhook", "http://example.com/x"}, flags...)...); code != exitFail || !strings.Contains(stderr, "use https") {
		t.Errorf("plain http webhook: exit %d, stderr %q", code, stderr)
	}
}

// lockedBuffer is a bytes.Buffer written by one goroutine and read by another.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTailCommand: tail prints one line per new record of its tenant, none of other tenants', and
// ends cleanly when its context is cancelled (as Ctrl-C does).
func TestTailCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	var code atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		code.Store(int64(run(ctx, []string{"tail", "-tenant", "acme", "-database-url", pgtest.URL(), "-schema", db.Schema}, nil, &stdout, &stderr)))
	}()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}), core.WriterOptions{FlushInterval: time.Millisecond})
	defer w.Close(context.Background())
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "following tenant acme") {
		if time.Now().After(deadline) {
			t.Fatalf("tail did not start: %q", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tenant := range []string{"globex", "acme"} {
		if err := w.Enqueue(&core.Record{ID: core.NewID(), OccurredAt: time.Now(), Kind: core.KindCustom, Action: "invoice.sent",
			Tenant: core.Tenant{ID: tenant}, Actor: core.Actor{ID: "u-7", Type: core.ActorTenantUser}, ResourceType: "invoices", ResourceID: "42"}); err != nil {
			t.Fatal(err)
		}
	}
	for !strings.Contains(stdout.String(), " acme u-7 invoice.sent invoices/42\n") {
		if time.Now().After(deadline) {
			t.Fatalf("tail printed %q; stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("tail did not end when cancelled")
	}
	if code.Load() != exitOK || strings.Contains(stdout.String(), "globex") || strings.Count(stdout.String(), "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q", code.Load(), stdout.String(), stderr.String())
	}
}
