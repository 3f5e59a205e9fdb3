package ginaudit_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

// apiInsertFat inserts n records of about 8 KiB each for tenant in one statement, so that an
// export or a stream of them is far larger than the socket buffers between server and client.
func apiInsertFat(e *apiEnv, tenant string, n int) {
	e.t.Helper()
	// The padding is in a column the full-text index does not cover, so that inserting is quick.
	_, err := e.db.Pool.Exec(context.Background(), `INSERT INTO audit_logs (id, occurred_at, kind, action, tenant_id, after)
		SELECT gen_random_uuid(), now() - g * interval '1 microsecond', 'custom', 'fat.row', $1,
			jsonb_build_object('pad', repeat(md5(g::text), 256))
		FROM generate_series(1, $2) g`, tenant, n)
	if err != nil {
		e.t.Fatal(err)
	}
}

// apiStalledClient sends a GET with token over a raw connection and never reads the answer.
func apiStalledClient(e *apiEnv, path, token string, headers ...string) net.Conn {
	e.t.Helper()
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	// A small receive buffer, without the kernel's autotuning (which grows it to 32 MiB on
	// Linux), so that what the server can push before its writes block is a few MiB at most.
	if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	req := "GET /api/v1" + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nAuthorization: Bearer " + token + "\r\n"
	for i := 0; i+1 < len(headers); i += 2 {
		req += headers[i] + ": " + headers[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// poll calls f until it reports true, failing after 20s.
func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An export whose client stops reading is cut off after WriteTimeout: its database connection
// and its export slot are released, and the next export runs. While it holds its slot, more
// exports are refused with JSON errors: 429 for the tenant, 503 once the global cap is reached.
func TestAPIExportSlowReader(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) {
		o.WriteTimeout = time.Second
		o.MaxExports = 1
		o.MaxExportsTotal = 1
	})
	apiInsertFat(e, "acme", 2000) // about 16 MiB of NDJSON
	acme := apiToken(t, "u", core.ActorTenantUser, "acme")
	globex := apiToken(t, "g", core.ActorTenantUser, "globex")

	started := time.Now()
	stalled := apiStalledClient(e, "/logs/export?format=ndjson", acme)
	// Wait for the export to be running (the answer's first line): a probe that came first would
	// take the slot and have the stalled export refused instead.
	if err := stalled.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReaderSize(stalled, 16).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("stalled export: %q %v", line, err)
	}
	// A cheap export (nothing matches) still needs a slot.
	const probe = "/logs/export?format=csv&action=nothing.matches"
	poll(t, "the stalled export holds its slot", func() bool {
		r := e.do(http.MethodGet, probe, acme, nil)
		if r.status == http.StatusTooManyRequests {
			if r.errCode() != "too_many_exports" || r.header.Get("Retry-After") == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("refused export: %v %s", r.header, r.body)
			}
			return true
		}
		return false
	})
	if r := e.do(http.MethodGet, probe, globex, nil); r.status != http.StatusServiceUnavailable || r.errCode() != "exports_busy" {
		t.Fatalf("an export over the global cap: %d %s", r.status, r.body)
	}

	poll(t, "an export after the stalled one was cut off", func() bool {
		return e.do(http.MethodGet, probe, acme, nil).status == http.StatusOK
	})
	if waited := time.Since(started); waited < time.Second {
		t.Fatalf("the stalled export was released after %v, before its write deadline", waited)
	}
	if r := e.do(http.MethodGet, probe, globex, nil); r.status != http.StatusOK {
		t.Fatalf("another tenant's export after the release: %d %s", r.status, r.body)
	}
	poll(t, "the export's database connection is released", func() bool {
		return e.db.Pool.Stat().AcquiredConns() == 0
	})
	// The server closed the stalled connection, truncated: what is left to read ends, short of
	// the whole export.
	if err := stalled.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, stalled)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the stalled connection was left open (%d bytes read)", n)
	}
	if n >= 12<<20 {
		t.Fatalf("the stalled client could still read %d bytes", n)
	}
	e.flush()
	if c := e.count("action = 'auditlog.export' AND metadata->>'complete' = 'false' AND tenant_id = 'acme'"); c != 1 {
		t.Fatalf("%d incomplete exports recorded", c)
	}
	// A complete export still works end to end with the deadline in place.
	res, err := apiClient.Do(apiReq(t, e.base+"/logs/export?format=ndjson", acme))
	if err != nil {
		t.Fatal(err)
	}
	body := apiReadAll(t, res)
	if res.StatusCode != 200 || res.Trailer.Get("X-Export-Status") != "complete" || strings.Count(string(body), "\n") < 2000 {
		t.Fatalf("full export: %d %v, %d bytes", res.StatusCode, res.Trailer, len(body))
	}
}

// An SSE client that stops reading is cut off after WriteTimeout, which frees its MaxStreams
// slot.
func TestAPIStreamSlowReader(t *testing.T) {
	e := apiNewEnvWith(t, func(o *store.Options) { o.StreamBuffer = 20000 }, func(o *ginaudit.APIOptions) {
		o.WriteTimeout = time.Second
		o.MaxStreams = 1
	})
	acme := apiToken(t, "u", core.ActorTenantUser, "acme")
	stalled := apiStalledClient(e, "/logs/stream", acme, "Accept", "text/event-stream")
	// Wait for the stream to be open: the answer's first line.
	if err := stalled.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReaderSize(stalled, 16).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("stream: %q %v", line, err)
	}
	if r := e.doStream("/logs/stream", acme); r.status != http.StatusTooManyRequests {
		t.Fatalf("a second stream while the first is open: %d %s", r.status, r.body)
	}
	apiInsertFat(e, "acme", 2000) // about 16 MiB of events, which the client never reads
	poll(t, "a new stream after the stalled one was cut off", func() bool {
		return e.doStream("/logs/stream", acme).status == http.StatusOK
	})
}

// A platform administrator's work across every tenant is recorded without a tenant, even behind
// Middleware and with a token that names a tenant: that tenant's users must not read the
// administrator's cross-tenant filters, in the API's records or in the request's own record.
func TestAPIAllTenantsUseCarriesNoTenant(t *testing.T) {
	e := apiNewEnv(t, nil)
	v := apiVerifier(t)
	r := gin.New()
	api := r.Group("/api/v1")
	api.Use(ginaudit.Middleware(ginaudit.Options{Writer: e.w, Verifier: v}))
	if err := ginaudit.MountAPI(api, e.st, ginaudit.APIOptions{Verifier: v, Writer: e.w, RateLimit: -1}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	apiSeed(e, "acme", 3)
	admin := apiToken(t, "root", core.ActorPlatformAdmin, "acme")
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	get := func(path, token string) *http.Response {
		t.Helper()
		res, err := apiClient.Do(apiReq(t, srv.URL+"/api/v1"+path, token))
		if err != nil {
			t.Fatal(err)
		}
		apiReadAll(t, res)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", path, res.StatusCode)
		}
		return res
	}
	for _, p := range []string{"/logs?q=crossmark", "/logs/export?format=csv&q=crossmark", "/logs/stats?q=crossmark"} {
		get(p, admin)
	}
	get("/logs?tenant_id=acme&action=namedmark", admin) // naming the tenant: recorded in it
	e.flush()
	for _, action := range []string{"auditlog.search", "auditlog.export", "auditlog.stats"} {
		if n := e.count("action = $1 AND tenant_id IS NULL AND metadata->>'scope' = 'all_tenants' AND metadata->'filters'->>'q' = 'crossmark'", action); n != 1 {
			t.Errorf("%s across tenants: %d tenantless records", action, n)
		}
	}
	if n := e.count("tenant_id IS NOT NULL AND (metadata::text LIKE '%crossmark%' OR query::text LIKE '%crossmark%')"); n != 0 {
		t.Errorf("%d records of the cross-tenant requests carry a tenant", n)
	}
	if n := e.count("tenant_id = 'acme' AND action = 'auditlog.search' AND metadata->'filters'->>'action' = 'namedmark'"); n != 1 {
		t.Errorf("the search of a named tenant is recorded in it %d times", n)
	}
	// The tenant's users see none of it.
	res, err := apiClient.Do(apiReq(t, srv.URL+"/api/v1/logs?limit=200", user))
	if err != nil {
		t.Fatal(err)
	}
	if body := apiReadAll(t, res); strings.Contains(string(body), "crossmark") {
		t.Fatalf("a tenant user reads the administrator's cross-tenant filters: %s", body)
	}
}

// An Idempotency-Key is remembered for the store's IdempotencyWindow only: within it a retry is
// replayed and writes nothing; after it the same key (with the same or another body) writes anew.
func TestAPIIdempotencyKeyExpires(t *testing.T) {
	e := apiNewEnvWith(t, func(o *store.Options) { o.IdempotencyWindow = time.Second }, nil)
	e.registerTenants("acme")
	svc := apiToken(t, "svc", core.ActorService, "acme")
	body := []byte(`{"logs":[{"action":"idem.a"},{"action":"idem.b"}]}`)
	type result struct {
		IDs []string `json:"ids"`
	}
	var first, again result
	r := e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "expiring-key")
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", r.status, r.header, r.body)
	}
	r.decode(t, &first)
	r = e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "expiring-key")
	r.decode(t, &again)
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" || again.IDs[0] != first.IDs[0] {
		t.Fatalf("retry within the window: %d %v %s", r.status, r.header, r.body)
	}
	poll(t, "the key expires", func() bool {
		r = e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "expiring-key")
		if r.status != 201 {
			t.Fatalf("retry: %d %s", r.status, r.body)
		}
		return r.header.Get("Idempotent-Replayed") == ""
	})
	r.decode(t, &again)
	if again.IDs[0] == first.IDs[0] {
		t.Fatal("the expired key replayed the first response")
	}
	if n := e.count("action IN ('idem.a', 'idem.b')"); n != 4 {
		t.Fatalf("%d records written, want 2 by the first request and 2 after the key expired", n)
	}
	// Within the window another body is refused; once the key expires, it is accepted.
	poll(t, "the key expires for another body", func() bool {
		r := e.do(http.MethodPost, "/logs/bulk", svc, []byte(`{"logs":[{"action":"idem.c"}]}`), "Idempotency-Key", "expiring-key")
		switch {
		case r.status == http.StatusUnprocessableEntity && r.errCode() == "idempotency_key_reused":
			return false
		case r.status != 201:
			t.Fatalf("another body: %d %s", r.status, r.body)
		}
		return true
	})
	if n := e.count("action = 'idem.c'"); n != 1 {
		t.Fatalf("another body after expiry wrote %d records", n)
	}
}

// A bulk request of several INSERT chunks (500 records each) that the database refuses in its
// second chunk writes nothing: not the first chunk, not the Idempotency-Key.
func TestAPIBulkRefusedByTheDatabaseWritesNothing(t *testing.T) {
	e := apiNewEnv(t, nil)
	e.registerTenants("acme")
	svc := apiToken(t, "svc", core.ActorService, "acme")
	// A rule only the database enforces: the API's validation accepts the record.
	if _, err := e.db.Pool.Exec(context.Background(), `ALTER TABLE audit_logs ADD CONSTRAINT no_poison CHECK (action <> 'poison.pill')`); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`{"logs":[`)
	for i := range 800 {
		if i > 0 {
			b.WriteByte(',')
		}
		action := "bulk.ok"
		if i == 700 {
			action = "poison.pill"
		}
		b.WriteString(`{"action":"` + action + `","resource_id":"` + strconv.Itoa(i) + `"}`)
	}
	b.WriteString(`]}`)
	body := []byte(b.String())
	before := e.count("TRUE")
	r := e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "bulk-800")
	if r.status != http.StatusInternalServerError || r.errCode() != "internal" {
		t.Fatalf("bulk refused by the database: %d %s", r.status, r.body)
	}
	if n := e.count("TRUE"); n != before {
		t.Fatalf("a refused bulk request left %d rows", n-before)
	}
	var keys int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_idempotency_keys`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if keys != 0 {
		t.Fatalf("the refused request kept its Idempotency-Key (%d keys)", keys)
	}
	// Once the database accepts it, the same request with the same key writes every record.
	if _, err := e.db.Pool.Exec(context.Background(), `ALTER TABLE audit_logs DROP CONSTRAINT no_poison`); err != nil {
		t.Fatal(err)
	}
	r = e.do(http.MethodPost, "/logs/bulk", svc, body, "Idempotency-Key", "bulk-800")
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "" || e.count("tenant_id = 'acme'") != 800 {
		t.Fatalf("the retry: %d %s", r.status, apiTruncateTest(string(r.body)))
	}
}
