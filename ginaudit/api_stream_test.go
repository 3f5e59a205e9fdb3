package ginaudit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
)

func apiWSURL(e *apiEnv, q string) string {
	return strings.Replace(e.base, "http", "ws", 1) + "/logs/stream?" + q
}

func TestAPIStreamSSE(t *testing.T) {
	e := apiNewEnv(t, nil)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	s := e.openSSE(user, url.Values{"action_prefix": {"invoice."}})
	var want []*core.Record
	for i := range 5 {
		r := &core.Record{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}, ResourceID: string(rune('a' + i))}
		want = append(want, r, &core.Record{Kind: core.KindCustom, Action: "user.login", Tenant: core.Tenant{ID: "acme"}})
	}
	e.write(want...)
	got := map[string]bool{}
	for len(got) < 5 {
		ev := s.next(t)
		var rec store.Record
		if ev.name != "log" || json.Unmarshal([]byte(ev.data), &rec) != nil || rec.ID.String() != ev.id || rec.Action != "invoice.sent" {
			t.Fatalf("event %+v", ev)
		}
		got[ev.id] = true
	}
	for i := 0; i < len(want); i += 2 {
		if !got[want[i].ID.String()] {
			t.Fatalf("record %s not streamed", want[i].ID)
		}
	}
	// The stream was recorded.
	e.flush()
	if n := e.count("action = 'auditlog.stream' AND tenant_id = 'acme' AND metadata->'filters'->>'action_prefix' = 'invoice.'"); n != 1 {
		t.Fatalf("stream opening recorded %d times", n)
	}
}

func TestAPIStreamEndsWithTheToken(t *testing.T) {
	e := apiNewEnv(t, nil)
	tok := apiToken(t, "u", core.ActorTenantUser, "acme", "exp", time.Now().Add(2*time.Second).Unix())
	s := e.openSSE(tok, nil)
	ev := s.next(t)
	if ev.name != "error" || !strings.Contains(ev.data, `"token_expired"`) {
		t.Fatalf("event %+v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok = apiToken(t, "u", core.ActorTenantUser, "acme", "exp", time.Now().Add(2*time.Second).Unix())
	ws, _, err := websocket.Dial(ctx, apiWSURL(e, "access_token="+tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for {
		_, msg, err := ws.Read(ctx)
		if err == nil && strings.Contains(string(msg), `"action":"auditlog.stream"`) {
			continue // opening the stream is recorded, and streamed
		}
		if websocket.CloseStatus(err) != ginaudit.StreamCloseTokenExpired {
			t.Fatalf("WebSocket ended with %v (message %s)", err, msg)
		}
		break
	}
}

func TestAPIStreamLaggingClient(t *testing.T) {
	e := apiNewEnvWith(t, func(o *store.Options) { o.StreamBuffer = 1 }, nil)
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	s := e.openSSE(user, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, apiWSURL(e, "access_token="+user), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	var recs []*core.Record
	for range 500 {
		recs = append(recs, &core.Record{Kind: core.KindCustom, Action: "burst", Tenant: core.Tenant{ID: "acme"}})
	}
	e.write(recs...)
	for {
		ev := s.next(t)
		if ev.name == "error" {
			if !strings.Contains(ev.data, `"lagged"`) {
				t.Fatalf("SSE ended with %+v", ev)
			}
			break
		}
	}
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != ginaudit.StreamCloseLagged {
				t.Fatalf("WebSocket ended with %v", err)
			}
			break
		}
	}
}

func TestAPIStreamLimitsAndOrigins(t *testing.T) {
	e := apiNewEnv(t, func(o *ginaudit.APIOptions) {
		o.MaxStreams = 1
		o.WebSocketOrigins = []string{"trusted.example"}
		o.StreamHeartbeat = 50 * time.Millisecond
	})
	user := apiToken(t, "u", core.ActorTenantUser, "acme")
	s := e.openSSE(user, nil)
	for keepAlives := 0; keepAlives < 2; {
		if ev := s.nextAny(t); ev.name == ":" && ev.data == "keep-alive" {
			keepAlives++
		}
	}
	r := e.do(http.MethodGet, "/logs/stream", apiToken(t, "other-user", core.ActorTenantUser, "acme"), nil, "Accept", "text/event-stream")
	if r.status != 429 || r.errCode() != "too_many_streams" || r.header.Get("Retry-After") == "" {
		t.Fatalf("second stream: %d %s", r.status, r.body)
	}
	e.openSSE(apiToken(t, "g", core.ActorTenantUser, "globex"), nil).close() // another tenant is not limited
	s.close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ws, res, err := websocket.Dial(ctx, apiWSURL(e, "access_token="+user), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://trusted.example"}}})
		if err == nil {
			ws.CloseNow()
			cancel()
			break
		}
		cancel()
		if res == nil || res.StatusCode != 429 || time.Now().After(deadline) {
			t.Fatalf("WebSocket after the first stream closed: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, res, err := websocket.Dial(ctx, apiWSURL(e, "access_token="+user), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil {
			t.Fatal("a WebSocket from an untrusted origin was accepted")
		}
		if res != nil && res.StatusCode == 403 {
			break
		}
		if res == nil || res.StatusCode != 429 || time.Now().After(deadline) {
			t.Fatalf("untrusted origin: %v", err)
		}
	}
	// The refusal is a JSON error, and comes before the stream limit: it costs no slot.
	held := e.openSSE(user, nil)
	defer held.close()
	for _, c := range []struct {
		origin string
		status int
		code   string
	}{
		{"https://evil.example", 403, "origin_forbidden"},
		{"not a url", 403, "origin_forbidden"},
		{"https://TRUSTED.example", 429, "too_many_streams"},
	} {
		r := e.do(http.MethodGet, "/logs/stream?access_token="+user, "", nil, "Connection", "Upgrade", "Upgrade", "websocket",
			"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", c.origin)
		if r.status != c.status || r.errCode() != c.code || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("WebSocket from %s: %d %v %s", c.origin, r.status, r.header, r.body)
		}
	}
}
