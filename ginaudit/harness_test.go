package ginaudit_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

func init() { gin.SetMode(gin.TestMode) }

// harness is a real HTTP server with the middleware, writing into a fresh audit_logs schema.
type harness struct {
	t      *testing.T
	db     *pgtest.DB
	w      *core.Writer
	engine *gin.Engine
	srv    *httptest.Server
}

// newHarness builds an engine with gin.Recovery and the middleware (opts.Writer is filled in),
// lets routes register handlers, and serves it.
func newHarness(t *testing.T, opts ginaudit.Options, routes func(r *gin.Engine, w *core.Writer)) *harness {
	t.Helper()
	return newHarnessWith(t, func(w *core.Writer) *gin.Engine {
		opts.Writer = w
		if opts.Logger == nil {
			opts.Logger = discardLogger()
		}
		r := gin.New()
		r.Use(gin.RecoveryWithWriter(io.Discard), ginaudit.Middleware(opts))
		if routes != nil {
			routes(r, w)
		}
		return r
	})
}

// newHarnessWith serves the engine build returns for a writer on a fresh schema.
func newHarnessWith(t *testing.T, build func(w *core.Writer) *gin.Engine) *harness {
	t.Helper()
	db := pgtest.New(t)
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{FlushInterval: time.Hour, Logger: discardLogger()})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			t.Errorf("writer close: %v", err)
		}
	})
	r := build(w)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	srv.Client().Timeout = 30 * time.Second // a hung request fails its test instead of the binary
	return &harness{t: t, db: db, w: w, engine: r, srv: srv}
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
	Kind, Action, Severity         string
	TenantID, TenantSlug           string
	ActorID, ActorType, ActorEmail string
	ActorAuth                      string
	ResourceType, ResourceID       string
	RequestID, Method, Route, Path string
	Query                          map[string][]string
	Status                         int
	DurationUS                     int64
	IP, UserAgent                  string
	RequestBody, ResponseBody      map[string]any
	RawRequestBody                 string
	Metadata                       map[string]any
	Diff                           map[string]map[string]any
}

// rows flushes the writer and returns every stored row, http rows first within a request.
func (h *harness) rows() []row {
	h.t.Helper()
	return fetchRows(h.t, h.w, h.db, "")
}

// fetchRows flushes w and reads the rows of db matching where ("" for all).
func fetchRows(t testing.TB, w *core.Writer, db *pgtest.DB, where string, args ...any) []row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if where != "" {
		where = "WHERE " + where
	}
	q := `SELECT kind::text, action, severity::text, coalesce(tenant_id,''), coalesce(tenant_slug,''),
		coalesce(actor_id,''), actor_type::text, coalesce(actor_email,''), coalesce(actor_auth,''),
		coalesce(resource_type,''), coalesce(resource_id,''), coalesce(request_id,''), coalesce(method,''),
		coalesce(route,''), coalesce(path,''), coalesce(query::text,'null'), coalesce(status,-1),
		coalesce(duration_us,-1), coalesce(host(ip),''), coalesce(user_agent,''),
		coalesce(request_body::text,''), coalesce(response_body::text,''), coalesce(metadata::text,'null'), coalesce(diff::text,'null')
		FROM audit_logs ` + where + ` ORDER BY occurred_at, (kind <> 'http'), id`
	rs, err := db.Pool.Query(ctx, q, args...)
	if err != nil {
		t.Fatalf("query audit_logs: %v", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		var query, reqBody, respBody, meta, diff string
		if err := rs.Scan(&r.Kind, &r.Action, &r.Severity, &r.TenantID, &r.TenantSlug, &r.ActorID,
			&r.ActorType, &r.ActorEmail, &r.ActorAuth, &r.ResourceType, &r.ResourceID, &r.RequestID,
			&r.Method, &r.Route, &r.Path, &query, &r.Status, &r.DurationUS, &r.IP, &r.UserAgent,
			&reqBody, &respBody, &meta, &diff); err != nil {
			t.Fatalf("scan: %v", err)
		}
		mustJSON(t, query, &r.Query)
		mustJSON(t, meta, &r.Metadata)
		mustJSON(t, diff, &r.Diff)
		r.RawRequestBody = reqBody
		if reqBody != "" {
			mustJSON(t, reqBody, &r.RequestBody)
		}
		if respBody != "" {
			mustJSON(t, respBody, &r.ResponseBody)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		// A body stored as a JSON value that is not an object (an array, a string) is kept raw.
		if !strings.HasPrefix(strings.TrimSpace(s), "{") {
			return
		}
		t.Fatalf("decode %q: %v", s, err)
	}
}

// waitRows flushes and reads the rows matching where until there are at least n, for records
// whose request ends after the client has seen the end of the response (a hijacked connection
// closed by the handler).
func waitRows(t testing.TB, w *core.Writer, db *pgtest.DB, n int, where string, args ...any) []row {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows := fetchRows(t, w, db, where, args...)
		if len(rows) >= n || time.Now().After(deadline) {
			return rows
		}
		time.Sleep(5 * time.Millisecond) // poll until the request has finished
	}
}

// only returns the single row, failing otherwise.
func only(t testing.TB, rows []row) row {
	t.Helper()
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1: %+v", len(rows), rows)
	}
	return rows[0]
}

func bearer(token string) string { return "Bearer " + token }
