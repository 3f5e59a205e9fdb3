package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// scrape reads /metrics and returns each sample line's value by its name and labels as written.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: %d", res.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sample returns the value of the sample named name whose labels include every one of labels
// (`key="value"`), and whether there is one.
func sample(m map[string]float64, name string, labels ...string) (float64, bool) {
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			return v, true
		}
	}
	return 0, false
}

func TestServiceMetricsAndProbes(t *testing.T) {
	db := pgtest.NewEmpty(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	env := []string{
		"AUDIT_DATABASE_URL=" + pgtest.URL(), "AUDIT_DB_SCHEMA=" + db.Schema, "AUDIT_JWT_SECRET=" + e2eSecret,
		"AUDIT_FLUSH_INTERVAL=5ms", "AUDITLOG_LISTEN_ADDR=" + addr, "AUDITLOG_RATE_LIMIT=off",
		"AUDITLOG_RETENTION=off",
	}
	go func() {
		done <- run(ctx, env, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string) { close(ready) })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the service stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the service did not start")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	if code, body := get("/healthz", ""); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := get("/readyz", ""); code != 200 || !strings.Contains(body, `"state":"healthy"`) {
		t.Fatalf("/readyz: %d %s", code, body)
	}

	// Every API request is recorded through the service's writer: n requests, n records.
	admin := e2eToken(t, "root", core.ActorPlatformAdmin, "")
	const n = 7
	for range n {
		if code, body := get("/api/v1/tenants", admin); code != 200 {
			t.Fatalf("GET /tenants: %d %s", code, body)
		}
	}
	if code, body := get("/api/v1/logs/verify?no_tenant=true", admin); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("verify: %d %s", code, body)
	}
	if code, _ := get("/api/v1/tenants/nope", admin); code != 404 {
		t.Fatalf("GET /tenants/nope: %d, want 404", code)
	}
	const requests = n + 2

	// The requests' records, the verification's own record among them, are all stored once the
	// writer is idle: wait for a scrape that shows it idle, with every record it accepted written
	// and the table holding as many rows as it wrote. Waiting for a count of records instead
	// would race with a record accepted after the response of its request.
	var m map[string]float64
	var stored int
	deadline := time.Now().Add(30 * time.Second)
	for {
		m = scrape(t, addr)
		written, _ := sample(m, "auditkit_writer_records_written_total")
		accepted, _ := sample(m, "auditkit_writer_records_accepted_total")
		depth, _ := sample(m, "auditkit_writer_queue_depth")
		dropped, _ := sample(m, "auditkit_writer_records_dropped_total")
		failed, _ := sample(m, "auditkit_writer_records_failed_total")
		if dropped > 0 || failed > 0 {
			break // lost records: reported below
		}
		if written >= requests && written == accepted && depth == 0 {
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if float64(stored) == written {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer never settled with at least %d records written and as many stored (%d rows): %v", requests, stored, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := map[string]float64{
		"auditkit_writer_records_written_total":  float64(stored),
		"auditkit_writer_records_accepted_total": float64(stored),
		"auditkit_writer_records_dropped_total":  0,
		"auditkit_writer_records_failed_total":   0,
		"auditkit_writer_queue_depth":            0,
		"auditkit_writer_health":                 0,
		"auditkit_writer_spool_size_bytes":       0,
	}
	for name, v := range want {
		if got, ok := sample(m, name); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	if stored < requests {
		t.Errorf("%d records stored, want at least %d", stored, requests)
	}
	if v, _ := sample(m, "auditkit_writer_queue_capacity"); v <= 0 {
		t.Errorf("queue capacity %v", v)
	}
	batches, _ := sample(m, "auditkit_writer_batches_total")
	if c, ok := sample(m, "auditkit_writer_batch_duration_seconds_count", `outcome="ok"`); !ok || c < batches || batches < 1 {
		t.Errorf("batch duration count %v (present %v), want at least the %v batches", c, ok, batches)
	}
	if s, _ := sample(m, "auditkit_writer_batch_duration_seconds_sum", `outcome="ok"`); s <= 0 {
		t.Errorf("batch duration sum %v, want > 0", s)
	}
	if v, _ := sample(m, "auditkit_api_requests_total", `http_route="/api/v1/tenants"`, `http_response_status_code="200"`); v != n {
		t.Errorf("requests to /api/v1/tenants = %v, want %d", v, n)
	}
	if v, _ := sample(m, "auditkit_api_requests_total", `http_route="/api/v1/tenants/:id"`, `http_response_status_code="404"`); v != 1 {
		t.Errorf("404s of /api/v1/tenants/:id = %v, want 1", v)
	}
	if v, _ := sample(m, "auditkit_api_request_duration_seconds_count", `http_route="/api/v1/logs/verify"`); v != 1 {
		t.Errorf("verify request duration count = %v, want 1", v)
	}
	if v, _ := sample(m, "auditkit_verify_results_total", `result="ok"`); v != 1 {
		t.Errorf("verify ok = %v, want 1", v)
	}
	if v, ok := sample(m, "auditkit_verify_results_total", `result="broken"`); ok && v != 0 {
		t.Errorf("verify broken = %v, want 0", v)
	}

	// A database that refuses the writer (its table is gone) makes the service not ready, while
	// the process is still alive.
	if _, err := db.Pool.Exec(ctx, `DROP TABLE `+pgx.Identifier{db.Schema, "audit_logs"}.Sanitize()+` CASCADE`); err != nil {
		t.Fatal(err)
	}
	get("/api/v1/tenants", admin) // its record cannot be written
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := get("/readyz", "")
		if code == 503 {
			var h struct {
				State string `json:"state"`
			}
			if err := json.Unmarshal([]byte(body), &h); err != nil || h.State != "failing" {
				t.Fatalf("/readyz 503 body %s (%v), want state failing", body, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s after the table was dropped", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := get("/healthz", ""); code != 200 {
		t.Fatalf("/healthz %d while the writer fails, want 200", code)
	}
	if v, _ := sample(scrape(t, addr), "auditkit_writer_health"); v != float64(core.Failing) {
		t.Errorf("auditkit_writer_health = %v, want %d (failing)", v, core.Failing)
	}
}
