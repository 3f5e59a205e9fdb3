package spool

import (
	"bytes"
	"testing"
)

// FuzzSegment damages a valid segment (overwriting or inserting bytes, then maybe cutting it
// short) and checks that Open and Read never panic, return only frames whose checksum holds, and
// return every frame the damage left untouched.
func FuzzSegment(f *testing.F) {
	seg, spans, pays := testSegment(8, 9)
	f.Add(uint16(20), []byte{0xff}, false, uint16(0xffff))
	f.Add(uint16(0), []byte("XXXX"), false, uint16(0xffff))
	f.Add(uint16(spans[3][0]+4), []byte{0xff, 0xff, 0xff, 0x7f}, false, uint16(0xffff))
	f.Add(uint16(spans[2][0]), []byte("\xc3\xe5\xa9\xf1\x05\x00\x00\x00"), true, uint16(0xffff))
	f.Add(uint16(spans[5][0]), make([]byte, 40), false, uint16(spans[6][0]+3))
	f.Fuzz(func(t *testing.T, at uint16, patch []byte, insert bool, cut uint16) {
		off := min(int(at), len(seg))
		data := bytes.Clone(seg)
		if insert {
			data = append(data[:off:off], append(bytes.Clone(patch), seg[off:]...)...)
		} else {
			patch = patch[:min(len(patch), len(data)-off)]
			copy(data[off:], patch)
		}
		end := min(int(cut), len(data))
		data = data[:end]

		s, err := openSegment(t, data)
		if err != nil {
			if off < headerSize && len(patch) > 0 {
				return // a damaged header may carry an unknown version
			}
			t.Fatalf("Open: %v", err)
		}
		got := readAll(t, s)
		at1 := map[int][]byte{} // frame offset in data -> payload returned
		for _, fr := range got {
			if fr.Seg != 1 {
				t.Fatalf("frame from segment %d", fr.Seg)
			}
			start := int(fr.Next.Off) - frameHeader - len(fr.Payload)
			b := data[start:fr.Next.Off]
			if le.Uint32(b) != frameMagic || int(le.Uint32(b[4:])) != len(fr.Payload) ||
				frameCRC(b[4:8], b[frameHeader:]) != le.Uint32(b[8:]) || !bytes.Equal(b[frameHeader:], fr.Payload) {
				t.Fatalf("frame at %d returned without a valid checksum", start)
			}
			at1[start] = fr.Payload
		}
		for i, sp := range spans {
			start, stop := sp[0], sp[1]
			switch {
			case stop <= off: // before the damage
			case insert && start >= off:
				start, stop = start+len(patch), stop+len(patch)
			case !insert && start >= off+len(patch):
			default:
				continue // touched
			}
			if stop > end {
				continue // cut off
			}
			if p, ok := at1[start]; !ok || !bytes.Equal(p, pays[i]) {
				t.Fatalf("untouched frame %d at %d not returned", i, start)
			}
		}
	})
}
