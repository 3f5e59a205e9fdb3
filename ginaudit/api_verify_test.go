package ginaudit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/chaintest"
)

// TestAPIVerifyChain: GET /logs/verify reports an intact chain, then names a tampered record
// with 200 and ok false; it is scoped like GET /logs, and administrators reach the chain of the
// records without a tenant with no_tenant=true.
func TestAPIVerifyChain(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) { o.ChainPublicKey = pub })
	ctx := context.Background()
	for _, k := range []string{"acme", "globex", ""} {
		if _, err := chaintest.Append(ctx, e.db.Pool, k, 30); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := core.CreateCheckpoints(ctx, e.db.Pool, e.db.Schema, priv, time.Now()); err != nil {
		t.Fatal(err)
	}
	type report struct {
		TenantKey     string `json:"tenant_key"`
		Rows          int64  `json:"rows"`
		OK            bool   `json:"ok"`
		LastRowHash   string `json:"last_row_hash"`
		FirstPrevHash string `json:"first_prev_hash"`
		Checkpoints   int    `json:"checkpoints"`
		Problems      []core.VerifyProblem
	}
	get := func(path, token string) report {
		t.Helper()
		r := e.do(http.MethodGet, path, token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		var rep report
		r.decode(t, &rep)
		return rep
	}
	user := apiToken(t, "u1", core.ActorTenantUser, "acme")
	rep := get("/logs/verify", user)
	if !rep.OK || rep.TenantKey != "acme" || rep.Rows < 30 || rep.Checkpoints != 1 || len(rep.LastRowHash) != 64 || rep.FirstPrevHash != "0000000000000000000000000000000000000000000000000000000000000000" {
		t.Fatalf("clean chain: %+v", rep)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE audit_logs SET action = 'invoice.paid' WHERE tenant_id = 'acme' AND seq = 12`); err != nil {
		t.Fatal(err)
	}
	rep = get("/logs/verify?from_seq=5&to_seq=20", user)
	if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Seq != 12 || rep.Problems[0].Kind != core.ProblemHashMismatch || rep.Rows != 16 {
		t.Fatalf("edited record: %+v", rep)
	}
	if r := e.do(http.MethodGet, "/logs/verify?tenant_id=globex", user, nil); r.status != http.StatusForbidden {
		t.Errorf("another tenant's chain: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/logs/verify?no_tenant=true", user, nil); r.status != http.StatusForbidden {
		t.Errorf("a tenant user asks for the chain without a tenant: %d %s", r.status, r.body)
	}
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "")
	if rep := get("/logs/verify?tenant_id=globex", admin); !rep.OK || rep.TenantKey != "globex" {
		t.Errorf("admin, globex: %+v", rep)
	}
	if rep := get("/logs/verify?no_tenant=true", admin); !rep.OK || rep.TenantKey != "" || rep.Rows < 30 {
		t.Errorf("admin, no tenant: %+v", rep)
	}
	for _, bad := range []string{"", "?no_tenant=yes", "?no_tenant=true&tenant_id=acme", "?from_seq=-1", "?from_seq=9&to_seq=3", "?limit=1"} {
		if r := e.do(http.MethodGet, "/logs/verify"+bad, admin, nil); r.status != http.StatusBadRequest {
			t.Errorf("%q: %d %s", bad, r.status, r.body)
		}
	}
}
