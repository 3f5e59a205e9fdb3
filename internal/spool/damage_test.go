package spool

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testSegment builds a valid segment holding n frames of pseudo-random sizes and contents, and
// returns its bytes with each frame's [start, end) offsets and payload.
func testSegment(n int, seed uint64) (seg []byte, spans [][2]int, pays [][]byte) {
	rng := rand.New(rand.NewPCG(seed, 7))
	seg = segHeader()
	var buf []byte
	for i := 0; i < n; i++ {
		p := make([]byte, rng.IntN(300))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		buf = putFrame(buf, p)
		spans = append(spans, [2]int{len(seg), len(seg) + len(buf)})
		seg = append(seg, buf...)
		pays = append(pays, p)
	}
	return seg, spans, pays
}

// openSegment writes data as segment 1 of a fresh spool directory and opens it.
func openSegment(t testing.TB, data []byte) (*Spool, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, Sync: SyncNever, Logger: quiet()})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func TestTornTailEveryOffset(t *testing.T) {
	t.Parallel()
	seg, spans, pays := testSegment(12, 1)
	first := spans[len(spans)-3][0] // cut anywhere inside the last three frames
	for cut := first; cut < len(seg); cut++ {
		s, err := openSegment(t, seg[:cut])
		if err != nil {
			t.Fatalf("cut %d: Open: %v", cut, err)
		}
		got := payloads(readAll(t, s))
		complete := 0
		for complete < len(spans) && spans[complete][1] <= cut {
			complete++
		}
		if len(got) != complete {
			t.Fatalf("cut %d: read %d frames, want %d", cut, len(got), complete)
		}
		for i := range got {
			if !bytes.Equal(got[i], pays[i]) {
				t.Fatalf("cut %d: frame %d differs", cut, i)
			}
		}
		st := s.Stats()
		wantTorn := uint64(0)
		if cut != spans[complete-1][1] {
			wantTorn = 1
		}
		if st.TornTails != wantTorn || st.CorruptRegions != 0 || st.Frames != int64(complete) {
			t.Fatalf("cut %d: stats %+v, want %d torn tail", cut, st, wantTorn)
		}
		if wantTorn == 1 && st.CorruptBytes != int64(cut-spans[complete-1][1]) {
			t.Fatalf("cut %d: %d corrupt bytes, want %d", cut, st.CorruptBytes, cut-spans[complete-1][1])
		}
		s.Close()
	}
}

func TestZeroedTail(t *testing.T) {
	t.Parallel()
	seg, _, pays := testSegment(5, 2)
	dir := t.TempDir()
	name := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	if err := os.WriteFile(name, append(seg, make([]byte, 5000)...), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s := open(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	for _, want := range []string{"torn tail", "file=" + name, fmt.Sprintf("offset=%d", len(seg)), "bytes=5000"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q lacks %q", log.String(), want)
		}
	}
	if got := readAll(t, s); len(got) != len(pays) {
		t.Fatalf("read %d frames, want %d", len(got), len(pays))
	}
	if st := s.Stats(); st.TornTails != 1 || st.CorruptBytes != 5000 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCorruptMiddle(t *testing.T) {
	t.Parallel()
	seg, spans, pays := testSegment(10, 3)
	frame := func(i int) (int, int) { return spans[i][0], spans[i][1] }
	cases := []struct {
		name    string
		damage  func(b []byte) []byte
		lost    []int // frames that may not come back
		badSize int   // bytes skipped, 0 = do not check
	}{
		{"flipped payload byte", func(b []byte) []byte {
			s, e := frame(3)
			b[(s+e)/2+6] ^= 0x40
			return b
		}, []int{3}, spans[3][1] - spans[3][0]},
		{"zeroed range over two frames", func(b []byte) []byte {
			s, _ := frame(4)
			_, e := frame(5)
			clear(b[s+5 : e-3])
			return b
		}, []int{4, 5}, spans[5][1] - spans[4][0]},
		{"huge length", func(b []byte) []byte {
			s, _ := frame(2)
			le.PutUint32(b[s+4:], 0xfffffff0)
			return b
		}, []int{2}, spans[2][1] - spans[2][0]},
		{"length too long by one", func(b []byte) []byte {
			s, _ := frame(6)
			le.PutUint32(b[s+4:], le.Uint32(b[s+4:])+1)
			return b
		}, []int{6}, spans[6][1] - spans[6][0]},
		{"bad magic", func(b []byte) []byte {
			s, _ := frame(7)
			b[s] = 0
			return b
		}, []int{7}, spans[7][1] - spans[7][0]},
		{"garbage inserted between frames", func(b []byte) []byte {
			s, _ := frame(1)
			return append(b[:s:s], append([]byte("garbage\xc3\xe5\xa9\xf1 more"), b[s:]...)...)
		}, nil, len("garbage\xc3\xe5\xa9\xf1 more")},
		{"bad segment header", func(b []byte) []byte {
			b[1] = 'X'
			return b
		}, nil, headerSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := openSegment(t, tc.damage(bytes.Clone(seg)))
			if err != nil {
				t.Fatal(err)
			}
			got := payloads(readAll(t, s))
			var want [][]byte
			for i, p := range pays {
				if !slices.Contains(tc.lost, i) {
					want = append(want, p)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("read %d frames, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("frame %d differs", i)
				}
			}
			st := s.Stats()
			if st.CorruptRegions != 1 || st.TornTails != 0 || st.CorruptBytes != int64(tc.badSize) {
				t.Fatalf("stats %+v, want one corrupt region of %d bytes", st, tc.badSize)
			}
			// Reading again reports nothing new.
			readAll(t, s)
			if st2 := s.Stats(); st2.CorruptRegions != 1 {
				t.Fatalf("region counted again: %+v", st2)
			}
		})
	}
}

func TestUnknownVersionRefused(t *testing.T) {
	t.Parallel()
	seg, _, _ := testSegment(2, 4)
	le.PutUint32(seg[4:], 99)
	if _, err := openSegment(t, seg); err == nil {
		t.Fatal("Open accepted a segment of format version 99")
	}
}

func TestEmptySegmentsRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, data := range [][]byte{nil, segHeader()[:5], segHeader()} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", i+1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, Options{Dir: dir})
	if files := segFiles(t, dir); len(files) != 1 || filepath.Base(files[0]) != fmt.Sprintf("%020d.seg", 4) {
		t.Fatalf("files after Open: %v, want only the new segment 4", files)
	}
	if st := s.Stats(); st.Segments != 1 || st.Frames != 0 {
		t.Fatalf("stats %+v", st)
	}
}
