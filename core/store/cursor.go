package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
)

// A cursor is the position after the last record of a page: base64url (no padding) of
//
//	version (1 byte) | occurred_at, Unix microseconds (8 bytes) | id (16 bytes) | MAC (16 bytes)
//
// where MAC is HMAC-SHA256 under Options.CursorKey over the first 25 bytes followed by the
// query the page belongs to (scope, order, canonical filter), truncated to 16 bytes. The client
// cannot forge or alter a position, and a cursor presented with another tenant, other filters or
// another order fails verification like a forged one: the error says nothing about why.
const (
	cursorVersion = 1
	cursorPayload = 1 + 8 + 16
	cursorMAC     = 16
	cursorLen     = cursorPayload + cursorMAC
	// cursorTextLen is the length of an encoded cursor; anything else is refused before decoding.
	cursorTextLen = (cursorLen*8 + 5) / 6
)

// position is a keyset position: the sort key of the last record of a page.
type position struct {
	at time.Time
	id uuid.UUID
}

func (s *Store) cursorMAC(payload []byte, binding string) []byte {
	m := hmac.New(sha256.New, s.opts.CursorKey)
	m.Write(payload)
	m.Write([]byte{0})
	m.Write([]byte(binding))
	return m.Sum(nil)[:cursorMAC]
}

// cursorBinding is what a cursor is bound to.
func cursorBinding(sc Scope, order Order, f Filter) string {
	return sc.String() + "\x00" + string(order) + "\x00" + f.canonical()
}

func (s *Store) encodeCursor(p position, binding string) string {
	buf := make([]byte, cursorPayload, cursorLen)
	buf[0] = cursorVersion
	binary.BigEndian.PutUint64(buf[1:9], uint64(p.at.UnixMicro()))
	copy(buf[9:25], p.id[:])
	buf = append(buf, s.cursorMAC(buf, binding)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// decodeCursor verifies and decodes a cursor for the query described by binding.
func (s *Store) decodeCursor(text, binding string) (position, error) {
	if len(text) != cursorTextLen {
		return position{}, ErrInvalidCursor
	}
	buf, err := base64.RawURLEncoding.Strict().DecodeString(text)
	if err != nil || len(buf) != cursorLen || buf[0] != cursorVersion {
		return position{}, ErrInvalidCursor
	}
	if !hmac.Equal(buf[cursorPayload:], s.cursorMAC(buf[:cursorPayload], binding)) {
		return position{}, ErrInvalidCursor
	}
	var p position
	p.at = time.UnixMicro(int64(binary.BigEndian.Uint64(buf[1:9]))).UTC()
	copy(p.id[:], buf[9:25])
	return p, nil
}
