package core

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// rememberedValues are strings that records of one table may repeat under a key: plain ones,
// and ones that str changes, some of them differently at different depths.
var rememberedValues = []string{
	"gold",
	"",
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
	"Bearer abcdefghijklmnopqrstuvwxyz0123456789",
	"4111 1111 1111 1111",
	"ordinary words ok 1", // as long as the card number
	"https://user:secret@example.com/x?token=abc&plan=gold",
	`{"password":"x","plan":"gold"}`, // read as JSON at depth 1, too deep near redactMaxDepth
	"token=abc and more words",
	"bad\xff\x00bytes",
	strings.Repeat("n", shapeValueMax+1), // too long to be remembered
	strings.Repeat("n", shapeValueMax),
}

// TestEncodeValuesRemembered checks the fused encoding of records that repeat the keys and the
// string values of the records before them, which the encoder judges once (keyShape.last),
// against json.Marshal of the redacted copy: through rowBatches with and without jsonb texts,
// with two Redactors that judge the values differently.
func TestEncodeValuesRemembered(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	pick := func() any {
		if rng.IntN(8) == 0 {
			return rng.IntN(3) // the key's value is not always a string
		}
		return rememberedValues[rng.IntN(len(rememberedValues))]
	}
	img := func() map[string]any {
		return map[string]any{"plan": pick(), "note": pick(), "ref": pick(),
			"nested": map[string]any{"plan": pick(), "note": pick()}}
	}
	recs := make([]*Record, 2000)
	for i := range recs {
		rec := &Record{Kind: KindUpdate, Before: img(), After: img(), Metadata: map[string]any{"note": pick(), "ref": pick()}}
		if rng.IntN(4) == 0 {
			rec.After = rec.Before
		}
		rec.normalize(time.Now())
		recs[i] = rec
	}
	for _, red := range []*Redactor{NewRedactor(nil, nil), NewRedactor([]string{"ref"}, nil)} {
		for _, canon := range []bool{false, true} {
			b := newRowBatch(red, 500)
			b.canon = canon
			for i, rec := range recs {
				if i%500 == 0 && i > 0 {
					b.release() // as the Writer reuses a stored batch
					for _, sh := range b.enc.shapes {
						for _, v := range sh.last {
							if v != (shapeValue{}) {
								t.Fatalf("a released batch still holds the string %q", v.in)
							}
						}
					}
					b.resize(500)
					b.canon = canon
				}
				checkRowDocs(t, red, b, rec, i)
			}
		}
	}
}

// TestEncodeValuesRememberedByDepth checks objects whose shape the objects inside them replace
// while they are written: an object with keys "a" and "z" holds, under "a", a chain of objects
// with the same keys, so deep that the last of them judge the string under "z" as too deep. The
// object then writes that string under its own "z", at depth 1, where it is read as JSON.
func TestEncodeValuesRememberedByDepth(t *testing.T) {
	s := `{"k":1}`
	red := NewRedactor(nil, nil)
	for n := 1; n < redactMaxDepth+2; n++ {
		chain := map[string]any{"a": 1, "z": s}
		for range n {
			chain = map[string]any{"a": chain, "z": s}
		}
		b := newRowBatch(red, 4)
		for i := range 3 {
			rec := &Record{Kind: KindUpdate, Before: map[string]any{"a": 1, "z": s}, After: chain}
			if i == 1 {
				rec.Before, rec.After = chain, rec.Before
			}
			rec.normalize(time.Now())
			checkRowDocs(t, red, b, rec, n)
		}
		checkEncodeMap(t, red, chain)
	}
}

// checkRowDocs makes the row of rec in b and compares its JSON documents (and, for a batch
// that writes them, their jsonb texts) with those of the redacted copy of rec. The copy is made
// again up to encodeTries times when it differs (see encodeTries).
func checkRowDocs(t testing.TB, red *Redactor, b *rowBatch, rec *Record, i int) {
	t.Helper()
	var r Record
	got, err := b.rowOf(rec, &r)
	if err != nil {
		t.Fatal(err)
	}
	var diff string
	for range encodeTries {
		if diff = rowDocsDiff(t, red, b.canon, got, &r, rec); diff == "" {
			return
		}
	}
	t.Fatalf("record %d, %s", i, diff)
}

// rowDocsDiff compares the documents of got, the row b made of rec (carried by r), with those of
// the redacted copy of rec; it returns "" when they are the same.
func rowDocsDiff(t testing.TB, red *Redactor, canon bool, got []any, r *Record, rec *Record) string {
	want, err := rowValues(red.Record(rec))
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []int{colBefore, colAfter, colMetadata} {
		g, w := got[col].([]byte), want[col].([]byte)
		if !canon {
			if !bytes.Equal(g, w) {
				return fmt.Sprintf("%s:\n got: %s\nwant: %s", Columns[col], g, w)
			}
			continue
		}
		// With texts, the document is jsonb's text of the JSON.
		wt, err := jsonbText(nil, w)
		if err != nil {
			t.Fatal(err)
		}
		if text := r.canon.text(col, g); text != nil && !bytes.Equal(g, wt) {
			return fmt.Sprintf("%s, with texts:\n got: %s\nwant: %s", Columns[col], g, wt)
		} else if text == nil && !bytes.Equal(g, w) {
			return fmt.Sprintf("%s, text given up:\n got: %s\nwant: %s", Columns[col], g, w)
		}
	}
	return ""
}

// FuzzEncodeRepeated encodes, through one batch, records that repeat two fuzzed strings under the
// same keys at several depths, against json.Marshal of their redacted copies.
func FuzzEncodeRepeated(f *testing.F) {
	f.Add("gold", "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl", uint8(5))
	f.Add(`{"password":"x"}`, "password=hunter2", uint8(0))
	f.Add("4111 1111 1111 1111", "https://u:p@h/x?token=1", uint8(9))
	f.Add("a\xffb", "", uint8(200))
	red := NewRedactor(nil, nil)
	f.Fuzz(func(t *testing.T, s1, s2 string, pattern uint8) {
		pick := func(i, j int) string {
			if pattern>>((i+j)%8)&1 == 1 {
				return s2
			}
			return s1
		}
		for _, canon := range []bool{false, true} {
			b := newRowBatch(red, 16)
			b.canon = canon
			for i := range 16 {
				img := func(j int) map[string]any {
					deep := map[string]any{"plan": pick(i, j+3), "note": pick(i, j+4)}
					for range i % 4 * 20 {
						deep = map[string]any{"plan": deep, "note": pick(i, j+5)}
					}
					return map[string]any{"plan": pick(i, j), "note": pick(i, j+1),
						"nested": map[string]any{"plan": pick(i, j+2), "note": deep}}
				}
				rec := &Record{Kind: KindUpdate, Before: img(0), After: img(1), Metadata: map[string]any{"note": pick(i, 6), "plan": pick(i, 7)}}
				rec.normalize(time.Now())
				checkRowDocs(t, red, b, rec, i)
			}
		}
	})
}
