package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// childFlag makes the test binary run the service itself: the end-to-end test starts it as a
// separate process, as it runs in production.
const childFlag = "E2E_AUDITLOG_SERVICE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childFlag) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const e2eSecret = "e2e-secret-0123456789abcdef0123456789"

func e2eToken(t *testing.T, sub string, typ core.ActorType, tenant string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "actor_type": string(typ), "exp": time.Now().Add(time.Hour).Unix()}
	if tenant != "" {
		c["tenant_id"] = tenant
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(e2eSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freeAddr returns a loopback address for the service to listen on, which no connection takes
// before it does (see testnet.FreePort).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testnet.FreeAddr(t)
}

// syncBuffer collects the child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServiceEndToEnd(t *testing.T) {
	db := pgtest.NewEmpty(t) // the service migrates it
	addr := freeAddr(t)
	base := "http://" + addr + "/api/v1"
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		childFlag+"=1",
		"AUDIT_DATABASE_URL="+pgtest.URL(),
		"AUDIT_DB_SCHEMA="+db.Schema,
		"AUDIT_JWT_SECRET="+e2eSecret,
		"AUDIT_FLUSH_INTERVAL=5ms",
		"AUDITLOG_LISTEN_ADDR="+addr,
		"AUDITLOG_CURSOR_KEY=e2e-cursor-key-0123456789abcdef0123456789",
		"AUDITLOG_RATE_LIMIT=200",
		"AUDITLOG_MIN_CLEANUP_AGE=1h",
		"AUDITLOG_RETENTION_INTERVAL=1h",
		"AUDITLOG_VIEWER_TOKEN_KEY=e2e-viewer-key-0123456789abcdef0123456789",
	)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("service output:\n%s", out.String())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the service exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not become healthy: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// /health reports the audit writer's condition too.
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/health"); err != nil {
		t.Fatal(err)
	} else {
		var health struct {
			Status string `json:"status"`
			Writer struct {
				State     string `json:"state"`
				QueueSize int    `json:"queue_size"`
			} `json:"audit_writer"`
		}
		err := json.NewDecoder(res.Body).Decode(&health)
		res.Body.Close()
		if err != nil || health.Status != "ok" || health.Writer.State != "healthy" || health.Writer.QueueSize <= 0 {
			t.Errorf("/health: %+v (%v)", health, err)
		}
	}

	admin := e2eToken(t, "root", core.ActorPlatformAdmin, "")
	user := e2eToken(t, "alice", core.ActorTenantUser, "acme")
	svc := e2eToken(t, "billing", core.ActorService, "acme")
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}

	if code, b := call("POST", "/tenants", admin, `{"id":"acme","name":"Acme"}`); code != 201 {
		t.Fatalf("register tenant: %d %s", code, b)
	}

	// A live stream, fed by a writer in this (another) process and by the service's own ingest.
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", base+"/logs/stream?action_prefix=invoice.", nil)
	req.Header.Set("Authorization", "Bearer "+user)
	req.Header.Set("Accept", "text/event-stream")
	stream, err := (&http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second}}).Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	events := make(chan string, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") || strings.HasPrefix(line, "event: error") {
				events <- line
			}
		}
	}()

	w, err := core.Open(context.Background(), core.Config{DatabaseURL: pgtest.URL(), Schema: db.Schema, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	appID, err := core.Log(core.WithActor(context.Background(), core.Actor{ID: "job", Type: core.ActorSystem}), w,
		core.Entry{Action: "invoice.paid", Tenant: core.Tenant{ID: "acme"}, ResourceType: "invoices", ResourceID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := w.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	code, b := call("POST", "/logs", svc, `{"action":"invoice.sent","resource_type":"invoices","resource_id":"2"}`)
	if code != 201 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	var created struct{ ID string }
	_ = json.Unmarshal(b, &created)
	seen := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for !seen[appID.String()] || !seen[created.ID] {
		select {
		case line, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			var rec struct {
				ID       string `json:"id"`
				Action   string `json:"action"`
				TenantID string `json:"tenant_id"`
			}
			_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &rec)
			if rec.TenantID == "acme" && strings.HasPrefix(rec.Action, "invoice.") {
				seen[rec.ID] = true
			} else if !strings.HasPrefix(rec.Action, "auditlog.") {
				t.Fatalf("stream sent %s", line)
			}
		case <-timeout:
			t.Fatalf("stream saw %v", seen)
		}
	}

	// Search, page, export, stats, cleanup.
	code, b = call("GET", "/logs?action_prefix=invoice.&limit=1", user, "")
	var page struct {
		Logs       []map[string]any `json:"logs"`
		NextCursor string           `json:"next_cursor"`
	}
	_ = json.Unmarshal(b, &page)
	if code != 200 || len(page.Logs) != 1 || page.NextCursor == "" {
		t.Fatalf("list: %d %s", code, b)
	}
	code, b = call("GET", "/logs?action_prefix=invoice.&limit=1&cursor="+page.NextCursor, user, "")
	if code != 200 || !strings.Contains(string(b), `"logs":[{`) {
		t.Fatalf("second page: %d %s", code, b)
	}
	if code, b = call("GET", "/logs/export?format=ndjson&action_prefix=invoice.", user, ""); code != 200 || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("export: %d %s", code, b)
	}
	if code, b = call("GET", "/logs/stats?action_prefix=invoice.", user, ""); code != 200 || !strings.Contains(string(b), `"total":2`) {
		t.Fatalf("stats: %d %s", code, b)
	}
	_, _ = core.Log(context.Background(), w, core.Entry{Action: "old", Tenant: core.Tenant{ID: "acme"}, OccurredAt: time.Now().Add(-48 * time.Hour)})
	_ = w.Flush(fctx)
	if code, b = call("DELETE", "/logs/cleanup?tenant_id=acme&older_than=24h", admin, ""); code != 200 || !strings.Contains(string(b), `"deleted":1`) {
		t.Fatalf("cleanup: %d %s", code, b)
	}
	if code, b = call("GET", "/nowhere", user, ""); code != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("unknown route: %d %s", code, b)
	}
	if code, b = call("GET", "/logs", "not-a-token", ""); code != 401 {
		t.Fatalf("bad token: %d %s", code, b)
	}

	// The service recorded its requests (the middleware) and its own use (the API).
	pollCount := func(where string, want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var n int
			if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE `+where).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rows, want %d", where, n, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	pollCount("kind = 'http' AND route = '/api/v1/logs' AND actor_id = 'alice' AND tenant_id = 'acme'", 2)
	pollCount("action = 'auditlog.search' AND actor_id = 'alice' AND request_id IS NOT NULL AND ip IS NOT NULL", 2)
	pollCount("action = 'auditlog.cleanup' AND tenant_id = 'acme' AND actor_id = 'root'", 1)
	pollCount("kind = 'http' AND severity = 'warning' AND metadata->>'auth_failure' IS NOT NULL", 1)

	// The log viewer at /, and a viewer token minted for a customer of acme: it reads acme's
	// records and writes nothing.
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/"); err != nil {
		t.Fatal(err)
	} else {
		page, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(page), `src="/api/v1/viewer/viewer.js"`) {
			t.Fatalf("GET /: %d %s", res.StatusCode, page)
		}
	}
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/viewer/viewer.js"); err != nil {
		t.Fatal(err)
	} else {
		script, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(script), "import") {
			t.Fatalf("the viewer's script: %d", res.StatusCode)
		}
	}
	st, body := call("POST", "/viewer/tokens", svc, `{"actor":"customer-1","ttl_seconds":300}`)
	var minted struct {
		Token string `json:"token"`
	}
	if st != http.StatusCreated || json.Unmarshal(body, &minted) != nil || minted.Token == "" {
		t.Fatalf("minting a viewer token: %d %s", st, body)
	}
	if st, body := call("GET", "/logs", minted.Token, ""); st != http.StatusOK {
		t.Fatalf("GET /logs with a viewer token: %d %s", st, body)
	}
	if st, _ := call("GET", "/logs?tenant_id=globex", minted.Token, ""); st != http.StatusForbidden {
		t.Fatalf("another tenant with a viewer token: %d", st)
	}
	if st, _ := call("POST", "/logs", minted.Token, `{"action":"viewer.write"}`); st != http.StatusForbidden {
		t.Fatalf("a write with a viewer token: %d", st)
	}
	pollCount("kind = 'http' AND route = '/api/v1/logs' AND actor_id = 'customer-1' AND actor_auth = 'viewer:HS256' AND tenant_id = 'acme'", 3)

	// SIGTERM: streams are told, the process exits cleanly.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ended bool
	for line := range events {
		if strings.HasPrefix(line, "event: error") {
			ended = true
		}
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not stop")
	}
	if !ended {
		t.Fatal("the stream was not told about the shutdown")
	}
}

func TestServiceConfiguration(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	_, err := loadConfig([]string{"AUDITLOG_RATE_LIMIT=fast", "AUDITLOG_MAX_PAGE_SIZE=-3", "AUDITLOG_RETENTION=forever",
		"AUDITLOG_CURSOR_KEY=short", "AUDITLOG_LISTEN_ADRR=:1", "AUDITLOG_BASE_PATH=api", "AUDITLOG_WRITE_TIMEOUT=never",
		"AUDITLOG_MAX_EXPORTS=0", "AUDITLOG_MAX_EXPORTS_TOTAL=many", "AUDITLOG_VIEWER_TOKEN_KEY=short"}, logger)
	for _, want := range []string{"AUDITLOG_RATE_LIMIT", "AUDITLOG_MAX_PAGE_SIZE", "AUDITLOG_RETENTION", "AUDITLOG_CURSOR_KEY",
		"AUDITLOG_BASE_PATH", "AUDIT_DATABASE_URL", "AUDIT_JWT_SECRET", "AUDITLOG_WRITE_TIMEOUT", "AUDITLOG_MAX_EXPORTS:",
		"AUDITLOG_MAX_EXPORTS_TOTAL", "AUDITLOG_VIEWER_TOKEN_KEY"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	if !strings.Contains(logs.String(), "did_you_mean=AUDITLOG_LISTEN_ADDR") {
		t.Errorf("no warning for a misspelt variable: %s", logs.String())
	}
	cfg, err := loadConfig([]string{"AUDIT_DATABASE_URL=postgres://x@127.0.0.1/db", "AUDIT_JWT_SECRET=" + e2eSecret,
		"AUDITLOG_RATE_LIMIT=off", "AUDITLOG_RETENTION=90d", "AUDITLOG_WEBSOCKET_ORIGINS=a.example, b.example",
		"AUDITLOG_WRITE_TIMEOUT=45s", "AUDITLOG_MAX_EXPORTS=3", "AUDITLOG_MAX_EXPORTS_TOTAL=5"}, logger)
	if err != nil || cfg.RateLimit >= 0 || cfg.Retention != 90*24*time.Hour || len(cfg.WebSocketOrigins) != 2 || cfg.ListenAddr != ":8080" ||
		cfg.WriteTimeout != 45*time.Second || cfg.MaxExports != 3 || cfg.MaxExportsTotal != 5 {
		t.Fatalf("config: %v %+v", err, cfg)
	}
	if err := run(context.Background(), []string{"AUDIT_JWT_SECRET=" + e2eSecret}, logger, nil); err == nil || !strings.Contains(err.Error(), "AUDIT_DATABASE_URL") {
		t.Fatalf("run without a database: %v", err)
	}
}
