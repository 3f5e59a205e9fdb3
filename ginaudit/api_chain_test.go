package ginaudit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// TestAPIChainPublicKey: the configured key is served as PEM with its id; without one, 404.
func TestAPIChainPublicKey(t *testing.T) {
	t.Parallel()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.ChainPublicKey = pub })
	tok := apiToken(t, "u1", core.ActorTenantUser, "acme")
	r := e.do(http.MethodGet, "/chain/public-key", tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got struct{ KeyID, Algorithm, PublicKeyPEM string }
	var raw map[string]string
	r.decode(t, &raw)
	got.KeyID, got.Algorithm, got.PublicKeyPEM = raw["key_id"], raw["algorithm"], raw["public_key_pem"]
	block, _ := pem.Decode([]byte(got.PublicKeyPEM))
	if block == nil {
		t.Fatalf("no PEM in %s", r.body)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || !pub.Equal(k) || got.KeyID != core.KeyID(pub) || got.Algorithm != "Ed25519" {
		t.Errorf("served %s (%v)", r.body, err)
	}

	none := apiNewEnv(t, nil)
	if r := none.do(http.MethodGet, "/chain/public-key", tok, nil); r.status != http.StatusNotFound || r.errCode() != "no_signing_key" {
		t.Errorf("without a key: %d %s", r.status, r.body)
	}
}

// TestAPIChainCheckpoints: a tenant user reads its own chain's checkpoints in a seq range, never
// another tenant's; an administrator names the tenant.
func TestAPIChainCheckpoints(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.ChainPublicKey = pub })
	ctx := context.Background()
	for seq := int64(1); seq <= 3; seq++ {
		for _, k := range []string{"acme", "globex"} {
			if _, err := e.db.Pool.Exec(ctx, `INSERT INTO audit_chain_heads (tenant_key, seq, row_hash) VALUES ($1, $2, $3)
				ON CONFLICT (tenant_key) DO UPDATE SET seq = excluded.seq, row_hash = excluded.row_hash`, k, seq*10, make([]byte, 32)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := core.CreateCheckpoints(ctx, e.db.Pool, e.db.Schema, priv, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	user := apiToken(t, "u1", core.ActorTenantUser, "acme")
	var page struct {
		Checkpoints []core.Checkpoint `json:"checkpoints"`
	}
	r := e.do(http.MethodGet, "/chain/checkpoints?from_seq=15&to_seq=30", user, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	r.decode(t, &page)
	if len(page.Checkpoints) != 2 || page.Checkpoints[0].Seq != 20 || page.Checkpoints[1].Seq != 30 {
		t.Fatalf("checkpoints %s", r.body)
	}
	for _, cp := range page.Checkpoints {
		if cp.TenantKey != "acme" || cp.VerifySignature(pub) != nil {
			t.Errorf("checkpoint %+v does not verify for acme", cp)
		}
	}
	if r := e.do(http.MethodGet, "/chain/checkpoints?tenant_id=globex", user, nil); r.status != http.StatusForbidden {
		t.Errorf("another tenant's chain: %d %s", r.status, r.body)
	}
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	r = e.do(http.MethodGet, "/chain/checkpoints?tenant_id=globex", admin, nil)
	r.decode(t, &page)
	if r.status != http.StatusOK || len(page.Checkpoints) != 3 || page.Checkpoints[2].TenantKey != "globex" {
		t.Errorf("admin, globex: %d %s", r.status, r.body)
	}
	for _, bad := range []string{"?from_seq=-1", "?to_seq=x", "?from_seq=5&to_seq=4", "?limit=3"} {
		if r := e.do(http.MethodGet, "/chain/checkpoints"+bad, user, nil); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	if r := e.do(http.MethodGet, "/chain/checkpoints", admin, nil); r.status != http.StatusBadRequest {
		t.Errorf("admin without tenant_id: %d %s", r.status, r.body)
	}
}
