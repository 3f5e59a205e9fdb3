package ginaudit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
)

// Test clients never wait forever: requests end within a minute; streams, which last, must at
// least answer with their headers in time.
var (
	apiClient       = &http.Client{Timeout: time.Minute}
	apiStreamClient = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second}}
)

// apiSecret signs the API tests' tokens (HS256 needs 32 bytes).
const apiSecret = "api-test-secret-0123456789abcdef-0123"

// apiEnv is a real HTTP server with the API mounted on /api/v1, a real store and writer.
type apiEnv struct {
	t    *testing.T
	db   *pgtest.DB
	st   *store.Store
	w    *core.Writer
	srv  *httptest.Server
	base string
}

func apiNewEnv(t *testing.T, mutate func(*ginaudit.APIOptions)) *apiEnv {
	t.Helper()
	return apiNewEnvWith(t, nil, mutate)
}

// apiNewEnvWith is apiNewEnv with changes to the store's options too.
func apiNewEnvWith(t *testing.T, storeOpts func(*store.Options), mutate func(*ginaudit.APIOptions)) *apiEnv {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	db := pgtest.New(t)
	so := store.Options{Schema: db.Schema, MaxPageSize: 200, CleanupBatchSize: 10}
	if storeOpts != nil {
		storeOpts(&so)
	}
	st, err := store.New(db.Pool, so)
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{FlushInterval: 5 * time.Millisecond})
	v, err := ginaudit.NewVerifier(context.Background(), core.JWTConfig{Secret: apiSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := ginaudit.APIOptions{Verifier: v, Writer: w, RateLimit: -1, Logger: slog.New(slog.DiscardHandler)}
	if mutate != nil {
		mutate(&opts)
	}
	r := gin.New()
	if err := ginaudit.MountAPI(r.Group("/api/v1"), st, opts); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		st.Close() // ends open streams, so that the server can close
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return &apiEnv{t: t, db: db, st: st, w: w, srv: srv, base: srv.URL + "/api/v1"}
}

// apiToken signs a token for sub with the given actor type and tenant ("" for none).
func apiToken(t testing.TB, sub string, typ core.ActorType, tenant string, extra ...any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	if typ != "" {
		c["actor_type"] = string(typ)
	}
	if tenant != "" {
		c["tenant_id"] = tenant
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(apiSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apiResp is a finished response.
type apiResp struct {
	status int
	header http.Header
	body   []byte
}

// errCode returns the code of a JSON error body, or "".
func (r apiResp) errCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (r apiResp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// do sends a request; path is relative to /api/v1 and may carry a query string. headers are
// name, value pairs.
func (e *apiEnv) do(method, path, token string, body []byte, headers ...string) apiResp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := apiClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return apiResp{status: res.StatusCode, header: res.Header, body: b}
}

// doStream is do for a request that may start an endless stream: a 200 response is returned
// without its body, and the stream is closed.
func (e *apiEnv) doStream(path, token string) apiResp {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := apiStreamClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return apiResp{status: res.StatusCode, header: res.Header}
	}
	b, _ := io.ReadAll(res.Body)
	return apiResp{status: res.StatusCode, header: res.Header, body: b}
}

// write stores records through the writer and waits for them.
func (e *apiEnv) write(recs ...*core.Record) {
	e.t.Helper()
	for _, r := range recs {
		if err := e.w.Enqueue(r); err != nil {
			e.t.Fatal(err)
		}
	}
	e.flush()
}

func (e *apiEnv) flush() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.w.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// count returns the number of rows matching a condition on audit_logs.
func (e *apiEnv) count(where string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE `+where, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *apiEnv) registerTenants(ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		if _, err := e.st.CreateTenant(context.Background(), store.Tenant{ID: id}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// apiSSE is an open Server-Sent Events stream.
type apiSSE struct {
	events chan apiEvent
	cancel context.CancelFunc
	res    *http.Response
}

type apiEvent struct {
	name, id, data string
}

// openSSE opens GET /logs/stream with query q and reads events in the background.
func (e *apiEnv) openSSE(token string, q url.Values) *apiSSE {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/logs/stream?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := apiStreamClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		e.t.Fatalf("stream: %d %s", res.StatusCode, b)
	}
	s := &apiSSE{events: make(chan apiEvent, 1000), cancel: cancel, res: res}
	go func() {
		defer close(s.events)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		var ev apiEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					s.events <- ev
				}
				ev = apiEvent{}
			case strings.HasPrefix(line, ":"):
				s.events <- apiEvent{name: ":", data: strings.TrimSpace(line[1:])}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	e.t.Cleanup(s.close)
	return s
}

func (s *apiSSE) close() { s.cancel() }

// next returns the next event that is not a comment and not a record of the API's own use
// (opening a stream is itself recorded, and arrives on the stream), failing after a deadline.
func (s *apiSSE) next(t testing.TB) apiEvent {
	t.Helper()
	for {
		ev := s.nextAny(t)
		if ev.name == ":" || ev.name == "log" && strings.Contains(ev.data, `"action":"auditlog.`) {
			continue
		}
		return ev
	}
}

// nextAny returns the next event or comment (name ":").
func (s *apiSSE) nextAny(t testing.TB) apiEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return apiEvent{}
}
