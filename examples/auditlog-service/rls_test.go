package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/schema"
)

func TestServiceRowLevelSecurityConfiguration(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := []string{"AUDIT_DATABASE_URL=postgres://x@127.0.0.1/db", "AUDIT_JWT_SECRET=" + e2eSecret}
	for value, want := range map[string]string{"": "", "off": "", "OFF": "", "auditlog_reader": "auditlog_reader"} {
		cfg, err := loadConfig(append(env, envRowLevelSecurity+"="+value), logger)
		if err != nil || cfg.ReaderRole != want {
			t.Errorf("%s=%q: role %q, %v; want %q", envRowLevelSecurity, value, cfg.ReaderRole, err, want)
		}
	}
	for _, value := range []string{"bad\x01role", strings.Repeat("r", 64)} {
		if _, err := loadConfig(append(env, envRowLevelSecurity+"="+value), logger); err == nil || !strings.Contains(err.Error(), envRowLevelSecurity) {
			t.Errorf("%s=%q: %v", envRowLevelSecurity, value, err)
		}
	}
}

func TestServiceRowLevelSecurity(t *testing.T) {
	db := pgtest.NewEmpty(t) // the service migrates it
	ctx := context.Background()
	role := db.Schema + "_reader"
	q := pgx.Identifier{role}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE ROLE `+q+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// After the service stopped, before the schema is dropped.
		for _, st := range []string{`DROP OWNED BY ` + q, `DROP ROLE ` + q} {
			if _, err := db.Pool.Exec(context.Background(), st); err != nil {
				t.Errorf("%s: %v", st, err)
			}
		}
	})

	env := []string{"AUDIT_DATABASE_URL=" + pgtest.URL(), "AUDIT_DB_SCHEMA=" + db.Schema, "AUDIT_JWT_SECRET=" + e2eSecret,
		"AUDIT_FLUSH_INTERVAL=5ms", "AUDITLOG_LISTEN_ADDR=127.0.0.1:0", "AUDITLOG_RATE_LIMIT=off"}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The table owner cannot be the reader: the policies would protect nothing.
	var owner string
	if err := db.Pool.QueryRow(ctx, `SELECT current_user`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	err := run(ctx, append(env, envRowLevelSecurity+"="+owner), logger, nil)
	if !errors.Is(err, schema.ErrReaderBypassesRLS) {
		t.Fatalf("owner as reader role: %v", err)
	}

	sctx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, append(env, envRowLevelSecurity+"="+role), logger, func(addr string) { ready <- addr })
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr + "/api/v1"
	case err := <-done:
		t.Fatalf("the service stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the service did not start")
	}
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	tenantsOf := func(token string) []string {
		t.Helper()
		code, b := call("GET", "/logs?action=invoice.sent", token, "")
		var page struct {
			Logs []struct {
				TenantID string `json:"tenant_id"`
			} `json:"logs"`
		}
		if err := json.Unmarshal(b, &page); code != 200 || err != nil {
			t.Fatalf("list: %d %s", code, b)
		}
		var out []string
		for _, r := range page.Logs {
			out = append(out, r.TenantID)
		}
		return out
	}

	admin := e2eToken(t, "root", core.ActorPlatformAdmin, "")
	for _, id := range []string{"acme", "other"} {
		if code, b := call("POST", "/tenants", admin, `{"id":"`+id+`"}`); code != 201 {
			t.Fatalf("register %s: %d %s", id, code, b)
		}
		if code, b := call("POST", "/logs", e2eToken(t, "billing", core.ActorService, id), `{"action":"invoice.sent"}`); code != 201 {
			t.Fatalf("ingest for %s: %d %s", id, code, b)
		}
	}
	user := e2eToken(t, "alice", core.ActorTenantUser, "acme")
	if got := tenantsOf(user); len(got) != 1 || got[0] != "acme" {
		t.Errorf("acme's user sees records of %v, want acme's one", got)
	}
	if got := tenantsOf(admin); len(got) != 2 {
		t.Errorf("the administrator sees records of %v, want both tenants'", got)
	}

	// The service's own request records still go through the owner's COPY.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE kind = 'http'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no request was recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The reads are the database's to allow: with the policies' function answering no, the API
	// returns nothing although its WHERE clauses match.
	if _, err := db.Pool.Exec(ctx, `CREATE OR REPLACE FUNCTION `+pgx.Identifier{db.Schema, schema.ScopeFunction}.Sanitize()+
		`(tenant_id text) RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$ BEGIN RETURN false; END $$`); err != nil {
		t.Fatal(err)
	}
	if got := tenantsOf(user); len(got) != 0 {
		t.Errorf("with the policies closed acme's user still sees %v", got)
	}
	if got := tenantsOf(admin); len(got) != 0 {
		t.Errorf("with the policies closed the administrator still sees %v", got)
	}
}
