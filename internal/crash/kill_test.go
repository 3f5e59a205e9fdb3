package crash

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/gormaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/internal/testnet"
)

// The child process of TestKillNine is the test binary itself, running TestChildWriter with
// these variables set.
const (
	envChild     = "AUDITKIT_CRASH_CHILD" // "load" or "drain"
	envAppURL    = "AUDITKIT_CRASH_APP_URL"
	envAuditURL  = "AUDITKIT_CRASH_AUDIT_URL"
	envSchema    = "AUDITKIT_CRASH_SCHEMA"
	envSpoolDir  = "AUDITKIT_CRASH_SPOOL"
	envFlush     = "AUDITKIT_CRASH_FLUSH_FIRST" // "1": write what the spool holds before the load
	childRate    = 1500                         // audited creates per second the child aims at
	logEvery     = 10                           // one core.Log call per this many creates
	childWorkers = 8
)

// crashItem is the table the child writes to through GORM.
type crashItem struct {
	ID        int64 `gorm:"primaryKey"`
	Name      string
	Payload   string
	CreatedAt time.Time
}

func (crashItem) TableName() string { return "crash_items" }

// TestChildWriter is the child of TestKillNine; run on its own it has nothing to do.
func TestChildWriter(t *testing.T) {
	mode := os.Getenv(envChild)
	if mode == "" {
		return // not a child: TestKillNine starts this test with the variables set
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := core.Open(ctx, core.Config{
		DatabaseURL:    os.Getenv(envAuditURL),
		Schema:         os.Getenv(envSchema),
		Spool:          core.SpoolConfig{Dir: os.Getenv(envSpoolDir)},
		FlushInterval:  50 * time.Millisecond,
		ConnectTimeout: time.Second,
		Logger:         log,
	})
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	say := func(format string, args ...any) {
		// One write per line: lines from several goroutines never interleave on the pipe.
		_, _ = os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	stats := func() {
		st := w.Stats()
		say("stats enqueued=%d written=%d spooled=%d replayed=%d kept=%d dropped=%d failed=%d spool_bytes=%d spool_errors=%d spool_corrupt=%d",
			st.Enqueued, st.Written, st.Spooled, st.Replayed, st.Kept, st.Dropped, st.Failed, st.SpoolBytes, st.SpoolErrors, st.SpoolCorrupt)
	}
	if mode == "drain" {
		say("ready")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := w.Close(cctx)
		stats()
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
		return
	}

	db, err := gorm.Open(postgres.Open(os.Getenv(envAppURL)), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("gorm.Open: %v", err)
	}
	if _, err := gormaudit.Register(db, gormaudit.Options{Writer: w}); err != nil {
		t.Fatalf("gormaudit.Register: %v", err)
	}
	if os.Getenv(envFlush) == "1" {
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := w.Flush(fctx)
		cancel()
		if err != nil {
			t.Fatalf("Flush before the load: %v", err)
		}
	}
	say("ready")
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			stats()
		}
	}()
	tick := time.NewTicker(time.Second / childRate)
	payload := strings.Repeat("p", 200)
	var n atomic.Int64
	var wg sync.WaitGroup
	for g := range childWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tick.C {
				it := crashItem{Name: fmt.Sprintf("g%d-%d", g, n.Add(1)), Payload: payload}
				if err := db.WithContext(ctx).Create(&it).Error; err != nil {
					say("error create: %v", err)
					continue
				}
				say("row %d", it.ID)
				if it.ID%logEvery == 0 {
					id, err := core.Log(ctx, w, core.Entry{Action: "crash.tick", ResourceType: "tick", ResourceID: strconv.FormatInt(it.ID, 10)})
					if err != nil {
						say("error log: %v", err)
						continue
					}
					say("log %s", id)
				}
			}
		}()
	}
	wg.Wait() // never: the parent kills the process
}

// child is one run of the child process.
type child struct {
	cmd    *exec.Cmd
	ready  chan struct{}
	loaded chan struct{} // closed at the first create reported
	done   chan struct{} // closed when stdout reached its end
	stderr strings.Builder

	mu    sync.Mutex
	rows  []int64
	logs  []string
	stats string // the latest stats line
	errs  []string
}

// startChild runs the test binary as a child in mode, writing audit records to auditURL.
func startChild(t *testing.T, mode string, db *pgtest.DB, auditURL, spoolDir string, flushFirst bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildWriter$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(),
		envChild+"="+mode, envAppURL+"="+db.URL, envAuditURL+"="+auditURL,
		envSchema+"="+db.Schema, envSpoolDir+"="+spoolDir, envFlush+"="+map[bool]string{true: "1"}[flushFirst])
	c := &child{cmd: cmd, ready: make(chan struct{}), loaded: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = &syncWriter{b: &c.stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-c.done
			_ = cmd.Wait()
		}
	})
	go c.read(out)
	return c
}

// read collects the child's lines. A line cut by the kill has no newline and is ignored: only
// complete lines count as printed.
func (c *child) read(out io.Reader) {
	defer close(c.done)
	br := bufio.NewReader(out)
	readyOnce := sync.OnceFunc(func() { close(c.ready) })
	loadedOnce := sync.OnceFunc(func() { close(c.loaded) })
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		c.mu.Lock()
		switch {
		case line == "ready":
			readyOnce()
		case strings.HasPrefix(line, "row "):
			id, perr := strconv.ParseInt(strings.TrimPrefix(line, "row "), 10, 64)
			if perr == nil {
				c.rows = append(c.rows, id)
				loadedOnce()
			}
		case strings.HasPrefix(line, "log "):
			c.logs = append(c.logs, strings.TrimPrefix(line, "log "))
		case strings.HasPrefix(line, "stats "):
			c.stats = line
		case strings.HasPrefix(line, "error "):
			c.errs = append(c.errs, line)
		}
		c.mu.Unlock()
	}
}

// stat returns a counter of the child's latest stats line.
func (c *child) stat(name string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range strings.Fields(c.stats) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// refusedURL is a database URL on a loopback port nothing listens on while the test runs.
func refusedURL(t *testing.T) string {
	t.Helper()
	return "postgres://postgres@" + testnet.ClosedAddr(t) + "/test?sslmode=disable"
}

// TestKillNine kills a process writing audited GORM creates and core.Log records through a
// Writer with a spool (core.Open with Config.Spool) with SIGKILL at a random moment 50-400ms into
// its load, 24 times, restarting it on the same spool each time. In even rounds the restarted
// process first writes what the spool holds, so that the kill comes while new records are being
// stored; in one odd round in two the audit database is unreachable, so that the spool holds many
// records at the kill; in the others the replay and the load start at once. A last run drains the
// spool and closes. Every create and Log the children reported as done must then have exactly one
// record, and no record may be stored twice.
func TestKillNine(t *testing.T) {
	const kills = 24
	start := time.Now()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE crash_items (id bigserial PRIMARY KEY, name text NOT NULL,
		payload text NOT NULL, created_at timestamptz)`); err != nil {
		t.Fatal(err)
	}
	spoolDir := t.TempDir()
	refused := refusedURL(t)
	printedRows := map[int64]bool{}
	printedLogs := map[string]bool{}
	var replayed, spooled, corrupt uint64
	writingRounds := 0 // rounds in which the child stored records before it was killed
	var childErrs []string
	unreachableRounds := 0
	var loaded time.Duration // how long the children ran under load, summed
	for round := range kills {
		// Even rounds write what the spool holds before the load starts, so that the kill comes
		// while new records are being stored; one odd round in two runs without the audit
		// database; the others are killed while they replay and load at once.
		auditURL := pgtest.URL()
		if round%4 == 1 {
			auditURL = refused
			unreachableRounds++
		}
		c := startChild(t, "load", db, auditURL, spoolDir, round%2 == 0)
		select {
		case <-c.ready:
		case <-c.done:
			_ = c.cmd.Wait()
			t.Fatalf("round %d: the child ended before it was ready: %v\n%s", round, c.cmd.ProcessState, c.stderr.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the child did not start within 30s\n%s", round, c.stderr.String())
		}
		// The kill comes 50-400ms into the load: after the first create, which waits for the
		// connections, or 2s after start-up when none comes (the database is slow to answer).
		select {
		case <-c.loaded:
		case <-time.After(2 * time.Second):
		}
		delay := time.Duration(50+rand.IntN(351)) * time.Millisecond
		loaded += delay
		time.Sleep(delay)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.done
		_ = c.cmd.Wait()
		if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: the child was not killed but ended: %v\n%s", round, c.cmd.ProcessState, c.stderr.String())
		}
		c.mu.Lock()
		for _, id := range c.rows {
			printedRows[id] = true
		}
		for _, id := range c.logs {
			printedLogs[id] = true
		}
		childErrs = append(childErrs, c.errs...)
		c.mu.Unlock()
		replayed += c.stat("replayed")
		if c.stat("written") > 0 {
			writingRounds++
		}
		spooled += c.stat("spooled")
		corrupt += c.stat("spool_corrupt")
		t.Logf("round %d (audit db %s): %d creates, %d logs printed; spooled %d, replayed %d, written %d",
			round, map[bool]string{true: "reachable", false: "refused"}[auditURL != refused],
			len(c.rows), len(c.logs), c.stat("spooled"), c.stat("replayed"), c.stat("written"))
	}

	last := startChild(t, "drain", db, pgtest.URL(), spoolDir, false)
	select {
	case <-last.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the draining child did not end within 30s\n%s", last.stderr.String())
	}
	if err := last.cmd.Wait(); err != nil {
		t.Fatalf("the draining child failed: %v\n%s", err, last.stderr.String())
	}
	replayed += last.stat("replayed")
	corrupt += last.stat("spool_corrupt")
	t.Logf("drain: %s", last.stats)
	if len(childErrs) > 0 {
		t.Logf("errors the children reported (their work was not counted as accepted): %d, first: %s", len(childErrs), childErrs[0])
	}

	// What the database holds.
	recs := map[int64]int{}
	rows, err := db.Pool.Query(ctx, `SELECT resource_id, count(*) FROM audit_logs
		WHERE resource_type = 'crash_items' AND kind = 'insert' GROUP BY resource_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var rid string
		var n int
		if err := rows.Scan(&rid, &n); err != nil {
			t.Fatal(err)
		}
		id, err := strconv.ParseInt(rid, 10, 64)
		if err != nil {
			t.Fatalf("record with resource_id %q", rid)
		}
		recs[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	logRecs := map[string]int{}
	rows, err = db.Pool.Query(ctx, `SELECT id::text, count(*) FROM audit_logs WHERE action = 'crash.tick' GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		logRecs[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var dupIDs, total, committed int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT id FROM audit_logs GROUP BY id HAVING count(*) > 1) d`).Scan(&dupIDs); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	var allRows []int64
	rs, err := db.Pool.Query(ctx, `SELECT id FROM crash_items`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			t.Fatal(err)
		}
		allRows = append(allRows, id)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	committed = len(allRows)

	var lost, twice, unprintedNoRecord, unprinted, orphans []int64
	for id := range printedRows {
		switch n := recs[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			twice = append(twice, id)
		}
	}
	isRow := map[int64]bool{}
	for _, id := range allRows {
		isRow[id] = true
		if printedRows[id] {
			continue
		}
		unprinted = append(unprinted, id)
		switch n := recs[id]; {
		case n == 0:
			unprintedNoRecord = append(unprintedNoRecord, id)
		case n > 1:
			twice = append(twice, id)
		}
	}
	for id := range recs {
		if !isRow[id] {
			orphans = append(orphans, id)
		}
	}
	var logsLost, logsTwice int
	for id := range printedLogs {
		switch n := logRecs[id]; {
		case n == 0:
			logsLost++
		case n > 1:
			logsTwice++
		}
	}
	t.Logf("kills %d (%d with the audit database refused, %d killed after records were stored), spool records replayed %d, "+
		"spooled %d, damaged regions skipped %d; %.0f creates/s printed over %s of load",
		kills, unreachableRounds, writingRounds, replayed, spooled, corrupt,
		float64(len(printedRows))/loaded.Seconds(), loaded.Round(time.Millisecond))
	t.Logf("creates: printed (accepted) %d, stored with exactly one record %d, lost %d, stored twice %d; "+
		"rows committed %d, committed but not printed %d (of which without a record %d); records of no row %d",
		len(printedRows), len(printedRows)-len(lost)-countIn(twice, printedRows), len(lost), len(twice),
		committed, len(unprinted), len(unprintedNoRecord), len(orphans))
	t.Logf("core.Log: printed (accepted) %d, lost %d, stored twice %d; audit_logs rows %d, ids stored twice %d; %.1fs",
		len(printedLogs), logsLost, logsTwice, total, dupIDs, time.Since(start).Seconds())

	if spooled == 0 {
		t.Errorf("no record went through the spool: core.Open did not open the configured spool")
	}
	if len(printedRows) < kills*5 {
		t.Errorf("only %d creates were accepted in %d rounds: the load did not run", len(printedRows), kills)
	}
	if len(lost) > 0 {
		t.Errorf("%d accepted creates have no record after the restarts, e.g. row %d", len(lost), lost[0])
	}
	if len(twice) > 0 {
		t.Errorf("%d creates have more than one record, e.g. row %d", len(twice), twice[0])
	}
	if logsLost > 0 || logsTwice > 0 {
		t.Errorf("core.Log records: %d accepted and lost, %d stored twice", logsLost, logsTwice)
	}
	if dupIDs > 0 {
		t.Errorf("%d record ids are stored more than once", dupIDs)
	}
	if len(orphans) > 0 {
		t.Errorf("%d records name a row that does not exist, e.g. %d", len(orphans), orphans[0])
	}
}

func countIn(ids []int64, set map[int64]bool) int {
	n := 0
	for _, id := range ids {
		if set[id] {
			n++
		}
	}
	return n
}
