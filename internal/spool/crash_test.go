package spool

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashDirEnv = "SPOOL_CRASH_DIR"

// TestHelperProcess is the child of TestKill9: it appends numbered frames until it is killed,
// printing each number once Append has returned. Without the environment variable it does nothing.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	run := os.Getenv("SPOOL_CRASH_RUN")
	s, err := Open(Options{Dir: dir, SegmentBytes: 16 << 10, Sync: SyncNever, Logger: quiet()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	for i := 1; ; i++ {
		if _, err := s.Append(fmt.Appendf(nil, "%s %d", run, i)); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the number reaches the pipe before the next Append.
		fmt.Fprintf(os.Stdout, "%d\n", i)
	}
}

// TestKill9 runs a child that appends to the spool and SIGKILLs it at a random moment, ten times
// over the same directory; every number a child reported appended must then be read back, once
// and in order.
func TestKill9(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const runs = 10
	printed := make([]int, runs)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for r := 0; r < runs; r++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, "SPOOL_CRASH_RUN="+strconv.Itoa(r))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		first := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			var once sync.Once
			for sc.Scan() {
				n, err := strconv.Atoi(sc.Text())
				if err != nil {
					continue // output of the test framework
				}
				if n != printed[r]+1 {
					t.Errorf("run %d: child printed %d after %d", r, n, printed[r])
				}
				printed[r] = n
				once.Do(func() { close(first) })
			}
			once.Do(func() { close(first) })
		}()
		<-first
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := cmd.Wait(); err == nil || printed[r] == 0 {
			t.Fatalf("run %d: child ended by itself (%v) after %d frames: %s", r, err, printed[r], stderr.String())
		}
	}

	s := open(t, Options{Dir: dir})
	got := make([]int, runs)
	lastRun := 0
	for _, f := range readAll(t, s) {
		var r, n int
		if _, err := fmt.Sscanf(string(f.Payload), "%d %d", &r, &n); err != nil || r < 0 || r >= runs {
			t.Fatalf("unexpected frame %q", f.Payload)
		}
		if r < lastRun {
			t.Fatalf("a frame of run %d after frames of run %d", r, lastRun)
		}
		lastRun = r
		if n != got[r]+1 {
			t.Fatalf("run %d: frame %d follows %d", r, n, got[r])
		}
		got[r] = n
	}
	for r := range runs {
		// The child may have been killed after an Append but before printing its number.
		if got[r] != printed[r] && got[r] != printed[r]+1 {
			t.Errorf("run %d: spool holds frames 1..%d, child printed 1..%d", r, got[r], printed[r])
		}
	}
	t.Logf("frames per run: printed %v, stored %v; stats %+v", printed, got, s.Stats())
}
