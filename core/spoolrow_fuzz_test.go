package core

import (
	"bytes"
	"testing"
)

// FuzzDecodeRow checks that decodeRow never panics on arbitrary bytes and that every row it
// accepts re-encodes to the very same bytes: the format has one encoding per row.
func FuzzDecodeRow(f *testing.F) {
	for _, row := range spoolCorpusRows(f) {
		b, err := encodeRow(nil, row)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{spoolRowVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		row, err := decodeRow(b)
		if err != nil {
			if row != nil {
				t.Fatalf("decodeRow returned values with error %v", err)
			}
			return
		}
		again, err := encodeRow(nil, row)
		if err != nil {
			t.Fatalf("decoded row does not encode: %v", err)
		}
		if b[0] != spoolRowVersion {
			// An older format decodes with the later columns NULL; it re-encodes in the current one.
			for _, v := range row[spoolRowColumnsV1:] {
				if v != nil {
					t.Fatalf("a version %d row decoded with %v in a later column", b[0], v)
				}
			}
			if !bytes.Equal(again[1:], append(bytes.Clone(b[1:]), tagNull, tagNull)) {
				t.Fatalf("re-encoding a version %d row differs:\n got %x\nwant %x", b[0], again, b)
			}
		} else if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
		// recordFromRow may refuse a document that is not JSON of the field's type, but never panics.
		_, _ = recordFromRow(row)
	})
}
