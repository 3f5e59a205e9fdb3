package crash

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// buildGinGorm builds examples/gin-gorm into a temporary directory and returns the binary.
func buildGinGorm(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(t.TempDir(), "gin-gorm")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/gin-gorm")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/gin-gorm: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on now, which no connection takes before
// the service does (see testnet.FreePort).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testnet.FreeAddr(t)
}

// outcome is what one HTTP request got.
type outcome struct {
	rid    string
	status int // 0: no response
}

// TestSIGTERMGinGorm runs the Gin + GORM example, drives concurrent writes through its API, sends
// SIGTERM in the middle of them and waits for it to exit. Every request answered with a 2xx must
// then have its HTTP record and its ORM record, each once, and no record may be stored twice.
func TestSIGTERMGinGorm(t *testing.T) {
	start := time.Now()
	bin := buildGinGorm(t)
	built := time.Since(start)
	ctx := context.Background()

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	schemaName := "t_crash_sigterm_" + hex.EncodeToString(suffix)
	conn, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		t.Fatalf("%v; %s", err, pgtest.Hint)
	}
	t.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schemaName}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schemaName, err)
		}
		conn.Close(context.Background())
	})

	addr := freeAddr(t)
	cmd := exec.Command(bin, "-addr", addr, "-schema", schemaName)
	cmd.Env = append(os.Environ(), "AUDIT_DATABASE_URL="+pgtest.URL())
	var stderr strings.Builder
	cmd.Stderr = &syncWriter{b: &stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	outDone := make(chan struct{})
	var outMu sync.Mutex
	var outText strings.Builder
	tokenCh := make(chan string, 1)
	go func() {
		defer close(outDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			outMu.Lock()
			outText.WriteString(line + "\n")
			outMu.Unlock()
			// The first curl line is alice's POST /customers, with her token.
			if !sent && strings.HasPrefix(line, "curl ") {
				if _, rest, ok := strings.Cut(line, "Authorization: Bearer "); ok {
					tok, _, _ := strings.Cut(rest, "'")
					tokenCh <- tok
					sent = true
				}
			}
		}
	}()
	go func() {
		<-outDone
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var token string
	select {
	case token = <-tokenCh:
	case err := <-exited:
		t.Fatalf("the example ended before it served: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the example printed no token within 60s\n%s", stderr.String())
	}
	base := "http://" + addr

	// The load: each worker creates customers and orders for the customers it created.
	const workers = 8
	client := &http.Client{Timeout: 10 * time.Second}
	var mu sync.Mutex
	var outcomes []outcome
	var ok2xx atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []uint64
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rid := fmt.Sprintf("sigterm-%s-%d-%d", hex.EncodeToString(suffix), g, i)
				url, body := base+"/customers", fmt.Sprintf(`{"name":"c%d-%d","email":"c%d-%d@example.com","credit_cents":100}`, g, i, g, i)
				if i%2 == 1 && len(mine) > 0 {
					url, body = fmt.Sprintf("%s/customers/%d/orders", base, mine[len(mine)-1]), fmt.Sprintf(`{"item":"i%d","amount_cents":%d}`, i, i)
				}
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Request-ID", rid)
				resp, err := client.Do(req)
				o := outcome{rid: rid}
				if err == nil {
					o.status = resp.StatusCode
					var created struct {
						ID uint64 `json:"id"`
					}
					if strings.HasSuffix(url, "/customers") && resp.StatusCode == http.StatusCreated {
						if json.NewDecoder(resp.Body).Decode(&created) == nil {
							mine = append(mine, created.ID)
						}
					}
					resp.Body.Close()
					if o.status/100 == 2 {
						ok2xx.Add(1)
					}
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if err != nil {
					// Refused once the listener closed: the example is going away.
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	// SIGTERM once the load runs: after 150 successful writes, or 10s.
	deadline := time.Now().Add(10 * time.Second)
	for ok2xx.Load() < 150 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	atSignal := ok2xx.Load()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the example did not exit within 30s of SIGTERM\n%s", stderr.String())
	}
	exitAfter := time.Since(signalled)
	close(stop)
	wg.Wait()
	if exitErr != nil {
		t.Fatalf("the example exited with %v after SIGTERM\nstderr:\n%s", exitErr, stderr.String())
	}
	outMu.Lock()
	if !strings.Contains(outText.String(), "shutting down") {
		t.Errorf("the example did not report its shutdown; stdout:\n%s", outText.String())
	}
	outMu.Unlock()

	// What the database holds, by request id.
	type counts struct{ http, orm int }
	byRID := map[string]*counts{}
	rows, err := conn.Query(ctx, `SELECT request_id, kind, count(*) FROM `+pgx.Identifier{schemaName, "audit_logs"}.Sanitize()+
		` WHERE request_id IS NOT NULL GROUP BY request_id, kind`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var rid, kind string
		var n int
		if err := rows.Scan(&rid, &kind, &n); err != nil {
			t.Fatal(err)
		}
		c := byRID[rid]
		if c == nil {
			c = &counts{}
			byRID[rid] = c
		}
		if kind == "http" {
			c.http += n
		} else {
			c.orm += n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var dupIDs int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT id FROM `+pgx.Identifier{schemaName, "audit_logs"}.Sanitize()+
		` GROUP BY id HAVING count(*) > 1) d`).Scan(&dupIDs); err != nil {
		t.Fatal(err)
	}

	var succeeded, failed, noResponse, missingHTTP, missingORM, twice int
	for _, o := range outcomes {
		c := byRID[o.rid]
		if c == nil {
			c = &counts{}
		}
		if c.http > 1 || c.orm > 1 {
			twice++
		}
		switch {
		case o.status/100 == 2:
			succeeded++
			if c.http != 1 {
				missingHTTP++
			}
			if c.orm != 1 {
				missingORM++
			}
		case o.status == 0:
			noResponse++
		default:
			failed++
		}
	}
	t.Logf("requests %d: 2xx %d (%d before SIGTERM), other status %d, no response %d; exit 0 %s after SIGTERM; build %s, %.1fs in all",
		len(outcomes), succeeded, atSignal, failed, noResponse, exitAfter.Round(time.Millisecond), built.Round(time.Millisecond), time.Since(start).Seconds())
	t.Logf("2xx without exactly one HTTP record %d, without exactly one ORM record %d; requests with a record twice %d; ids stored twice %d",
		missingHTTP, missingORM, twice, dupIDs)
	if atSignal < 20 {
		t.Errorf("only %d writes succeeded before SIGTERM: the load did not run", atSignal)
	}
	if missingHTTP > 0 || missingORM > 0 {
		t.Errorf("%d answered requests lack their HTTP record and %d their ORM record", missingHTTP, missingORM)
	}
	if twice > 0 || dupIDs > 0 {
		t.Errorf("%d requests have a record twice; %d record ids are stored twice", twice, dupIDs)
	}
}
