package httpaudit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/httpaudit"
)

// A request through http.ServeMux: the record holds the Go 1.22 pattern as the route, the path,
// the query, the status, the client address, the user agent and the request id echoed to the
// client; a malformed incoming request id is replaced.
func TestServeMuxRecord(t *testing.T) {
	h := newHarness(t, httpaudit.Options{Config: core.Config{LogAnonymous: true}}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
			id, _ := core.RequestIDFromContext(r.Context())
			fmt.Fprintf(w, "%s %s", r.PathValue("id"), id)
		})
		mux.HandleFunc("DELETE /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})
		return nil
	})
	resp, body := h.do("GET", "/customers/42?expand=orders&expand=notes", nil, "User-Agent", "probe/1", "X-Request-ID", "req-1")
	if resp.StatusCode != 200 || body != "42 req-1" || resp.Header.Get("X-Request-ID") != "req-1" {
		t.Fatalf("response %d %q, X-Request-ID %q", resp.StatusCode, body, resp.Header.Get("X-Request-ID"))
	}
	resp, _ = h.do("DELETE", "/customers/7", nil, "X-Request-ID", "bad id with spaces")
	newID := resp.Header.Get("X-Request-ID")
	if resp.StatusCode != 204 || len(newID) != 36 {
		t.Fatalf("DELETE: %d, request id %q", resp.StatusCode, newID)
	}
	h.do("GET", "/nowhere", nil)

	rows := h.rows()
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3: %+v", len(rows), rows)
	}
	get, del, miss := rows[0], rows[1], rows[2]
	if get.Kind != "http" || get.Method != "GET" || get.Route != "GET /customers/{id}" || get.Path != "/customers/42" ||
		get.Status != 200 || get.IP != "127.0.0.1" || get.UserAgent != "probe/1" || get.RequestID != "req-1" ||
		get.ActorType != "anonymous" || get.Severity != "info" {
		t.Errorf("GET row = %+v", get)
	}
	if q := get.Query["expand"]; len(q) != 2 || q[0] != "orders" || q[1] != "notes" {
		t.Errorf("query = %v", get.Query)
	}
	if del.Route != "DELETE /customers/{id}" || del.Status != 204 || del.RequestID != newID ||
		del.Metadata[httpaudit.MetaRequestIDError] == nil {
		t.Errorf("DELETE row = %+v", del)
	}
	if miss.Route != "" || miss.Status != 404 || miss.Severity != "info" {
		t.Errorf("unmatched row = %+v", miss)
	}
}

// A verified token makes the actor and the tenant of the record and of the handler's context; a
// forged one is recorded as anonymous with the reason, and the handler sees AuthRefused.
func TestJWTActorAndTenant(t *testing.T) {
	cfg := core.Config{JWT: core.JWTConfig{Secret: testSecret}}
	h := newHarness(t, httpaudit.Options{Config: cfg}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
			a, ok := core.ActorFromContext(r.Context())
			tn, _ := core.TenantFromContext(r.Context())
			auth := core.AuthenticationFromContext(r.Context())
			fmt.Fprintf(w, "%s %v %s %s", a.ID, ok, tn.ID, auth.Status)
		})
		return nil
	})
	tok := token(t, "user-7", "tenant_id", "t-42", "email", "u7@example.com")
	if _, body := h.do("GET", "/me", nil, "Authorization", "Bearer "+tok); body != "user-7 true t-42 verified" {
		t.Fatalf("handler saw %q", body)
	}
	forged := tok[:len(tok)-4] + "AAAA"
	if _, body := h.do("GET", "/me", nil, "Authorization", "Bearer "+forged); body != " false  refused" {
		t.Fatalf("handler saw %q after a forged token", body)
	}
	h.do("GET", "/me", nil) // anonymous, not recorded without LogAnonymous

	rows := h.rows()
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2: %+v", len(rows), rows)
	}
	ok, bad := rows[0], rows[1]
	if ok.ActorID != "user-7" || ok.ActorType != "tenant_user" || ok.ActorAuth != "jwt:HS256" || ok.TenantID != "t-42" || ok.Severity != "info" {
		t.Errorf("verified row = %+v", ok)
	}
	if bad.ActorID != "" || bad.ActorType != "anonymous" || bad.Severity != "warning" ||
		bad.Metadata[httpaudit.MetaAuthFailure] == nil || !strings.Contains(fmt.Sprint(bad.Metadata[httpaudit.MetaAuthError]), "JWT refused") {
		t.Errorf("forged row = %+v", bad)
	}
}

// Records the handler makes through the request's context (as the ORM integrations do) join the
// request: stamped with its request id, actor, tenant and client address, written with the http
// record; one added by a goroutine after the request ended is stamped too.
func TestCollectorStampsRecords(t *testing.T) {
	var late sync.WaitGroup
	cfg := core.Config{JWT: core.JWTConfig{Secret: testSecret}}
	h := newHarness(t, httpaudit.Options{Config: cfg}, func(mux *http.ServeMux, w *core.Writer) http.Handler {
		mux.HandleFunc("POST /orders", func(rw http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if err := core.Dispatch(ctx, w, &core.Record{Kind: core.KindInsert, ResourceType: "orders", ResourceID: "o-1"}); err != nil {
				t.Error(err)
			}
			late.Add(1)
			go func() {
				defer late.Done()
				time.Sleep(50 * time.Millisecond)
				if err := core.Dispatch(ctx, w, &core.Record{Kind: core.KindUpdate, ResourceType: "orders", ResourceID: "o-1"}); err != nil {
					t.Error(err)
				}
			}()
			rw.WriteHeader(http.StatusCreated)
		})
		return nil
	})
	resp, _ := h.do("POST", "/orders", nil, "Authorization", "Bearer "+token(t, "user-9", "tenant_id", "t-1"))
	late.Wait()
	rows := h.rows()
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.RequestID != resp.Header.Get("X-Request-ID") || r.ActorID != "user-9" || r.TenantID != "t-1" || r.IP != "127.0.0.1" {
			t.Errorf("row not stamped with the request: %+v", r)
		}
	}
	if rows[0].Kind != "http" || rows[0].Status != 201 || rows[1].Kind != "insert" || rows[2].Kind != "update" {
		t.Errorf("rows = %+v", rows)
	}
}

// Bodies are captured and redacted; the handler still reads every byte and the client gets the
// whole response.
func TestBodies(t *testing.T) {
	cfg := core.Config{LogAnonymous: true, CaptureRequestBody: true, CaptureResponseBody: true, MaxBodySizeBytes: 64}
	h := newHarness(t, httpaudit.Options{Config: cfg}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
			var in map[string]any
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"name": in["name"], "api_key": "k-123"})
		})
		mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, strings.Repeat("x", 100))
		})
		return nil
	})
	_, body := h.do("POST", "/users", strings.NewReader(`{"name":"Ada","password":"hunter2"}`), "Content-Type", "application/json")
	if !strings.Contains(body, "k-123") {
		t.Fatalf("client got %q", body)
	}
	if _, body := h.do("GET", "/big", nil); len(body) != 100 {
		t.Fatalf("client got %d bytes", len(body))
	}
	rows := h.rows()
	if len(rows) != 2 {
		t.Fatalf("got %d rows: %+v", len(rows), rows)
	}
	post, big := rows[0], rows[1]
	if post.RequestBody["name"] != "Ada" || post.RequestBody["password"] == "hunter2" || post.RequestBody["password"] == nil {
		t.Errorf("request body = %v", post.RequestBody)
	}
	if post.ResponseBody["name"] != "Ada" || post.ResponseBody["api_key"] == "k-123" {
		t.Errorf("response body = %v", post.ResponseBody)
	}
	if big.ResponseBody["truncated"] != true {
		t.Errorf("100-byte response over a 64-byte limit = %v", big.ResponseBody)
	}
}

// Behind a trusted proxy the forwarded client address is recorded and the peer noted; an
// untrusted peer's X-Forwarded-For is ignored; excluded paths and skipped methods are not
// recorded.
func TestProxiesAndExclusions(t *testing.T) {
	cfg := core.Config{LogAnonymous: true, TrustedProxies: []string{"127.0.0.0/8"}, ExcludePaths: []string{"/healthz"}, SkipMethods: []string{"OPTIONS"}}
	h := newHarness(t, httpaudit.Options{Config: cfg}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
		return nil
	})
	h.do("GET", "/a", nil, "X-Forwarded-For", "198.51.100.9, 10.0.0.1")
	h.do("GET", "/healthz", nil)
	h.do("OPTIONS", "/a", nil)
	r := only(t, h.rows())
	if r.IP != "10.0.0.1" || r.Metadata[httpaudit.MetaRemoteIP] != "127.0.0.1" {
		t.Errorf("row = %+v", r)
	}

	h2 := newHarness(t, httpaudit.Options{Config: core.Config{LogAnonymous: true}}, nil)
	h2.do("GET", "/a", nil, "X-Forwarded-For", "198.51.100.9")
	if r := only(t, h2.rows()); r.IP != "127.0.0.1" {
		t.Errorf("untrusted peer: recorded %q", r.IP)
	}
}

// A panicking handler is recorded with status 500, severity error and the panic value, and the
// panic continues to the server (which closes the connection).
func TestPanic(t *testing.T) {
	h := newHarness(t, httpaudit.Options{Config: core.Config{LogAnonymous: true}}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
		return nil
	})
	req, _ := http.NewRequest("GET", h.srv.URL+"/boom", nil)
	if resp, err := h.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the panic did not reach the server: %d", resp.StatusCode)
	}
	r := only(t, h.rows())
	if r.Status != 500 || r.Severity != "error" || r.Metadata[httpaudit.MetaPanic] != "boom" || r.Route != "GET /boom" {
		t.Errorf("row = %+v", r)
	}
}

// SetActor, SetTenant and SetRoute called by the application override the token, and an
// application that wraps the handler in its own router reports the route with Options.Route.
func TestApplicationValuesAndRoute(t *testing.T) {
	type routeKey struct{}
	// A router in the style of chi: it puts a route holder into the context before the
	// middleware registered inside it runs, and fills it in when it matches.
	router := func(audit func(http.Handler) http.Handler, routes map[string]http.HandlerFunc) http.Handler {
		match := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for tpl, hf := range routes {
				if strings.HasPrefix(r.URL.Path, strings.TrimSuffix(tpl, "*")) {
					*r.Context().Value(routeKey{}).(*string) = tpl
					hf(w, r)
					return
				}
			}
			http.NotFound(w, r)
		})
		inner := audit(match)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, new(string))))
		})
	}
	var set struct{ actor, tenant, route, err bool }
	db := newHarness(t, httpaudit.Options{}, nil) // for its database and writer only
	opts := httpaudit.Options{Writer: db.w, Logger: discardLogger(), Config: core.Config{LogAnonymous: true},
		Route: func(r *http.Request) string { return *r.Context().Value(routeKey{}).(*string) }}
	h := router(httpaudit.Middleware(opts), map[string]http.HandlerFunc{
		"/docs/*": func(w http.ResponseWriter, r *http.Request) {},
		"/session": func(w http.ResponseWriter, r *http.Request) {
			set.actor = httpaudit.SetActor(r.Context(), core.Actor{ID: "u-5", Type: core.ActorTenantUser})
			set.tenant = httpaudit.SetTenant(r.Context(), core.Tenant{ID: "t-5"})
			set.route = httpaudit.SetRoute(r.Context(), "/session (custom)")
			set.err = httpaudit.AddError(r.Context(), errors.New("session renewed late"))
		},
	})
	srv := newServer(t, h)
	get(t, srv, "/docs/intro")
	get(t, srv, "/session")
	if !set.actor || !set.tenant || !set.route || !set.err {
		t.Fatalf("Set* reported %+v", set)
	}
	if httpaudit.SetActor(context.Background(), core.Actor{ID: "x"}) {
		t.Error("SetActor outside an audited request reported true")
	}
	rows := db.rows()
	if len(rows) != 2 {
		t.Fatalf("got %d rows: %+v", len(rows), rows)
	}
	if rows[0].Route != "/docs/*" {
		t.Errorf("route from Options.Route = %q", rows[0].Route)
	}
	if r := rows[1]; r.Route != "/session (custom)" || r.ActorID != "u-5" || r.ActorAuth != "context" || r.TenantID != "t-5" ||
		fmt.Sprint(r.Metadata[httpaudit.MetaErrors]) != "[session renewed late]" {
		t.Errorf("row with application values = %+v", r)
	}
}

// Under FailClosed a request whose record cannot be kept is answered 503 with Retry-After and its
// handler never runs; FailurePolicy makes one route fail-closed.
func TestFailClosed(t *testing.T) {
	ran := false
	h := newHarness(t, httpaudit.Options{Config: core.Config{LogAnonymous: true}}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.Handle("POST /admin", httpaudit.FailurePolicy(core.FailClosed)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true })))
		mux.HandleFunc("GET /open", func(w http.ResponseWriter, r *http.Request) {})
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do("POST", "/admin", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || ran ||
		!strings.Contains(body, `"error":"audit trail unavailable"`) || !strings.Contains(body, "shutting down") {
		t.Fatalf("fail-closed route: %d %q, Retry-After %q, handler ran %v", resp.StatusCode, body, resp.Header.Get("Retry-After"), ran)
	}
	if resp, _ := h.do("GET", "/open", nil); resp.StatusCode != 200 {
		t.Fatalf("fail-open route: %d", resp.StatusCode)
	}
}

// The health handler answers the writer's condition.
func TestHealthHandler(t *testing.T) {
	h := newHarness(t, httpaudit.Options{}, func(mux *http.ServeMux, w *core.Writer) http.Handler {
		mux.Handle("GET /health/audit", httpaudit.HealthHandler(w))
		return nil
	})
	resp, body := h.do("GET", "/health/audit", nil)
	var hl httpaudit.WriterHealth
	if err := json.Unmarshal([]byte(body), &hl); err != nil || resp.StatusCode != 200 || hl.State != "healthy" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("health: %d %q (%v)", resp.StatusCode, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, body := h.do("GET", "/health/audit", nil); resp.StatusCode != 503 || !strings.Contains(body, `"state":"failing"`) {
		t.Fatalf("health of a closed writer: %d %q", resp.StatusCode, body)
	}
}

// A flushed (streamed) response is passed through and noted, not captured; the writer the handler
// gets supports http.NewResponseController.
func TestStreamedResponse(t *testing.T) {
	cfg := core.Config{LogAnonymous: true, CaptureResponseBody: true}
	h := newHarness(t, httpaudit.Options{Config: cfg}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			rc := http.NewResponseController(w)
			for i := range 3 {
				fmt.Fprintf(w, "event %d\n", i)
				if err := rc.Flush(); err != nil {
					t.Error(err)
				}
			}
		})
		return nil
	})
	if _, body := h.do("GET", "/events", nil); body != "event 0\nevent 1\nevent 2\n" {
		t.Fatalf("client got %q", body)
	}
	r := only(t, h.rows())
	if r.Metadata[httpaudit.MetaStreamed] != true || r.ResponseBody["reason"] != "streamed" {
		t.Errorf("row = %+v", r)
	}
}

// A file served with http.ServeFile reaches the client whole through the writer's ReadFrom, with
// and without response bodies kept.
func TestServeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.txt")
	content := strings.Repeat("0123456789abcdef", 8192) // 128 KiB
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, capture := range []bool{false, true} {
		t.Run(fmt.Sprint("capture=", capture), func(t *testing.T) {
			cfg := core.Config{LogAnonymous: true, CaptureResponseBody: capture, MaxBodySizeBytes: 1024}
			h := newHarness(t, httpaudit.Options{Config: cfg}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
				mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
				return nil
			})
			resp, body := h.do("GET", "/report", nil)
			if resp.StatusCode != 200 || body != content {
				t.Fatalf("client got %d, %d bytes", resp.StatusCode, len(body))
			}
			r := only(t, h.rows())
			if r.Status != 200 || r.Route != "GET /report" {
				t.Errorf("row = %+v", r)
			}
			if capture && (r.ResponseBody["truncated"] != true || r.ResponseBody["size"] != float64(len(content))) {
				t.Errorf("kept response body = %v", r.ResponseBody)
			}
		})
	}
}

// Options.Identify replaces the bearer token: its identity is recorded (Auth "custom" when
// empty), ErrNoToken means no credentials, any other error is recorded like a refused token;
// Options.ClientIP chooses the address recorded.
func TestCustomIdentifyAndClientIP(t *testing.T) {
	identify := func(r *http.Request) (httpaudit.Identity, error) {
		switch user := r.Header.Get("X-User"); user {
		case "":
			return httpaudit.Identity{}, fmt.Errorf("no user header: %w", httpaudit.ErrNoToken)
		case "banned":
			return httpaudit.Identity{}, errors.New("user is banned")
		default:
			return httpaudit.Identity{Actor: core.Actor{ID: user, Type: core.ActorService}, Tenant: core.Tenant{ID: "t-9"}}, nil
		}
	}
	opts := httpaudit.Options{Config: core.Config{LogAnonymous: true}, Identify: identify,
		ClientIP: func(r *http.Request) string { return r.Header.Get("X-Client") }}
	h := newHarness(t, opts, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, core.AuthenticationFromContext(r.Context()).Status)
		})
		return nil
	})
	seen := []string{}
	for _, user := range []string{"svc-1", "", "banned"} {
		_, body := h.do("GET", "/", nil, "X-User", user, "X-Client", "192.0.2.44")
		seen = append(seen, body)
	}
	if strings.Join(seen, ",") != "verified,none,refused" {
		t.Fatalf("handler saw %v", seen)
	}
	rows := h.rows()
	if len(rows) != 3 {
		t.Fatalf("got %d rows: %+v", len(rows), rows)
	}
	if r := rows[0]; r.ActorID != "svc-1" || r.ActorType != "service" || r.ActorAuth != "custom" || r.TenantID != "t-9" || r.IP != "192.0.2.44" {
		t.Errorf("identified row = %+v", r)
	}
	if r := rows[1]; r.ActorType != "anonymous" || r.Severity != "info" || r.Metadata[httpaudit.MetaAuthFailure] != nil {
		t.Errorf("row without credentials = %+v", r)
	}
	if r := rows[2]; r.ActorType != "anonymous" || r.Severity != "warning" || r.Metadata[httpaudit.MetaAuthFailure] != "identify" ||
		r.Metadata[httpaudit.MetaAuthError] != "user is banned" {
		t.Errorf("refused row = %+v", r)
	}
}

// The record carries the trace and span ids of the span the application's OpenTelemetry
// instrumentation (otelhttp, running before the middleware) put into the request's context; a
// request outside a trace has none.
func TestTraceContext(t *testing.T) {
	traceID, err := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	if err != nil {
		t.Fatal(err)
	}
	spanID, err := trace.SpanIDFromHex("00f067aa0ba902b7")
	if err != nil {
		t.Fatal(err)
	}
	db := newHarness(t, httpaudit.Options{}, nil) // for its database and writer only
	mux := http.NewServeMux()
	mux.HandleFunc("GET /traced", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) {})
	audited := httpaudit.Middleware(httpaudit.Options{Writer: db.w, Logger: discardLogger(), Config: core.Config{LogAnonymous: true}})(mux)
	instrumented := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/traced" {
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})
			r = r.WithContext(trace.ContextWithSpanContext(r.Context(), sc))
		}
		audited.ServeHTTP(w, r)
	})
	srv := newServer(t, instrumented)
	get(t, srv, "/traced")
	get(t, srv, "/plain")
	db.rows() // flushes
	rs, err := db.db.Pool.Query(context.Background(), `SELECT path, coalesce(trace_id,''), coalesce(span_id,'') FROM audit_logs ORDER BY occurred_at`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var got []string
	for rs.Next() {
		var path, tid, sid string
		if err := rs.Scan(&path, &tid, &sid); err != nil {
			t.Fatal(err)
		}
		got = append(got, path+" "+tid+" "+sid)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	want := "/traced 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7,/plain  "
	if strings.Join(got, ",") != want {
		t.Fatalf("stored %q, want %q", strings.Join(got, ","), want)
	}
}

// The stored query is what url.ParseQuery makes of the raw query, for queries the middleware
// parses into its own room (up to four parameters) and for longer ones: repeated keys, escapes,
// a value-less key, and pairs that do not parse (a bad escape, a semicolon) left out.
func TestQueryStoredAsParsed(t *testing.T) {
	h := newHarness(t, httpaudit.Options{Config: core.Config{LogAnonymous: true}}, func(mux *http.ServeMux, _ *core.Writer) http.Handler {
		mux.HandleFunc("GET /q", func(w http.ResponseWriter, r *http.Request) {})
		return nil
	})
	queries := []string{
		"expand=orders",
		"a=1&b=x%20y&a=2&c",
		"a=1&b=%zz&c=3;d&e+f=g+h",
		"k=1&k=2&k=3&k=4&z=%zz&e=&m=%2B",
		"p1=1&p2=2&p3=3&p4=4&p5=5&p1=6",
	}
	for i, q := range queries {
		if resp, _ := h.do("GET", "/q?"+q, nil, "X-Request-ID", fmt.Sprint("q-", i)); resp.StatusCode != 200 {
			t.Fatalf("GET /q?%s: %d", q, resp.StatusCode)
		}
	}
	rows := h.rows()
	if len(rows) != len(queries) {
		t.Fatalf("got %d rows, want %d", len(rows), len(queries))
	}
	for i, q := range queries {
		want, _ := url.ParseQuery(q)
		found := false
		for _, r := range rows {
			if r.RequestID == fmt.Sprint("q-", i) {
				found = true
				if !reflect.DeepEqual(url.Values(r.Query), want) {
					t.Errorf("query %q stored as %v, want %v", q, r.Query, want)
				}
			}
		}
		if !found {
			t.Errorf("no row for query %q", q)
		}
	}
}
