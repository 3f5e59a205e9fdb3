package core

import (
	"math"
	"slices"
	"unicode/utf8"
)

// With the hash chain on, every JSON document of a row is hashed in the text PostgreSQL prints
// for it as jsonb (see jsonbtext.go). The encoder can write that text while it writes the
// document (redactEncoder.canon), so that the chain does not parse the document again: each value
// written to buf is also written to cbuf in jsonb's form, an object's members are written in the
// order buf has them (bytewise) and reordered by key length when the object ends, and a value that
// goes through encoding/json gets its text from jsonbText. When the text of a document cannot be
// made exactly (a string jsonb refuses, a number numeric cannot hold) the encoder gives it up, and
// the chain parses the document as before.

// canonSeg is one member of an object being written to cbuf: where its key begins, where the
// member ends (set when the object ends) and the key's length in bytes.
type canonSeg struct {
	at, end, klen int
}

// rowCanon holds the jsonb texts the encoder wrote for the JSON documents of one row (before,
// after, diff, metadata), with the documents they were made from: a text stands for its column
// only while the row holds that very document (the same length at the same address), so that a
// row changed after it was encoded (its personal values encrypted, a document replaced) is parsed
// again. It holds few pointers, as a batch holds one for each of its rows.
type rowCanon struct {
	all  []byte    // the texts, one after the other
	ends [4]uint32 // where each text ends in all; it begins where the one before ends
	docs [4]*byte  // the first byte of the document each text was made from; nil when none was made
	lens [4]uint32 // the length of that document
	// fields, when not nil, are the chain fields of the row whose first value is at rowAt, made
	// by the Writer's encoding goroutine while a worker stores the batch before (see
	// rowBatch.prepareChain): the sink's worker then links the row without making them again.
	fields *ChainFields
	rowAt  *any
}

// newRowCanon returns the rowCanon of texts, the texts made for docs (nil when none was made),
// which lie one after the other in all.
func newRowCanon(c *rowCanon, all []byte, docs, texts *[4][]byte) {
	*c = rowCanon{all: all}
	if uint64(len(all)) > math.MaxUint32 {
		return // no texts
	}
	end := 0
	for k, t := range texts {
		if t != nil {
			end += len(t)
			c.docs[k], c.lens[k] = &docs[k][0], uint32(len(docs[k]))
		}
		c.ends[k] = uint32(end)
	}
}

// canonSlot returns the index in rowCanon of the JSON column col (an index in Columns), or -1.
func canonSlot(col int) int {
	switch col {
	case colBefore:
		return 0
	case colAfter:
		return 1
	case colDiff:
		return 2
	case colMetadata:
		return 3
	}
	return -1
}

// text returns the jsonb text of doc, the value of column col, when c holds it; nil otherwise.
func (c *rowCanon) text(col int, doc []byte) []byte {
	if c == nil || len(doc) == 0 {
		return nil
	}
	k := canonSlot(col)
	if k < 0 || c.docs[k] != &doc[0] || c.lens[k] != uint32(len(doc)) || uint64(len(doc)) > math.MaxUint32 {
		return nil
	}
	start := uint32(0)
	if k > 0 {
		start = c.ends[k-1]
	}
	return c.all[start:c.ends[k]:c.ends[k]]
}

// docStart begins the jsonb text of a document and returns where it starts in cbuf.
func (e *redactEncoder) docStart() int {
	e.cfail = false
	return len(e.cbuf)
}

// docEnd returns the jsonb text of the document begun at start, capped at its end, or nil (the
// text dropped) when it was given up or the encoder does not write texts.
func (e *redactEncoder) docEnd(start int) []byte {
	if !e.canon {
		return nil
	}
	if e.cfail {
		e.cbuf = e.cbuf[:start]
		e.cfail = false
		return nil
	}
	return e.cbuf[start:len(e.cbuf):len(e.cbuf)]
}

// objectStart begins an object in cbuf and returns the base of its members on the stack of
// segments.
func (e *redactEncoder) objectStart() int {
	if e.canon {
		e.cbuf = append(e.cbuf, '{')
	}
	return len(e.segs)
}

// canonMember begins a member of the object whose members start at base on the stack: its
// separator, and its segment. The caller writes the key, ": " and the value.
func (e *redactEncoder) canonMember(base, klen int) {
	if len(e.segs) > base {
		e.cbuf = append(e.cbuf, ", "...)
	}
	e.segs = append(e.segs, canonSeg{at: len(e.cbuf), klen: klen})
}

// objectEnd ends the object whose members start at base: written in bytewise order of their keys,
// they are put in jsonb's order, by key length and then bytewise, which a stable sort by length
// gives.
func (e *redactEncoder) objectEnd(base int) {
	segs := e.segs[base:]
	sorted := true
	for i := 1; i < len(segs); i++ {
		if segs[i].klen < segs[i-1].klen {
			sorted = false
			break
		}
	}
	if !sorted {
		for i := range segs {
			if i+1 < len(segs) {
				segs[i].end = segs[i+1].at - len(", ")
			} else {
				segs[i].end = len(e.cbuf)
			}
		}
		first := segs[0].at
		e.cscratch = append(e.cscratch[:0], e.cbuf[first:]...)
		if len(segs) <= 32 { // an insertion sort, stable, without calls
			for i := 1; i < len(segs); i++ {
				for j := i; j > 0 && segs[j].klen < segs[j-1].klen; j-- {
					segs[j], segs[j-1] = segs[j-1], segs[j]
				}
			}
		} else {
			slices.SortStableFunc(segs, func(a, b canonSeg) int { return a.klen - b.klen })
		}
		e.cbuf = e.cbuf[:first]
		for i, s := range segs {
			if i > 0 {
				e.cbuf = append(e.cbuf, ", "...)
			}
			e.cbuf = append(e.cbuf, e.cscratch[s.at-first:s.end-first]...)
		}
	}
	e.segs = e.segs[:base]
	e.cbuf = append(e.cbuf, '}')
}

// canonCopy writes to cbuf the bytes buf holds from at, which jsonb prints as they are.
func (e *redactEncoder) canonCopy(at int) {
	e.cbuf = append(e.cbuf, e.buf[at:]...)
}

// canonStr writes to cbuf the jsonb text of the string s, which buf holds encoded from at. When
// encoding/json escaped nothing (the encoding is the string and its quotes), jsonb escapes nothing
// either.
func (e *redactEncoder) canonStr(at int, s string) {
	if len(e.buf)-at == len(s)+2 {
		e.cbuf = append(e.cbuf, e.buf[at:]...)
		return
	}
	e.canonEscaped(s)
}

// canonEscaped writes to cbuf the jsonb text of the string s, which encoding/json escaped.
func (e *redactEncoder) canonEscaped(s string) {
	var ok bool
	if e.cbuf, ok = appendJSONBStr(e.cbuf, s); !ok {
		e.cfail = true
	}
}

// canonNumber writes to cbuf the jsonb text of the JSON number buf holds from at, as numeric
// prints it.
func (e *redactEncoder) canonNumber(at int) {
	n, err := parseNumeric(e.buf[at:])
	if err != nil {
		e.cfail = true
		return
	}
	e.cbuf = n.appendText(e.cbuf)
}

// canonParse writes to cbuf the jsonb text of doc, a JSON value encoding/json wrote.
func (e *redactEncoder) canonParse(doc []byte) {
	var err error
	if e.cbuf, err = jsonbText(e.cbuf, doc); err != nil {
		e.cfail = true
	}
}

// appendJSONBStr appends the jsonb text of the string appendJSONStr encodes from s: `"` and `\`
// escaped, \b \f \n \r \t, other control characters as \u00xx, everything else raw, an invalid
// byte as U+FFFD. It reports false for a string jsonb refuses (one holding NUL).
func appendJSONBStr(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			if c == 0 {
				return b, false
			}
			b = appendASCIIEscape(append(b, s[start:i]...), c)
			i++
			start = i
			continue
		}
		ru, size := utf8.DecodeRuneInString(s[i:])
		if ru == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}
