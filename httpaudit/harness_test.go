package httpaudit_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/httpaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

const testSecret = "httpaudit-test-secret-of-32-bytes!!"

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// harness is a real HTTP server with the middleware, writing into a fresh audit_logs schema.
type harness struct {
	t   *testing.T
	db  *pgtest.DB
	w   *core.Writer
	srv *httptest.Server

	// inflight counts the requests whose handling (the middleware included) has not returned: a
	// client can have read a whole response before the middleware enqueued its record.
	inflight *atomic.Int64
}

// newHarness serves a ServeMux wrapped by the middleware built from opts (its Writer filled in).
// routes registers the handlers and may return a handler that wraps the mux.
func newHarness(t *testing.T, opts httpaudit.Options, routes func(mux *http.ServeMux, w *core.Writer) http.Handler) *harness {
	t.Helper()
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{FlushInterval: time.Hour, Logger: discardLogger()})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx) // some tests close it themselves
	})
	opts.Writer = w
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	mux := http.NewServeMux()
	var h http.Handler = mux
	if routes != nil {
		if wrapped := routes(mux, w); wrapped != nil {
			h = wrapped
		}
	}
	audited := httpaudit.Middleware(opts)(h)
	inflight := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		audited.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	srv.Client().Timeout = 30 * time.Second
	return &harness{t: t, db: db, w: w, srv: srv, inflight: inflight}
}

// do sends a request with headers given as name, value pairs and returns the response with its
// body read.
func (h *harness) do(method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, string(b)
}

// row is one stored audit_logs row; NULL text is "", NULL numbers are -1, jsonb is decoded.
type row struct {
	Kind, Severity                 string
	TenantID, ActorID, ActorType   string
	ActorAuth, ResourceType        string
	RequestID, Method, Route, Path string
	Query                          map[string][]string
	Status                         int
	IP, UserAgent                  string
	RequestBody, ResponseBody      map[string]any
	Metadata                       map[string]any
}

// rows flushes the writer and returns every stored row, http rows first within a request.
func (h *harness) rows() []row {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// The requests whose responses were read finish first (a test's request that is still meant
	// to be running delays this by at most 5 s).
	for wait := time.Now().Add(5 * time.Second); h.inflight.Load() > 0 && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	if err := h.w.Flush(ctx); err != nil {
		h.t.Fatalf("flush: %v", err)
	}
	rs, err := h.db.Pool.Query(ctx, `SELECT kind::text, severity::text, coalesce(tenant_id,''),
		coalesce(actor_id,''), actor_type::text, coalesce(actor_auth,''), coalesce(resource_type,''),
		coalesce(request_id,''), coalesce(method,''), coalesce(route,''), coalesce(path,''),
		coalesce(query::text,'null'), coalesce(status,-1), coalesce(host(ip),''), coalesce(user_agent,''),
		coalesce(request_body::text,'null'), coalesce(response_body::text,'null'), coalesce(metadata::text,'null')
		FROM audit_logs ORDER BY occurred_at, (kind <> 'http'), id`)
	if err != nil {
		h.t.Fatalf("query audit_logs: %v", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		var query, reqBody, respBody, meta string
		if err := rs.Scan(&r.Kind, &r.Severity, &r.TenantID, &r.ActorID, &r.ActorType, &r.ActorAuth,
			&r.ResourceType, &r.RequestID, &r.Method, &r.Route, &r.Path, &query, &r.Status, &r.IP,
			&r.UserAgent, &reqBody, &respBody, &meta); err != nil {
			h.t.Fatalf("scan: %v", err)
		}
		for _, j := range []struct {
			s string
			v any
		}{{query, &r.Query}, {reqBody, &r.RequestBody}, {respBody, &r.ResponseBody}, {meta, &r.Metadata}} {
			if err := json.Unmarshal([]byte(j.s), j.v); err != nil {
				h.t.Fatalf("decode %q: %v", j.s, err)
			}
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// only returns the single row, failing otherwise.
func only(t testing.TB, rows []row) row {
	t.Helper()
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1: %+v", len(rows), rows)
	}
	return rows[0]
}

// token returns an HS256 token for testSecret with the claims of sub and kv.
func token(t testing.TB, sub string, kv ...any) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
