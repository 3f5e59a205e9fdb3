package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// TestCurlDataIsRedacted posts JSON the way `curl -d` sends it, as
// application/x-www-form-urlencoded, to the served example: the stored request body is the
// redacted JSON, not a form whose key holds the password.
func TestCurlDataIsRedacted(t *testing.T) {
	pg := pgtest.NewEmpty(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	exited := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		exited <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", pgtest.URL(), "-schema", pg.Schema}, &out, &errOut)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("no exit after cancellation")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		select {
		case code := <-exited:
			t.Fatalf("exited early with %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usage printed within 30s: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond) // poll for the usage text
	}
	var first *http.Request
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "curl ") && strings.Contains(line, "-X POST") {
			req, err := parseCurl(line)
			if err != nil {
				t.Fatalf("%v in %s", err, line)
			}
			first = req
			break
		}
	}
	if first == nil {
		t.Fatalf("no POST command printed: %s", out.String())
	}
	req, err := http.NewRequest("POST", first.URL.String(), strings.NewReader(`{"name":"Eve","password":"hunter2"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", first.Header.Get("Authorization"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
	req.Header.Set("X-Request-ID", "curl-d")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel() // the example drains its writer when it stops
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after cancellation")
	}
	rows := storedRows(t, pg, "request_id = 'curl-d' AND kind = 'http'")
	if len(rows) != 1 {
		t.Fatalf("%d http rows", len(rows))
	}
	if all := rows[0].all; strings.Contains(all, "hunter2") ||
		!strings.Contains(all, `"request_body":{"name": "Eve", "password": "[REDACTED]"}`) {
		t.Fatalf("stored %s", all)
	}
}
