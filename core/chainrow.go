package core

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// zeroHash is the previous hash of the first record of a chain.
var zeroHash [32]byte

// chainFieldsOf builds the canonical fields of one row from the values rowValues made (or a spool
// decoded), as PostgreSQL returns them through ChainSQL once the row is stored: JSON documents in
// jsonb's text form, occurred_at as the microseconds pgx stores (the instant truncated towards the
// past), the address as host(ip). The fields share one buffer.
func chainFieldsOf(row []any, tenantKey string, seq int64, prev [32]byte) (ChainFields, error) {
	return chainFieldsWith(row, nil, tenantKey, seq, prev)
}

// chainFieldsWith is chainFieldsOf for a row whose documents' jsonb texts canon may hold (nil
// holds none): a JSON field canon holds for the document the row holds is that text, and the
// others are parsed.
func chainFieldsWith(row []any, canon *rowCanon, tenantKey string, seq int64, prev [32]byte) (ChainFields, error) {
	var f ChainFields
	_, err := chainFieldsInto(&f, nil, nil, row, canon, tenantKey, seq, prev)
	return f, err
}

// chainFieldsInto is chainFieldsWith writing into f, which must be zero, with the fields' bytes
// appended to buf when it has room for them, or else to the next buffer of chunks; it returns the
// buffer, for the fields of the next row. Earlier bytes of buf are never written.
func chainFieldsInto(f *ChainFields, buf []byte, chunks *byteChunks, row []any, canon *rowCanon, tenantKey string, seq int64, prev [32]byte) ([]byte, error) {
	if len(row) != len(Columns) {
		return buf, fmt.Errorf("chain: row has %d values, want %d", len(row), len(Columns))
	}
	type span struct{ lo, hi int }
	var spans [ChainFieldCount]span
	// Room for every field, so that the buffer is not grown: jsonb's text form of a document is
	// its JSON with a space after each colon and comma, which the slack covers for the usual
	// documents; a document whose text canon holds takes no room.
	size := 64 + len(tenantKey) + 20 + len(prev)
	for col, v := range row {
		switch x := v.(type) {
		case nil:
		case string:
			size += len(x)
		case []byte:
			if canon.text(col, x) == nil {
				size += len(x) + len(x)/8
			}
		default:
			size += 40 // a uuid, a time, a number or an address
		}
	}
	if cap(buf)-len(buf) < size {
		buf = chunks.next(size)
	}
	add := func(i int, lo int) { spans[i] = span{lo, len(buf)} }
	lo := len(buf)
	buf = append(buf, tenantKey...)
	add(0, lo)
	lo = len(buf)
	buf = strconv.AppendInt(buf, seq, 10)
	add(1, lo)
	lo = len(buf)
	buf = append(buf, prev[:]...)
	add(2, lo)
	for i := 3; i < ChainFieldCount; i++ {
		v := row[i-3]
		lo := len(buf)
		var err error
		switch x := v.(type) {
		case nil:
			spans[i] = span{-1, -1}
			continue
		case string:
			buf = append(buf, x...)
		case []byte:
			if x == nil {
				spans[i] = span{-1, -1}
				continue
			}
			if t := canon.text(i-3, x); t != nil {
				f[i] = t // capped where the encoder wrote it, and never written again
				spans[i] = span{-1, -1}
				continue
			}
			if buf, err = jsonbText(buf, x); err != nil {
				return buf, fmt.Errorf("chain: column %s: %w", Columns[i-3], err)
			}
		case uuid.UUID:
			var s [36]byte
			encodeUUID(s[:], x)
			buf = append(buf, s[:]...)
		case time.Time:
			buf = appendUnixMicro(buf, x)
		case int16:
			buf = strconv.AppendInt(buf, int64(x), 10)
		case int32:
			buf = strconv.AppendInt(buf, int64(x), 10)
		case int64:
			buf = strconv.AppendInt(buf, x, 10)
		case netip.Prefix:
			buf = appendHost(buf, x.Addr())
		default:
			return buf, fmt.Errorf("chain: column %s holds a %T", Columns[i-3], v)
		}
		add(i, lo)
	}
	for i, s := range spans {
		if s.lo >= 0 {
			f[i] = buf[s.lo:s.hi:s.hi]
		}
	}
	return buf, nil
}

// appendUnixMicro appends the microseconds from the Unix epoch to t, rounded towards the past, in
// decimal. Late in PostgreSQL's range (after the year 294246) the number exceeds int64, so it is
// written from the seconds and the microseconds apart.
func appendUnixMicro(buf []byte, t time.Time) []byte {
	sec, us := t.Unix(), int64(t.Nanosecond()/1000)
	if sec < 0 && us > 0 { // sec*1e6 + us = -((-sec-1)*1e6 + (1e6-us))
		sec, us = sec+1, 1e6-us
	}
	if sec == 0 {
		if t.Unix() < 0 {
			buf = append(buf, '-')
		}
		return strconv.AppendInt(buf, us, 10)
	}
	buf = strconv.AppendInt(buf, sec, 10)
	var frac [6]byte
	for i := 5; i >= 0; i-- {
		frac[i] = byte('0' + us%10)
		us /= 10
	}
	return append(buf, frac[:]...)
}

// encodeUUID writes u in its lowercase canonical text form into dst[:36].
func encodeUUID(dst []byte, u uuid.UUID) {
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hexDigits[b>>4]
		dst[j+1] = hexDigits[b&0xf]
		j += 2
	}
}

// appendHost appends a as PostgreSQL's host(inet) writes it. That is Go's form except for IPv6
// addresses whose first 96 bits are zero and whose last 32 are not a single group: PostgreSQL
// writes their last 32 bits as an IPv4 address (::1.2.3.4, where Go writes ::102:304).
func appendHost(buf []byte, a netip.Addr) []byte {
	a = a.WithZone("")
	if a.Is6() && !a.Is4In6() {
		b := a.As16()
		zero := true
		for _, x := range b[:12] {
			if x != 0 {
				zero = false
				break
			}
		}
		if zero && (b[12] != 0 || b[13] != 0) {
			buf = append(buf, "::"...)
			return netip.AddrFrom4([4]byte(b[12:16])).AppendTo(buf)
		}
	}
	return a.AppendTo(buf)
}
