package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	segMagic   uint32 = 0x50534b41 // "AKSP" in little-endian byte order
	segVersion uint32 = 1
	headerSize        = 8 // segment header: magic, version

	frameMagic  uint32 = 0xf1a9e5c3 // bytes c3 e5 a9 f1: never valid UTF-8, so rare inside JSON payloads
	frameHeader        = 12         // magic, length, CRC-32C

	// MaxPayload is the largest payload Append accepts. Scanning treats a larger length field as
	// corruption, which keeps a damaged length from making the reader swallow the rest of a segment.
	MaxPayload = 64 << 20

	readChunk = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var le = binary.LittleEndian

// errVersion reports a segment written by an unknown format version; its frames are not guessed at.
var errVersion = errors.New("spool: unsupported segment format version")

// frameCRC is the checksum stored in a frame: CRC-32C over the length field and the payload.
func frameCRC(lenField, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(lenField, castagnoli), castagnoli, payload)
}

// putFrame lays out one frame for payload in buf (grown as needed) and returns it.
func putFrame(buf, payload []byte) []byte {
	n := frameHeader + len(payload)
	if cap(buf) < n {
		buf = make([]byte, n, max(n, 2*cap(buf)))
	}
	buf = buf[:n]
	le.PutUint32(buf[0:], frameMagic)
	le.PutUint32(buf[4:], uint32(len(payload)))
	copy(buf[frameHeader:], payload)
	le.PutUint32(buf[8:], frameCRC(buf[4:8], buf[frameHeader:]))
	return buf
}

func segHeader() []byte {
	var h [headerSize]byte
	le.PutUint32(h[0:], segMagic)
	le.PutUint32(h[4:], segVersion)
	return h[:]
}

// region is a run of bytes in a segment that holds no valid frame.
type region struct {
	off, n int64
	torn   bool // runs to the end of the segment: a write cut short by a crash
}

// scanner walks the frames of one segment between two offsets, reading through a window so that
// neither a large segment nor a long corrupt run is held in memory at once.
type scanner struct {
	r     io.ReaderAt
	limit int64 // no byte at or past limit is read
	buf   []byte
	base  int64 // file offset of buf[0]
}

// window returns the bytes [off, off+n) clipped to the limit. A file shorter than the limit
// (truncated underneath) lowers the limit to its real end.
func (sc *scanner) window(off int64, n int) ([]byte, error) {
	if rest := sc.limit - off; int64(n) > rest {
		n = int(max(rest, 0))
	}
	if off >= sc.base && off+int64(n) <= sc.base+int64(len(sc.buf)) {
		return sc.buf[off-sc.base : off-sc.base+int64(n)], nil
	}
	size := int64(max(n, readChunk))
	size = min(size, sc.limit-off)
	if int64(cap(sc.buf)) < size {
		sc.buf = make([]byte, size)
	}
	sc.buf = sc.buf[:size]
	m, err := sc.r.ReadAt(sc.buf, off)
	if int64(m) < size {
		if err != nil && !errors.Is(err, io.EOF) {
			sc.buf = sc.buf[:0]
			return nil, fmt.Errorf("spool: read at offset %d: %w", off, err)
		}
		sc.limit = off + int64(m)
		sc.buf = sc.buf[:m]
	}
	sc.base = off
	return sc.buf[:min(n, m)], nil
}

// frameAt returns the payload of the valid frame starting at off, or ok=false. The payload aliases
// the scanner's window and is valid until the next call.
func (sc *scanner) frameAt(off int64) (payload []byte, ok bool, err error) {
	if sc.limit-off < frameHeader {
		return nil, false, nil
	}
	h, err := sc.window(off, frameHeader)
	if err != nil || len(h) < frameHeader || le.Uint32(h) != frameMagic {
		return nil, false, err
	}
	n := int64(le.Uint32(h[4:]))
	if n > MaxPayload || n > sc.limit-off-frameHeader {
		return nil, false, nil
	}
	b, err := sc.window(off, frameHeader+int(n))
	if err != nil || int64(len(b)) < frameHeader+n {
		return nil, false, err
	}
	if frameCRC(b[4:8], b[frameHeader:]) != le.Uint32(b[8:]) {
		return nil, false, nil
	}
	return b[frameHeader:], true, nil
}

// next finds the first valid frame starting at or after off. It returns the frame's offset and
// payload, and the bad region skipped before it (n == 0 when none). At the end of the segment it
// returns frameOff == sc.limit and a nil payload.
func (sc *scanner) next(off int64) (frameOff int64, payload []byte, bad region, err error) {
	p, ok, err := sc.frameAt(off)
	if err != nil || ok {
		return off, p, region{}, err
	}
	if off >= sc.limit {
		return sc.limit, nil, region{}, nil
	}
	var magic [4]byte
	le.PutUint32(magic[:], frameMagic)
	for q := off + 1; q+frameHeader <= sc.limit; {
		w, err := sc.window(q, readChunk)
		if err != nil {
			return 0, nil, region{}, err
		}
		i := bytes.Index(w, magic[:])
		if i < 0 {
			if len(w) <= 3 {
				break
			}
			q += int64(len(w) - 3) // a magic may straddle the window's end
			continue
		}
		cand := q + int64(i)
		p, ok, err := sc.frameAt(cand)
		if err != nil {
			return 0, nil, region{}, err
		}
		if ok {
			return cand, p, region{off: off, n: cand - off}, nil
		}
		q = cand + 1
	}
	return sc.limit, nil, region{off: off, n: sc.limit - off, torn: true}, nil
}
