package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrFull is returned by Append when the frame would take the spool past Options.MaxBytes.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned by operations on a closed Spool.
	ErrClosed = errors.New("spool: closed")
	// ErrLocked is returned by Open when another Spool (in this process or another) holds the directory.
	ErrLocked = errors.New("spool: directory locked by another spool")
	// ErrTooLarge is returned by Append for a payload over MaxPayload bytes.
	ErrTooLarge = errors.New("spool: payload too large")
)

const (
	defaultSegmentBytes = 16 << 20
	defaultMaxBytes     = 1 << 30
	defaultSyncInterval = time.Second

	// rollAckedBytes is the size from which a fully acked active segment is sealed and deleted at
	// once, so that an idle spool does not keep (and replay at the next start) a large segment of
	// settled frames. Smaller ones are kept to avoid creating a file per acknowledgement.
	rollAckedBytes = 64 << 10
)

// Options configure a Spool. Only Dir is required.
type Options struct {
	// Dir holds the segment files and the LOCK file; created with mode 0700 when missing.
	Dir string
	// SegmentBytes is the size at which a segment is sealed and a new one started. Default 16 MiB.
	SegmentBytes int64
	// MaxBytes bounds the bytes of all segments; Append returns ErrFull beyond it. Default 1 GiB.
	MaxBytes int64
	// Sync says when appended data is fsynced. The zero value is SyncBatch.
	Sync SyncMode
	// SyncInterval is the period of SyncInterval mode. Default 1s.
	SyncInterval time.Duration
	// Logger receives reports of skipped regions and fsync failures. Default slog.Default().
	Logger *slog.Logger
}

// Pos is the position of a frame: segment number and byte offset in the segment file. The zero
// Pos is before every frame.
type Pos struct {
	Seg uint64
	Off int64
}

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool {
	return p.Seg < q.Seg || p.Seg == q.Seg && p.Off < q.Off
}

// Frame is one record read back from the spool.
type Frame struct {
	Seg     uint64 // segment holding the frame, for Ack
	Payload []byte // owned by the caller
	Next    Pos    // position just after the frame
}

// Stats is a snapshot of a Spool's counters.
type Stats struct {
	Segments       int    // segment files kept, the active one included
	Bytes          int64  // bytes of those files, counted against MaxBytes
	Frames         int64  // valid frames kept and not yet acked
	Appended       uint64 // frames appended since Open
	Acked          uint64 // frames acked since Open
	TornTails      uint64 // segments ending in a partly written frame
	CorruptRegions uint64 // bad regions followed by a valid frame
	CorruptBytes   int64  // bytes skipped in torn tails and corrupt regions
	Syncs          uint64 // fsync rounds done
	SyncErrors     uint64 // fsync rounds that failed
	LastSyncError  error
}

type segment struct {
	num    uint64
	size   int64 // bytes written and visible to readers
	frames int64 // valid frames
	acked  int64
	sealed bool
	seen   map[int64]bool // offsets of bad regions already reported
}

// Spool is a crash-safe append-only log of opaque payloads, stored as a sequence of segment files.
// Its methods are safe for concurrent use.
type Spool struct {
	opts   Options
	log    *slog.Logger
	unlock func() error

	syncMu sync.Mutex // serialises fsync rounds; taken before mu

	mu         sync.Mutex
	closed     bool
	closing    bool // Close has begun
	nextNum    uint64
	segs       []*segment // ordered by number; the last one is active
	active     *os.File
	broken     bool       // the active file had a failed write: roll before the next append
	pending    []*os.File // sealed files still to fsync and close
	closedNums []uint64   // SyncNever: sealed segments closed without fsync
	unsynced   bool       // appended since the last fsync round
	dirDirty   bool       // segment files created or removed since the last fsync round
	syncErr    error      // sticky: a failed fsync fails every later Append
	buf        []byte
	st         Stats

	kick chan struct{} // SyncBatch: data waits for fsync
	done chan struct{}
	wg   sync.WaitGroup
}

// Open opens (creating when needed) the spool in opts.Dir. It takes an exclusive lock on the
// directory, released by Close or by the death of the process; a second Open of the same
// directory fails with ErrLocked. Every existing segment is scanned: valid frames are counted,
// bad regions are logged, counted in Stats and skipped, and the segment is sealed. New appends go
// to a fresh segment. Segments without a single valid frame are removed.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: Options.Dir is empty")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = defaultSyncInterval
	}
	if opts.Sync < SyncBatch || opts.Sync > SyncNever {
		return nil, fmt.Errorf("spool: Options.Sync: unknown mode %d", int(opts.Sync))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create directory: %w", err)
	}
	unlock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{opts: opts, log: opts.Logger, unlock: unlock, done: make(chan struct{})}
	if err := s.load(); err != nil {
		s.closeFiles()
		_ = unlock()
		return nil, err
	}
	if err := s.roll(); err != nil {
		s.closeFiles()
		_ = unlock()
		return nil, err
	}
	switch opts.Sync {
	case SyncBatch:
		s.kick = make(chan struct{}, 1)
		s.wg.Add(1)
		go s.batchLoop()
	case SyncInterval:
		s.wg.Add(1)
		go s.intervalLoop()
	}
	return s, nil
}

func (s *Spool) segPath(num uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%020d.seg", num))
}

// load scans the segments left in the directory.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: read directory: %w", err)
	}
	var nums []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil || n == 0 {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, n := range nums {
		seg, err := s.scanSegment(n)
		if err != nil {
			return err
		}
		if seg.frames == 0 {
			// Nothing to replay: a segment created just before a crash, or wholly damaged.
			if err := os.Remove(s.segPath(n)); err != nil {
				return fmt.Errorf("spool: remove empty segment: %w", err)
			}
			s.dirDirty = true
			continue
		}
		s.segs = append(s.segs, seg)
		s.st.Bytes += seg.size
	}
	if len(nums) > 0 {
		// Numbers keep increasing past removed segments, so that a Pos is never reused.
		s.nextNum = nums[len(nums)-1] + 1
	}
	return nil
}

func (s *Spool) scanSegment(num uint64) (*segment, error) {
	path := s.segPath(num)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spool: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: stat segment: %w", err)
	}
	seg := &segment{num: num, size: fi.Size(), sealed: true, seen: map[int64]bool{}}
	sc := &scanner{r: f, limit: seg.size}
	h, err := sc.window(0, headerSize)
	if err != nil {
		return nil, fmt.Errorf("spool: segment %s: %w", path, err)
	}
	if len(h) < headerSize {
		s.report(seg, region{off: 0, n: int64(len(h)), torn: true})
		return seg, nil
	}
	if le.Uint32(h) != segMagic {
		s.report(seg, region{off: 0, n: headerSize})
	} else if v := le.Uint32(h[4:]); v != segVersion {
		return nil, fmt.Errorf("%w %d in %s", errVersion, v, path)
	}
	for off := int64(headerSize); ; {
		fo, p, bad, err := sc.next(off)
		if err != nil {
			return nil, fmt.Errorf("spool: segment %s: %w", path, err)
		}
		if bad.n > 0 {
			s.report(seg, bad)
		}
		if p == nil {
			break
		}
		seg.frames++
		off = fo + frameHeader + int64(len(p))
	}
	return seg, nil
}

// report logs and counts a bad region once per segment and offset. Called with mu held or before
// the Spool is shared.
func (s *Spool) report(seg *segment, r region) {
	if seg.seen == nil {
		seg.seen = map[int64]bool{}
	}
	if seg.seen[r.off] {
		return
	}
	seg.seen[r.off] = true
	s.st.CorruptBytes += r.n
	kind := "corrupt region"
	if r.torn {
		kind = "torn tail"
		s.st.TornTails++
	} else {
		s.st.CorruptRegions++
	}
	s.log.Warn("spool: skipped "+kind, "file", s.segPath(seg.num), "offset", r.off, "bytes", r.n, "kind", kind)
}

// roll seals the active segment (if any) and starts the next one. Called with mu held.
func (s *Spool) roll() error {
	num := max(s.nextNum, 1)
	f, err := os.OpenFile(s.segPath(num), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	if _, err := f.Write(segHeader()); err != nil {
		f.Close()
		_ = os.Remove(s.segPath(num))
		return fmt.Errorf("spool: write segment header: %w", err)
	}
	if s.active != nil {
		old := s.segs[len(s.segs)-1]
		old.sealed = true
		if s.opts.Sync == SyncNever {
			// Not kept open until Close: a long run would pile up descriptors. Close reopens
			// the file to fsync it.
			s.active.Close()
			s.closedNums = append(s.closedNums, old.num)
		} else {
			s.pending = append(s.pending, s.active)
		}
		if old.acked >= old.frames {
			s.remove(old)
		}
	}
	s.nextNum = num + 1
	s.active = f
	s.broken = false
	s.segs = append(s.segs, &segment{num: num, size: headerSize})
	s.st.Bytes += headerSize
	s.dirDirty = true
	return nil
}

// remove deletes a sealed segment. Called with mu held.
func (s *Spool) remove(seg *segment) {
	if err := os.Remove(s.segPath(seg.num)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("spool: remove acked segment", "file", s.segPath(seg.num), "err", err)
		return
	}
	s.segs = slices.DeleteFunc(s.segs, func(g *segment) bool { return g == seg })
	s.closedNums = slices.DeleteFunc(s.closedNums, func(n uint64) bool { return n == seg.num })
	s.st.Bytes -= seg.size
	s.dirDirty = true
}

// Append stores payload as one frame with a single write(2): once it returns, the frame survives
// a crash of the process (an OS crash only once fsynced, see SyncMode). It never waits for fsync.
// It returns the number of the segment the frame landed in, for Ack. A frame that would take the
// spool past MaxBytes is not written and ErrFull is returned.
func (s *Spool) Append(payload []byte) (uint64, error) {
	if len(payload) > MaxPayload {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), MaxPayload)
	}
	need := int64(frameHeader + len(payload))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing { // nothing may be appended after Close's final fsync
		return 0, ErrClosed
	}
	if s.syncErr != nil {
		return 0, fmt.Errorf("spool: an earlier fsync failed, appended data may be lost: %w", s.syncErr)
	}
	cur := s.segs[len(s.segs)-1]
	rollFirst := s.broken || cur.size > headerSize && cur.size+need > s.opts.SegmentBytes
	if rollFirst {
		need += headerSize
	}
	if s.st.Bytes+need > s.opts.MaxBytes {
		return 0, fmt.Errorf("%w: %d of %d bytes used, frame needs %d", ErrFull, s.st.Bytes, s.opts.MaxBytes, need)
	}
	if rollFirst {
		if err := s.roll(); err != nil {
			return 0, err
		}
		cur = s.segs[len(s.segs)-1]
	}
	s.buf = putFrame(s.buf, payload)
	if _, err := s.active.Write(s.buf); err != nil {
		// A partial frame may be in the file; readers never look past cur.size, and the next
		// Append starts a new segment so that no frame follows the fragment.
		s.broken = true
		return 0, fmt.Errorf("spool: write frame to %s: %w", s.segPath(cur.num), err)
	}
	cur.size += int64(len(s.buf))
	cur.frames++
	s.st.Bytes += int64(len(s.buf))
	s.st.Appended++
	s.unsynced = true
	if s.kick != nil {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return cur.num, nil
}

// Start returns the position of the oldest frame kept: the start of the oldest segment.
func (s *Spool) Start() Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return Pos{}
	}
	return Pos{Seg: s.segs[0].num, Off: headerSize}
}

// End returns the position just after the last appended frame.
func (s *Spool) End() Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return Pos{}
	}
	cur := s.segs[len(s.segs)-1]
	return Pos{Seg: cur.num, Off: cur.size}
}

// Ack settles n frames of segment seg. A sealed segment whose valid frames are all acked is
// deleted and its bytes are released from the MaxBytes budget. Acks may come in any order across
// segments. The active segment, once fully acked, is sealed and deleted when it has reached 64 KiB;
// a smaller one is kept (its frames are replayed after a restart, which the consumer must
// tolerate anyway).
func (s *Spool) Ack(seg uint64, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Acked += uint64(n)
	if s.closed {
		return
	}
	i := slices.IndexFunc(s.segs, func(g *segment) bool { return g.num == seg })
	if i < 0 {
		return // already deleted
	}
	g := s.segs[i]
	g.acked += int64(n)
	if g.acked < g.frames {
		return
	}
	if g.sealed {
		s.remove(g)
		return
	}
	if g.size >= rollAckedBytes {
		if err := s.roll(); err != nil {
			s.log.Warn("spool: start a new segment", "err", err)
		}
	}
}

// Stats returns a snapshot of the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Segments = len(s.segs)
	for _, g := range s.segs {
		st.Frames += max(g.frames-g.acked, 0)
	}
	return st
}

// Close stops the background fsync, fsyncs what was appended (whatever the mode), closes the
// files and releases the directory lock. It is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()

	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	err := s.syncLocked(true)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if cerr := s.closeFiles(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if uerr := s.unlock(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	return err
}

func (s *Spool) closeFiles() error {
	var err error
	for _, f := range s.pending {
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	s.pending = nil
	if s.active != nil {
		if cerr := s.active.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		s.active = nil
	}
	return err
}
