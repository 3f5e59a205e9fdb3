// Package shoptest holds the tests every shop example must pass (examples/gin-gorm,
// examples/http-gorm): each runs the example's command in a schema of its own, over real HTTP, and
// checks what it printed and the audit trail it stored. An example's tests call them with its run
// function and add what is its own.
package shoptest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// RunFunc is an example's main without the process: it returns the exit code.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Stored is one audit_logs row, reduced to what the tests compare.
type Stored struct {
	RequestID, Kind, Actor, ActorType, Tenant, IP, Resource, Severity, Auth string
	All                                                                     string // the whole row as JSON
	Status                                                                  int
}

// StoredRows returns the rows of pg's audit_logs that match where (an SQL condition), each
// request's http record before its changes.
func StoredRows(t testing.TB, pg *pgtest.DB, where string) []Stored {
	t.Helper()
	rs, err := pg.Pool.Query(context.Background(), `SELECT coalesce(request_id,''), kind::text,
		coalesce(actor_id,''), actor_type::text, coalesce(tenant_id,''), coalesce(host(ip),''),
		coalesce(resource_type,'') || '#' || coalesce(resource_id,''), severity::text,
		coalesce(actor_auth,''), coalesce(status,0), row_to_json(a)::text
		FROM audit_logs a WHERE `+where+` ORDER BY request_id, (kind <> 'http'), occurred_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []Stored
	for rs.Next() {
		var r Stored
		if err := rs.Scan(&r.RequestID, &r.Kind, &r.Actor, &r.ActorType, &r.Tenant, &r.IP, &r.Resource,
			&r.Severity, &r.Auth, &r.Status, &r.All); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Demo runs the example as `go run ./examples/<name> -demo` would, in its own schema, and checks
// the output and the audit trail it stored. It returns the schema for further checks.
func Demo(t *testing.T, run RunFunc) *pgtest.DB {
	t.Helper()
	pg := pgtest.NewEmpty(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-demo", "-db", pgtest.URL(), "-schema", pg.Schema}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"Audit trail (16 rows", "token refused (signature)", "credit_cents: 10000 → 5000", "error: insufficient credit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	rows := StoredRows(t, pg, "true")
	var got []string
	httpRow := map[string]Stored{}
	for _, r := range rows {
		seq := r.RequestID[strings.LastIndexByte(r.RequestID, '-')+1:]
		got = append(got, fmt.Sprintf("%s %s %s %s/%s %d", seq, r.Kind, r.Resource, r.Actor, r.Tenant, r.Status))
		if r.Kind == "http" {
			httpRow[r.RequestID] = r
			continue
		}
		// Every change carries the identity and address of the request that made it.
		h := httpRow[r.RequestID]
		if r.Actor != h.Actor || r.Tenant != h.Tenant || r.IP != h.IP || r.IP != "127.0.0.1" || r.Auth != "jwt:HS256" {
			t.Errorf("change %s %s: %s/%s/%s, its request %s/%s/%s", r.Kind, r.Resource, r.Actor, r.Tenant, r.IP, h.Actor, h.Tenant, h.IP)
		}
	}
	want := []string{
		"01 http # alice/acme 201", "01 insert customers#1 alice/acme 0",
		"02 http # alice/acme 201", "02 insert customers#2 alice/acme 0",
		"03 http # alice/acme 200", "03 update customers#1 alice/acme 0",
		"04 http # alice/acme 201", "04 insert orders#1 alice/acme 0",
		"05 http # alice/acme 200", "05 update customers#1 alice/acme 0", "05 update customers#2 alice/acme 0",
		"06 http # alice/acme 409", // the rolled-back transfer left no change
		"07 http # bob/globex 201", "07 insert customers#3 bob/globex 0",
		"08 http # bob/globex 404",
		"09 http # / 401", // the forged token
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stored rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range rows {
		if r.Kind == "http" && r.Status == 401 && (r.ActorType != "anonymous" || r.Severity != "warning" || r.Actor != "") {
			t.Errorf("forged token recorded as %+v", r)
		}
		if strings.Contains(r.All, "DE-123-456") || strings.Contains(r.All, "DE-999-000") {
			t.Errorf("a tax id was stored in clear: %s", r.All)
		}
	}
	return pg
}

// SyncBuffer is a bytes.Buffer safe for one writer and one reader.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// served is an example running in serve mode.
type served struct {
	out, errOut SyncBuffer
	exited      chan int
	cancel      context.CancelFunc
}

// serve runs the example in serve mode on a free port in pg's schema and waits for its usage
// text. stop must be called to end it.
func serve(t *testing.T, run RunFunc, pg *pgtest.DB) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{exited: make(chan int, 1), cancel: cancel}
	go func() {
		s.exited <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", pgtest.URL(), "-schema", pg.Schema}, &s.out, &s.errOut)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.out.String(), "Press Ctrl-C") {
		select {
		case code := <-s.exited:
			cancel()
			t.Fatalf("exited early with %d: %s", code, s.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no usage printed within 30s: %s", s.out.String())
		}
		time.Sleep(10 * time.Millisecond) // poll for the usage text
	}
	return s
}

// stop cancels the example as Ctrl-C would and returns its exit code, failing t when it does not
// exit within 30s.
func (s *served) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.exited:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after cancellation")
		return -1
	}
}

// ServeAndPrintedCurlCommands runs the example in serve mode, executes the curl commands it
// prints (parsed as a shell would), stops it as Ctrl-C would, and checks that every request was
// recorded by the time it exited.
func ServeAndPrintedCurlCommands(t *testing.T, run RunFunc) {
	t.Helper()
	pg := pgtest.NewEmpty(t)
	s := serve(t, run, pg)
	defer s.cancel()

	var statuses []int
	for _, line := range strings.Split(s.out.String(), "\n") {
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		req, err := ParseCurl(line)
		if err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	want := []int{201, 201, 200, 200, 201, 200, 409, 201, 200, 404, 401}
	if fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("curl commands answered %v, want %v", statuses, want)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, s.errOut.String())
	}

	// The example drained its writer when it stopped: no flush is needed here.
	rows := StoredRows(t, pg, "kind = 'http'")
	if len(rows) != len(want) {
		t.Fatalf("%d http rows, want %d", len(rows), len(want))
	}
	var tenants []string
	for _, r := range rows {
		tenants = append(tenants, r.Tenant)
	}
	if n := strings.Count(strings.Join(tenants, ","), "globex"); n != 3 {
		t.Errorf("tenants %v, want 3 requests of globex", tenants)
	}
	if changes := StoredRows(t, pg, "kind <> 'http'"); len(changes) != 7 {
		t.Errorf("%d changes, want 7 (2+1 inserts, 1 update, 1 order, 2 transfer updates)", len(changes))
	}
}

// CurlDataIsRedacted posts JSON the way `curl -d` sends it, as
// application/x-www-form-urlencoded, to the served example: the stored request body is the
// redacted JSON, not a form whose key holds the password.
func CurlDataIsRedacted(t *testing.T, run RunFunc) {
	t.Helper()
	pg := pgtest.NewEmpty(t)
	s := serve(t, run, pg)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			s.stop(t)
		}
	})
	var first *http.Request
	for _, line := range strings.Split(s.out.String(), "\n") {
		if strings.HasPrefix(line, "curl ") && strings.Contains(line, "-X POST") {
			req, err := ParseCurl(line)
			if err != nil {
				t.Fatalf("%v in %s", err, line)
			}
			first = req
			break
		}
	}
	if first == nil {
		t.Fatalf("no POST command printed: %s", s.out.String())
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
	stopped = true
	s.stop(t) // the example drains its writer when it stops
	rows := StoredRows(t, pg, "request_id = 'curl-d' AND kind = 'http'")
	if len(rows) != 1 {
		t.Fatalf("%d http rows", len(rows))
	}
	if all := rows[0].All; strings.Contains(all, "hunter2") ||
		!strings.Contains(all, `"request_body":{"name": "Eve", "password": "[REDACTED]"}`) {
		t.Fatalf("stored %s", all)
	}
}

// PostgresUnreachable runs the demo against an address nothing listens on: one line on stderr
// says so, with the command that starts the local server.
func PostgresUnreachable(t *testing.T, run RunFunc) {
	t.Helper()
	addr := testnet.ClosedAddr(t) // nothing listens there while the test runs
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-demo", "-db", "postgres://postgres@" + addr + "/test?sslmode=disable"}, &out, &errOut)
	msg := errOut.String()
	if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "not reachable at 127.0.0.1:") ||
		!strings.Contains(msg, "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start") {
		t.Fatalf("exit %d, stderr %q", code, msg)
	}
}

// DatabaseMissing runs the demo against a server that answers but has no such database: the
// message names the cause and its fix, not an unreachable server.
func DatabaseMissing(t *testing.T, run RunFunc) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-demo", "-db", "postgres://postgres@127.0.0.1:5432/auditkit_no_such_database?sslmode=disable"}, &out, &errOut)
	msg := errOut.String()
	if code != 1 || strings.Count(msg, "\n") != 1 ||
		!strings.Contains(msg, `database "auditkit_no_such_database" does not exist`) ||
		!strings.Contains(msg, "createdb -h 127.0.0.1 -p 5432 -U postgres auditkit_no_such_database") ||
		strings.Contains(msg, "not reachable") || strings.Contains(msg, "pg_ctlcluster") {
		t.Fatalf("exit %d, stderr %q", code, msg)
	}
}

var curlWord = regexp.MustCompile(`'(?:[^']|'\\'')*'|\S+`)

// ParseCurl turns a printed "curl -s [-X M] 'url' -H 'h: v' ... [-d 'body']" into a request,
// unquoting single-quoted words as a POSIX shell does.
func ParseCurl(line string) (*http.Request, error) {
	var words []string
	for _, w := range curlWord.FindAllString(line, -1) {
		if strings.HasPrefix(w, "'") {
			w = strings.ReplaceAll(w[1:len(w)-1], `'\''`, "'")
		}
		words = append(words, w)
	}
	method, url, body := "GET", "", ""
	var headers [][2]string
	for i := 1; i < len(words); i++ {
		switch words[i] {
		case "-X", "-H", "-d":
			if i+1 == len(words) {
				return nil, fmt.Errorf("%s without its argument", words[i])
			}
		}
		switch words[i] {
		case "-s":
		case "-X":
			i++
			method = words[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(words[i], ": ")
			headers = append(headers, [2]string{k, v})
		case "-d":
			i++
			body = words[i]
		default:
			if url != "" {
				return nil, fmt.Errorf("unexpected word %q", words[i])
			}
			url = words[i]
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	return req, nil
}
