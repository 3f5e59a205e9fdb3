package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func open(t testing.TB, opts Options) *Spool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readAll reads every frame from Start in small batches.
func readAll(t testing.TB, s *Spool) []Frame {
	t.Helper()
	var all []Frame
	pos := s.Start()
	for {
		fs, next, err := s.Read(pos, 7, 100<<10)
		if err != nil {
			t.Fatalf("Read(%v): %v", pos, err)
		}
		if len(fs) == 0 {
			if next.Less(pos) {
				t.Fatalf("Read moved back from %v to %v", pos, next)
			}
			return all
		}
		for i, f := range fs {
			if i > 0 && !fs[i-1].Next.Less(f.Next) {
				t.Fatalf("frames out of order: %v then %v", fs[i-1].Next, f.Next)
			}
		}
		all = append(all, fs...)
		pos = next
	}
}

func payloads(fs []Frame) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = f.Payload
	}
	return out
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 128 << 10, Sync: SyncNever})
	rng := rand.New(rand.NewPCG(1, 2))
	var want [][]byte
	var segs []uint64
	for i := 0; i < 300; i++ {
		p := make([]byte, rng.IntN(64<<10+1))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		seg, err := s.Append(p)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		want = append(want, p)
		segs = append(segs, seg)
	}
	if n := len(segFiles(t, dir)); n < 20 {
		t.Fatalf("%d segment files, want many", n)
	}
	got := readAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("read %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Payload, want[i]) || got[i].Seg != segs[i] {
			t.Fatalf("frame %d differs (seg %d, want %d)", i, got[i].Seg, segs[i])
		}
	}
	if end := s.End(); got[len(got)-1].Next != end {
		t.Fatalf("last Next %v, End %v", got[len(got)-1].Next, end)
	}
	st := s.Stats()
	if st.Frames != 300 || st.Appended != 300 || st.Segments != len(segFiles(t, dir)) {
		t.Fatalf("stats %+v", st)
	}
	var onDisk int64
	for _, f := range segFiles(t, dir) {
		fi, _ := os.Stat(f)
		onDisk += fi.Size()
	}
	if st.Bytes != onDisk {
		t.Fatalf("Stats.Bytes %d, files hold %d", st.Bytes, onDisk)
	}

	// Ack in reverse order of segments, one frame at a time.
	for i := len(segs) - 1; i >= 0; i-- {
		s.Ack(segs[i], 1)
	}
	st = s.Stats()
	if st.Frames != 0 || st.Acked != 300 {
		t.Fatalf("after acks: %+v", st)
	}
	// The active segment may be kept (below 64 KiB) but every sealed one is gone.
	if files := segFiles(t, dir); len(files) != 1 || st.Segments != 1 {
		t.Fatalf("after acks %d files, Stats.Segments %d, want 1", len(files), st.Segments)
	}
	if fs, _, err := s.Read(Pos{}, 10, 1<<20); err != nil || len(fs) != 0 {
		t.Fatalf("Read after acks: %d frames, %v", len(fs), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestReopenReplaysAndDeletesOnAck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 1 << 10})
	for i := 0; i < 50; i++ {
		if _, err := s.Append(fmt.Appendf(nil, "record %03d %s", i, bytes.Repeat([]byte("x"), 100))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, Options{Dir: dir, SegmentBytes: 1 << 10})
	got := readAll(t, s)
	if len(got) != 50 {
		t.Fatalf("replayed %d frames, want 50", len(got))
	}
	for i, f := range got {
		if !bytes.HasPrefix(f.Payload, fmt.Appendf(nil, "record %03d ", i)) {
			t.Fatalf("frame %d: %q", i, f.Payload[:12])
		}
	}
	if st := s.Stats(); st.Frames != 50 || st.Appended != 0 {
		t.Fatalf("stats after reopen %+v", st)
	}
	for _, f := range got {
		s.Ack(f.Seg, 1)
	}
	if files := segFiles(t, dir); len(files) != 1 {
		t.Fatalf("%d segment files after acking the replay, want only the new active one", len(files))
	}
	// A position inside a deleted segment moves to the next kept one.
	if _, err := s.Append([]byte("after")); err != nil {
		t.Fatal(err)
	}
	fs, _, err := s.Read(Pos{Seg: got[0].Seg, Off: 100}, 10, 1<<20)
	if err != nil || len(fs) != 1 || string(fs[0].Payload) != "after" {
		t.Fatalf("Read from a deleted segment: %d frames, %v", len(fs), err)
	}
}

func TestReadLimits(t *testing.T) {
	t.Parallel()
	s := open(t, Options{Dir: t.TempDir(), SegmentBytes: 4 << 10})
	for i := 0; i < 20; i++ {
		if _, err := s.Append(bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	fs, next, err := s.Read(s.Start(), 100, 2500)
	if err != nil || len(fs) != 2 {
		t.Fatalf("maxBytes 2500: %d frames, %v", len(fs), err)
	}
	fs, _, err = s.Read(next, 100, 10)
	if err != nil || len(fs) != 1 || fs[0].Payload[0] != 2 {
		t.Fatalf("maxBytes below one frame must still return one: %d frames, %v", len(fs), err)
	}
	fs, _, err = s.Read(s.Start(), 5, 1<<20)
	if err != nil || len(fs) != 5 {
		t.Fatalf("maxFrames 5: %d frames, %v", len(fs), err)
	}
	fs, next, err = s.Read(s.End(), 5, 1<<20)
	if err != nil || len(fs) != 0 || next != s.End() {
		t.Fatalf("Read at End: %d frames, next %v, %v", len(fs), next, err)
	}
}

func TestFullAndRelease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 2 << 10, MaxBytes: 10 << 10})
	p := make([]byte, 500)
	var segs []uint64
	for {
		seg, err := s.Append(p)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, seg)
		if len(segs) > 100 {
			t.Fatal("never full")
		}
	}
	st := s.Stats()
	if st.Bytes > 10<<10 {
		t.Fatalf("Bytes %d over MaxBytes", st.Bytes)
	}
	before := len(segFiles(t, dir))
	if _, err := s.Append(p); !errors.Is(err, ErrFull) {
		t.Fatalf("still full: %v", err)
	}
	if after := len(segFiles(t, dir)); after != before || s.Stats().Bytes != st.Bytes {
		t.Fatal("a refused Append changed the spool")
	}
	s.Ack(segs[0], 3) // frames of the first segment
	if got := s.Stats(); got.Bytes >= st.Bytes {
		t.Fatalf("acking the first segment released nothing: %d -> %d bytes", st.Bytes, got.Bytes)
	}
	if _, err := s.Append(p); err != nil {
		t.Fatalf("Append after release: %v", err)
	}
	if _, err := s.Append(make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized payload: %v", err)
	}
}

func TestLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir, Logger: quiet()})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(dir)) {
		t.Fatalf("error %q does not name the directory", err)
	}
	s.Close()
	s2, err := Open(Options{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestReadConcurrentWithAppend(t *testing.T) {
	t.Parallel()
	s := open(t, Options{Dir: t.TempDir(), SegmentBytes: 8 << 10})
	const writers, each = 4, 300
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.Append(fmt.Appendf(nil, "%d:%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// The reader follows the writers, acking as it goes, and must see each writer's frames in order.
	last := map[int]int{0: -1, 1: -1, 2: -1, 3: -1}
	n := 0
	pos := s.Start()
	finished := false
	for !finished || n < writers*each {
		select {
		case <-done:
			finished = true
		default:
		}
		fs, next, err := s.Read(pos, 50, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			var w, i int
			if _, err := fmt.Sscanf(string(f.Payload), "%d:%d", &w, &i); err != nil {
				t.Fatalf("bad payload %q", f.Payload)
			}
			if i != last[w]+1 {
				t.Fatalf("writer %d: frame %d after %d", w, i, last[w])
			}
			last[w] = i
			s.Ack(f.Seg, 1)
		}
		n += len(fs)
		pos = next
		if finished && len(fs) == 0 && n < writers*each {
			t.Fatalf("read %d of %d frames", n, writers*each)
		}
	}
	if st := s.Stats(); st.Frames != 0 || st.TornTails+st.CorruptRegions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSyncModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []SyncMode{SyncBatch, SyncInterval, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			if m, err := ParseSyncMode(mode.String()); err != nil || m != mode {
				t.Fatalf("ParseSyncMode(%q) = %v, %v", mode.String(), m, err)
			}
			s := open(t, Options{Dir: t.TempDir(), Sync: mode, SyncInterval: 10 * time.Millisecond, SegmentBytes: 1 << 10})
			for i := 0; i < 20; i++ {
				if _, err := s.Append(make([]byte, 200)); err != nil {
					t.Fatal(err)
				}
			}
			if mode == SyncNever {
				time.Sleep(50 * time.Millisecond) // a background fsync, if any, would have run by now
				if n := s.Stats().Syncs; n != 0 {
					t.Fatalf("never: %d syncs before Close", n)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if n := s.Stats().Syncs; n != 1 {
					t.Fatalf("never: %d syncs after Close, want 1", n)
				}
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.Stats().Syncs == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no fsync within 5s", mode)
				}
				time.Sleep(time.Millisecond)
			}
			if st := s.Stats(); st.SyncErrors != 0 {
				t.Fatalf("sync errors: %+v", st)
			}
		})
	}
	if _, err := ParseSyncMode("sometimes"); err == nil {
		t.Fatal("ParseSyncMode accepted an unknown mode")
	}
}

// TestFailedSyncFailsAppends closes the active file under the spool so that the next fsync
// fails: the failure is counted, and every later Append refuses with an error wrapping it.
func TestFailedSyncFailsAppends(t *testing.T) {
	t.Parallel()
	s := open(t, Options{Dir: t.TempDir(), Sync: SyncInterval, SyncInterval: time.Hour})
	if _, err := s.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.active.Close()
	s.mu.Unlock()
	if err := s.Sync(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Sync: %v", err)
	}
	st := s.Stats()
	if st.SyncErrors != 1 || !errors.Is(st.LastSyncError, os.ErrClosed) {
		t.Fatalf("stats %+v", st)
	}
	for range 2 {
		if _, err := s.Append([]byte("b")); !errors.Is(err, os.ErrClosed) || !strings.Contains(err.Error(), "fsync") {
			t.Fatalf("Append after a failed fsync: %v", err)
		}
	}
}
