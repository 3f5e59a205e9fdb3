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
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
		// recordFromRow may refuse a document that is not JSON of the field's type, but never panics.
		_, _ = recordFromRow(row)
	})
}
