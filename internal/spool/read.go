package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
)

// Read returns up to maxFrames valid frames in order, starting at from and crossing segment
// boundaries, with the position after the last one. It stops before the payloads exceed maxBytes,
// but returns at least one frame when there is one. Bad regions are skipped (and reported once,
// like Open does). Read sees only frames whose Append returned before it was called, never a
// partly written one, and may run concurrently with Append and Ack. A position in a segment that
// has been deleted moves to the start of the next segment kept; the zero Pos reads from Start.
func (s *Spool) Read(from Pos, maxFrames int, maxBytes int) ([]Frame, Pos, error) {
	type view struct {
		num   uint64
		limit int64
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, from, ErrClosed
	}
	var views []view
	for _, g := range s.segs {
		if g.num >= from.Seg {
			views = append(views, view{g.num, g.size})
		}
	}
	s.mu.Unlock()
	if maxFrames <= 0 || len(views) == 0 {
		return nil, from, nil
	}

	type found struct {
		num uint64
		r   region
	}
	var (
		frames []Frame
		bad    []found
		total  int
		pos    = from
		full   bool
		rerr   error
	)
	for _, v := range views {
		if v.num != pos.Seg || pos.Off < headerSize {
			pos = Pos{Seg: v.num, Off: headerSize}
		}
		if pos.Off >= v.limit {
			continue
		}
		f, err := os.Open(s.segPath(v.num))
		if errors.Is(err, fs.ErrNotExist) {
			continue // acked and deleted since the snapshot
		}
		if err != nil {
			rerr = fmt.Errorf("spool: open segment: %w", err)
			break
		}
		sc := &scanner{r: f, limit: v.limit}
		for len(frames) < maxFrames {
			fo, p, r, err := sc.next(pos.Off)
			if err != nil {
				rerr = fmt.Errorf("spool: segment %s: %w", s.segPath(v.num), err)
				break
			}
			if r.n > 0 {
				bad = append(bad, found{v.num, r})
			}
			pos.Off = fo
			if p == nil {
				break
			}
			if len(frames) > 0 && total+len(p) > maxBytes {
				full = true
				break
			}
			next := Pos{Seg: v.num, Off: fo + frameHeader + int64(len(p))}
			frames = append(frames, Frame{Seg: v.num, Payload: slices.Clone(p), Next: next})
			total += len(p)
			pos = next
		}
		f.Close()
		if rerr != nil || full || len(frames) >= maxFrames {
			break
		}
	}
	if len(bad) > 0 {
		s.mu.Lock()
		for _, b := range bad {
			if i := slices.IndexFunc(s.segs, func(g *segment) bool { return g.num == b.num }); i >= 0 {
				s.report(s.segs[i], b.r)
			}
		}
		s.mu.Unlock()
	}
	return frames, pos, rerr
}
