package core

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditkit/auditkit/internal/spool"
)

// SpoolOptions configure a Writer's spool: an append-only log of segment files, each record
// framed with its length and a CRC-32C checksum, that holds every accepted record until it is
// stored.
//
// What survives, by mode:
//   - Without a spool, the records accepted and not yet written (up to QueueSize plus one batch per
//     worker and one waiting) are lost when the process dies: kill -9, OOM, a crash. Close with a
//     deadline writes them on a graceful shutdown.
//   - With a spool, a record Enqueue accepted is in the spool's current file before Enqueue
//     returns, so a crash of the process loses nothing: the next OpenWriter on the same directory
//     writes every record not yet confirmed stored, skipping those that were (a record keeps its id
//     and occurred_at, and the sink never stores a record twice). A crash of the machine (power
//     loss, kernel panic) can lose what was not yet flushed to the disk, which Sync bounds.
//
// A record is written to the spool already redacted: no secret reaches the disk that would not
// reach the table. The spool's files are created with mode 0600 in a directory of mode 0700, and
// a directory is used by one Writer at a time (OpenWriter fails when another process holds it).
type SpoolOptions struct {
	// Dir is the spool's directory; empty means no spool. Created when missing.
	Dir string
	// MaxBytes bounds the spool's files. When it is reached, a record waits in memory if the queue
	// has room and is refused otherwise (see FailurePolicy). Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size at which a segment file is closed and a new one started; a file is
	// deleted once all its records are stored. Default 16 MiB.
	SegmentBytes int64
	// Sync says when the spool's files are flushed to the disk. Enqueue never waits for it.
	Sync SpoolSync
	// SyncInterval is the period of SpoolSyncInterval. Default 1s.
	SyncInterval time.Duration
}

func (o SpoolOptions) withDefaults() SpoolOptions {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 16 << 20
	}
	o.SegmentBytes = min(o.SegmentBytes, o.MaxBytes)
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	return o
}

// SpoolSync says when a spool's files are flushed to the disk (fsync). It matters only for a
// crash of the machine: a record in a file survives a crash of the process whatever the mode.
type SpoolSync uint8

const (
	// SpoolSyncBatch flushes continuously in the background: each flush covers every record
	// appended since the previous one (group commit), so a machine crash loses at most the records
	// of the last few milliseconds. The default.
	SpoolSyncBatch SpoolSync = iota
	// SpoolSyncInterval flushes every SpoolOptions.SyncInterval: a machine crash loses at most that
	// long's records.
	SpoolSyncInterval
	// SpoolSyncNever leaves flushing to the operating system.
	SpoolSyncNever
)

// String returns "batch", "interval" or "never".
func (s SpoolSync) String() string {
	switch s {
	case SpoolSyncBatch:
		return "batch"
	case SpoolSyncInterval:
		return "interval"
	case SpoolSyncNever:
		return "never"
	}
	return fmt.Sprintf("SpoolSync(%d)", uint8(s))
}

// ParseSpoolSync parses "batch", "interval" or "never" (any case); empty means batch.
func ParseSpoolSync(s string) (SpoolSync, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "batch":
		return SpoolSyncBatch, nil
	case "interval":
		return SpoolSyncInterval, nil
	case "never":
		return SpoolSyncNever, nil
	}
	return 0, fmt.Errorf("auditkit: unknown spool sync mode %q (want batch, interval or never)", s)
}

// ErrSpoolFull is wrapped by the errors that say the spool has no room left.
var ErrSpoolFull = errors.New("auditkit: audit spool is full")

// reserveEstimate is the spool room Reserve sets aside per record.
const reserveEstimate = 8 << 10

// spoolReadBytes bounds the bytes read back from the spool at once.
const spoolReadBytes = 16 << 20

// spoolState is a Writer's spool and where the Writer is in it.
type spoolState struct {
	s   *spool.Spool
	max int64

	// Guarded by the Writer's mu. While overflow is set, new records go to the spool only and the
	// collecting goroutine reads them back from readPos once the memory queue has drained; records
	// an earlier run left start that way.
	overflow  bool
	readPos   spool.Pos
	diskOnly  int       // records in the spool and not in memory (an estimate when frames are damaged)
	replayEnd spool.Pos // the end of what an earlier run left

	spooled, replayed, kept, errors atomic.Uint64
	corrupt                         atomic.Uint64 // frames that could not be decoded
	lastErrReport                   atomic.Int64
}

func openSpoolState(o SpoolOptions, logger *slog.Logger) (*spoolState, error) {
	mode := spool.SyncBatch
	switch o.Sync {
	case SpoolSyncInterval:
		mode = spool.SyncInterval
	case SpoolSyncNever:
		mode = spool.SyncNever
	}
	s, err := spool.Open(spool.Options{
		Dir:          o.Dir,
		SegmentBytes: o.SegmentBytes,
		MaxBytes:     o.MaxBytes,
		Sync:         mode,
		SyncInterval: o.SyncInterval,
		Logger:       logger,
	})
	if err != nil {
		return nil, fmt.Errorf("auditkit: opening the audit spool: %w", err)
	}
	st := s.Stats()
	sp := &spoolState{s: s, max: o.MaxBytes, readPos: s.Start(), replayEnd: s.End()}
	if st.Frames > 0 {
		sp.overflow = true
		sp.diskOnly = int(st.Frames)
		logger.Info("auditkit: the audit spool holds records of an earlier run; writing them",
			"records", st.Frames, "bytes", st.Bytes, "spool", o.Dir)
	}
	return sp, nil
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getFrame() *[]byte { return framePool.Get().(*[]byte) }

func putFrame(b *[]byte) {
	if b != nil && cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		framePool.Put(b)
	}
}

// append writes r's frame to the spool and queues r in memory when memRoom says the queue has room
// and no record waits in the spool only. It reports whether the collecting goroutine must be
// woken. w.mu must be held: appends and the overflow state change together.
func (sp *spoolState) append(w *Writer, r *Record, frame []byte, memRoom bool) (wake bool, err error) {
	pos := sp.s.End()
	seg, err := sp.s.Append(frame)
	if err != nil {
		sp.errors.Add(1)
		now := time.Now().UnixNano()
		if last := sp.lastErrReport.Load(); now-last > int64(time.Second) && sp.lastErrReport.CompareAndSwap(last, now) {
			w.opts.Logger.Error("auditkit: audit spool refused a record", "error", err, "spool", w.opts.Spool.Dir)
		}
		if errors.Is(err, spool.ErrFull) {
			err = fmt.Errorf("%w (%d bytes)", ErrSpoolFull, sp.max)
		}
		return false, err
	}
	sp.spooled.Add(1)
	r.spooled, r.spoolSeg = true, seg
	if !sp.overflow && memRoom {
		full := w.queue.push(r)
		return w.queue.len == 1 || full, nil
	}
	if !sp.overflow {
		sp.overflow, sp.readPos = true, pos
	}
	sp.diskOnly++
	return true, nil
}

// room reports whether the spool can take n more records (an estimate of their size).
func (sp *spoolState) room(n int) error {
	st := sp.s.Stats()
	if st.Bytes+int64(n)*reserveEstimate > sp.max {
		return fmt.Errorf("%w (%d of %d bytes used)", ErrSpoolFull, st.Bytes, sp.max)
	}
	return nil
}

// next reads the next batch of records waiting in the spool only, or returns nil when there is
// none (or Close gave up). It is called by the collecting goroutine, without w.mu.
func (sp *spoolState) next(w *Writer) []*Record {
	for {
		w.mu.Lock()
		if !sp.overflow || w.abandoned {
			w.mu.Unlock()
			return nil
		}
		from := sp.readPos
		w.mu.Unlock()
		frames, next, err := sp.s.Read(from, w.opts.BatchSize, spoolReadBytes)
		if err != nil {
			w.opts.Logger.Error("auditkit: reading the audit spool failed; retrying at the next batch", "error", err,
				"spool", w.opts.Spool.Dir)
			return nil
		}
		recs := make([]*Record, 0, len(frames))
		for _, f := range frames {
			r, err := decodeSpooled(f.Payload)
			if err != nil {
				// The frame's checksum was good, so the bytes are what was written: a record this
				// version cannot read. It is reported and counted, never retried for ever.
				sp.s.Ack(f.Seg, 1)
				sp.corrupt.Add(1)
				w.failed.Add(1)
				w.opts.Logger.Error("auditkit: a record in the audit spool cannot be decoded; skipped",
					"segment", f.Seg, "error", err, "spool", w.opts.Spool.Dir)
				continue
			}
			r.spooled, r.spoolSeg = true, f.Seg
			if !sp.replayEnd.Less(f.Next) {
				sp.replayed.Add(1)
			}
			recs = append(recs, r)
		}
		w.mu.Lock()
		if w.abandoned {
			w.mu.Unlock()
			return nil
		}
		sp.readPos = next
		sp.diskOnly = max(0, sp.diskOnly-len(frames))
		if !next.Less(sp.s.End()) {
			sp.overflow, sp.diskOnly = false, 0
		}
		w.inFlight += len(recs)
		w.mu.Unlock()
		if len(recs) > 0 {
			return recs
		}
		if len(frames) == 0 {
			return nil
		}
	}
}

// decodeSpooled rebuilds a record from its spool frame, keeping its encoded row for the sink.
func decodeSpooled(payload []byte) (*Record, error) {
	row, err := decodeRow(payload)
	if err != nil {
		return nil, err
	}
	r, err := recordFromRow(row)
	if err != nil {
		return nil, err
	}
	r.row = row
	return r, nil
}

// ack tells the spool that recs are settled.
func (sp *spoolState) ack(recs []*Record) {
	var seg uint64
	n := 0
	for _, r := range recs {
		if !r.spooled {
			continue
		}
		if n > 0 && r.spoolSeg != seg {
			sp.s.Ack(seg, n)
			n = 0
		}
		seg = r.spoolSeg
		n++
	}
	if n > 0 {
		sp.s.Ack(seg, n)
	}
}

func (sp *spoolState) stats(st *Stats) {
	s := sp.s.Stats()
	st.Spooled = sp.spooled.Load()
	st.Replayed = sp.replayed.Load()
	st.Kept = sp.kept.Load()
	st.SpoolBytes = s.Bytes
	st.SpoolErrors = sp.errors.Load()
	st.SpoolCorrupt = s.TornTails + s.CorruptRegions + sp.corrupt.Load()
}

func (sp *spoolState) close(logger *slog.Logger) {
	if err := sp.s.Close(); err != nil {
		logger.Error("auditkit: closing the audit spool", "error", err)
	}
}
