package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/pgtest"
)

// stored is one audit_logs row, reduced to what the tests compare.
type stored struct {
	requestID, kind, actor, actorType, tenant, ip, resource, severity, auth, all string
	status                                                                       int
}

func storedRows(t *testing.T, pg *pgtest.DB, where string) []stored {
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
	var out []stored
	for rs.Next() {
		var r stored
		if err := rs.Scan(&r.requestID, &r.kind, &r.actor, &r.actorType, &r.tenant, &r.ip, &r.resource,
			&r.severity, &r.auth, &r.status, &r.all); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDemo runs the example as `go run ./examples/gin-gorm -demo` would, in its own schema, and
// checks the audit trail it stored.
func TestDemo(t *testing.T) {
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
	rows := storedRows(t, pg, "true")
	var got []string
	httpRow := map[string]stored{}
	for _, r := range rows {
		seq := r.requestID[strings.LastIndexByte(r.requestID, '-')+1:]
		got = append(got, fmt.Sprintf("%s %s %s %s/%s %d", seq, r.kind, r.resource, r.actor, r.tenant, r.status))
		if r.kind == "http" {
			httpRow[r.requestID] = r
			continue
		}
		// Every change carries the identity and address of the request that made it.
		h := httpRow[r.requestID]
		if r.actor != h.actor || r.tenant != h.tenant || r.ip != h.ip || r.ip != "127.0.0.1" || r.auth != "jwt:HS256" {
			t.Errorf("change %s %s: %s/%s/%s, its request %s/%s/%s", r.kind, r.resource, r.actor, r.tenant, r.ip, h.actor, h.tenant, h.ip)
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
		if r.kind == "http" && r.status == 401 && (r.actorType != "anonymous" || r.severity != "warning" || r.actor != "") {
			t.Errorf("forged token recorded as %+v", r)
		}
		if strings.Contains(r.all, "DE-123-456") || strings.Contains(r.all, "DE-999-000") {
			t.Errorf("a tax id was stored in clear: %s", r.all)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
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

// TestServeAndPrintedCurlCommands runs the example in serve mode, executes the curl commands it
// prints (parsed as a shell would), stops it as Ctrl-C would, and checks that every request was
// recorded by the time it exited.
func TestServeAndPrintedCurlCommands(t *testing.T) {
	pg := pgtest.NewEmpty(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", pgtest.URL(), "-schema", pg.Schema}, &out, &errOut)
	}()
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

	var statuses []int
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		req, err := parseCurl(line)
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
	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after cancellation")
	}

	// The example drained its writer when it stopped: no flush is needed here.
	rows := storedRows(t, pg, "kind = 'http'")
	if len(rows) != len(want) {
		t.Fatalf("%d http rows, want %d", len(rows), len(want))
	}
	var tenants []string
	for _, r := range rows {
		tenants = append(tenants, r.tenant)
	}
	if n := strings.Count(strings.Join(tenants, ","), "globex"); n != 3 {
		t.Errorf("tenants %v, want 3 requests of globex", tenants)
	}
	if changes := storedRows(t, pg, "kind <> 'http'"); len(changes) != 7 {
		t.Errorf("%d changes, want 7 (2+1 inserts, 1 update, 1 order, 2 transfer updates)", len(changes))
	}
}

func TestPostgresUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-demo", "-db", "postgres://postgres@" + addr + "/test?sslmode=disable"}, &out, &errOut)
	msg := errOut.String()
	if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "not reachable at 127.0.0.1:") ||
		!strings.Contains(msg, "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start") {
		t.Fatalf("exit %d, stderr %q", code, msg)
	}
}

func TestDatabaseMissing(t *testing.T) {
	// The server answers but has no such database: the message names the cause and its fix, not
	// an unreachable server.
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

// parseCurl turns a printed "curl -s [-X M] 'url' -H 'h: v' ... [-d 'body']" into a request,
// unquoting single-quoted words as a POSIX shell does.
func parseCurl(line string) (*http.Request, error) {
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

// TestLocalDatabaseCreatesAMissingDatabase: on a first run against a local server without the
// default database, the example creates it rather than stopping.
func TestLocalDatabaseCreatesAMissingDatabase(t *testing.T) {
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ginexample_" + hex.EncodeToString(b)
	u := "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
	var stderr strings.Builder
	got, stop, err := localDatabase(ctx, u, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	if got != u || !strings.Contains(stderr.String(), "created the database") {
		t.Fatalf("URL %q, said %q", got, stderr.String())
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
}
