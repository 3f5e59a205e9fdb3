package core

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The JSON documents of a row (before, after, diff, metadata) are redacted and encoded in one
// pass: the encoder walks a map once, judging each key and value as Redactor.Value does while it
// writes the JSON, instead of building a redacted copy of the map and handing it to encoding/json.
// The bytes are those json.Marshal gives for the redacted copy: keys sorted bytewise, HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as \ufffd, floats in the shortest form
// that round-trips. Anything the fast path does not handle exactly goes through the redacted copy
// and encoding/json: values of other types (structs, typed maps and slices, JSON held in bytes),
// and maps with a key that must be sanitised or that carries a secret.
//
// For a hash chain the encoder can also write each document's text in jsonb's form as it goes
// (canon.go); without it, that costs a predictable branch per value.

// redactEncoder holds the scratch space of one encoding; encoders are reused through encoders.
type redactEncoder struct {
	r     *Redactor
	buf   []byte
	pairs []encodePair // the members of the objects being written, a stack
	diffs []diffPair   // the members of the diff being written

	// An update's images share most of their values: the strings of the before image's top level
	// are remembered with what str made of them, and a string of the after image's top level
	// equal to the before image's under the same key is written as it was, without judging it
	// again (str is a function of the string and its depth).
	images int         // imageBefore or imageAfter while an image's top level is written
	memo   []imageMemo // the before image's strings, sorted by key
	next   int         // where the after image's look-up stands in memo

	// With canon set, every value written to buf is also written to cbuf in jsonb's text form
	// (see canon.go); cfail is set when a document's text could not be made exactly.
	canon    bool
	cfail    bool
	cbuf     []byte
	segs     []canonSeg // the members of the objects being written to cbuf, a stack
	cscratch []byte     // an object's members while they are reordered

	// The keys of the last objects written, with what was judged of them (see keyShape), for
	// the Redactor shapesOf is: the records of one table repeat the keys of their images.
	shapes    [4]keyShape
	shapeNext int
	shapesOf  *Redactor
	shapeGen  uint64
}

// keyShape is the keys of an object the encoder took the fast path for, sorted, with what it
// judged of them: each is clean, carries no secret at depth+1, and is Sensitive or not; named
// is whether one of them is the name member of a name/value pair (see namesSecretPairs). These
// are functions of the Redactor's rules, the key and the depth alone, so that an object with the
// same keys at the same depth is judged the same without judging its keys again.
//
// The records of one table also repeat many of their values (a status, a country, a plan): last
// holds, for each key, the string last written under it in an object of this shape and what str
// made of it at depth+1, which is a function of the string, the depth and the Redactor's rules
// alone. gen tells the objects that took the shape apart, so that an object whose shape was
// replaced while its members were written (by the objects inside it) stops using it.
type keyShape struct {
	depth     int
	keys      []string
	sensitive []bool
	named     bool
	last      []shapeValue
	gen       uint64
}

// shapeValue is a string written under a key of a keyShape, and what str made of it.
type shapeValue struct {
	in, out string
	set     bool
	misses  uint8 // the look-ups in a row that did not find the string (see judge)
}

// shapeValueMax bounds the strings a keyShape remembers, which its encoder keeps reachable.
const shapeValueMax = 1 << 10

// shapeMisses is how many look-ups in a row may miss before judge stops looking up a key's
// strings, for the next 256-shapeMisses strings of the key.
const shapeMisses = 8

// keyShapeMax bounds the keys of the objects whose shapes an encoder remembers.
const keyShapeMax = 32

const (
	imageBefore = 1 + iota
	imageAfter
)

// imageMemo is one string of a before image's top level: its key, the string and what str made
// of it.
type imageMemo struct {
	key, in, out string
}

// diffPair is one member of a diff being written.
type diffPair struct {
	key string
	c   Change
}

// encodePair is one member of an object being written; sensitive is Sensitive(key), set by
// members.
type encodePair struct {
	key       string
	val       any
	sensitive bool
}

var encoders = sync.Pool{New: func() any { return new(redactEncoder) }}

func getEncoder(r *Redactor, buf []byte) *redactEncoder {
	e := encoders.Get().(*redactEncoder)
	e.r, e.buf = r.rules(), buf
	return e
}

// release returns e to the pool and gives its buffer back to the caller.
func (e *redactEncoder) release() []byte {
	buf := e.buf
	clear(e.pairs[:cap(e.pairs)]) // the values must not stay reachable through the pool
	clear(e.diffs[:cap(e.diffs)])
	e.r, e.buf, e.pairs, e.diffs = nil, nil, e.pairs[:0], e.diffs[:0]
	e.canon, e.cfail, e.cbuf, e.segs = false, false, nil, e.segs[:0]
	e.forget()
	e.forgetShapes()
	encoders.Put(e)
	return buf
}

// appendRedactedMap appends the JSON encoding of m redacted by r to dst: the bytes
// json.Marshal(r.Map(m)) gives, without building the redacted copy. A nil map appends null.
func (r *Redactor) appendRedactedMap(dst []byte, m map[string]any) []byte {
	e := getEncoder(r, dst)
	if m == nil {
		e.raw("null")
	} else {
		e.mapAny(m, 0)
	}
	return e.release()
}

// appendRedactedDiff appends the JSON encoding of d redacted by r to dst: the bytes
// json.Marshal(r.Diff(d)) gives. A nil diff appends null.
func (r *Redactor) appendRedactedDiff(dst []byte, d map[string]Change) []byte {
	e := getEncoder(r, dst)
	if d == nil {
		e.raw("null")
	} else {
		e.diff(d)
	}
	return e.release()
}

// writeImages writes the JSON documents of an update's images, redacted, each capped at its end so that
// appending to one cannot reach the next; a nil image stays nil. With e.canon, cb and ca are their
// texts in jsonb's form (nil when not made, see docEnd).
func (e *redactEncoder) writeImages(before, after map[string]any) (b, a, cb, ca []byte) {
	if before != nil {
		start, cstart := len(e.buf), e.docStart()
		e.images = imageBefore
		e.mapAny(before, 0)
		b = e.buf[start:len(e.buf):len(e.buf)]
		cb = e.docEnd(cstart)
	}
	if after != nil {
		start, cstart := len(e.buf), e.docStart()
		if before != nil {
			e.images, e.next = imageAfter, 0
		} else {
			e.images = 0
		}
		e.mapAny(after, 0)
		a = e.buf[start:len(e.buf):len(e.buf)]
		ca = e.docEnd(cstart)
	}
	e.forget()
	return b, a, cb, ca
}

// forget drops what images remembered.
func (e *redactEncoder) forget() {
	clear(e.memo)
	e.images, e.memo, e.next = 0, e.memo[:0], 0
}

// imageString writes the string x found under key at the top level of an image (see writeImages);
// last is the key's value in the object's shape, nil when it has none (see judge).
func (e *redactEncoder) imageString(key, x string, last *shapeValue) {
	var out string
	if e.images == imageAfter {
		for e.next < len(e.memo) && e.memo[e.next].key < key {
			e.next++
		}
		if e.next < len(e.memo) && e.memo[e.next].key == key && e.memo[e.next].in == x {
			out = e.memo[e.next].out
			if e.canon {
				e.strCanon(out)
			} else {
				e.buf = appendJSONStr(e.buf, out)
			}
			return
		}
	}
	out = e.judge(x, 1, last)
	if e.images == imageBefore {
		e.memo = append(e.memo, imageMemo{key, x, out})
	}
	if e.canon {
		e.strCanon(out)
	} else {
		e.buf = appendJSONStr(e.buf, out)
	}
}

// judge returns what str makes of x at depth. last, when not nil, is the value that the
// object's shape remembers for x's key at this depth: when it holds x, its verdict is taken;
// otherwise it is set to x and the verdict str gives. A key whose strings stopped repeating (an
// email, a name) is judged without a look-up for a while, so that it costs next to nothing.
func (e *redactEncoder) judge(x string, depth int, last *shapeValue) string {
	if last == nil || last.misses >= shapeMisses {
		if last != nil {
			last.misses++ // wraps around to 0 after a while: then the look-ups begin again
		}
		out, _ := e.r.str(x, depth)
		return out
	}
	if last.set && x == last.in {
		last.misses = 0
		return last.out
	}
	out, _ := e.r.str(x, depth)
	last.misses++
	if len(x) <= shapeValueMax {
		last.in, last.out, last.set = x, out, true
	}
	return out
}

// marshal appends json.Marshal(v) of a value walk returned, which is always encodable.
func (e *redactEncoder) marshal(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Unreachable for walked values; store a marker rather than fail the record.
		b = []byte(`"[unencodable]"`)
	}
	e.buf = append(e.buf, b...)
	if e.canon {
		e.canonParse(b)
	}
}

// value writes walk(v, depth), encoded.
func (e *redactEncoder) value(v any, depth int) {
	switch x := v.(type) {
	case nil:
		e.raw("null")
	case string:
		s, _ := e.r.str(x, depth)
		if e.canon {
			e.strCanon(s)
		} else {
			e.buf = appendJSONStr(e.buf, s)
		}
	case bool:
		if x {
			e.raw("true")
		} else {
			e.raw("false")
		}
	case int8:
		e.int64(int64(x))
	case int16:
		e.int64(int64(x))
	case int32:
		e.int64(int64(x))
	case uint8:
		e.uint64(uint64(x))
	case uint16:
		e.uint64(uint64(x))
	case uint32:
		e.uint64(uint64(x))
	case uintptr:
		e.uint64(uint64(x))
	case int:
		e.int(int64(x), v)
	case int64:
		e.int(x, v)
	case uint:
		e.uint(uint64(x), v)
	case uint64:
		e.uint(x, v)
	case json.Number:
		if redactValidNumber(string(x)) {
			if redactIsCardNumber(string(x)) {
				e.str(Redacted)
			} else {
				at := len(e.buf)
				e.buf = append(e.buf, x...)
				if e.canon {
					e.canonNumber(at)
				}
			}
			return
		}
		s, _ := e.r.str(string(x), depth)
		e.str(s)
	case float64:
		e.float(x, 64)
	case float32:
		e.float(float64(x), 32)
	case time.Time:
		if _, kept := redactTime(x, v).(time.Time); kept {
			at := len(e.buf)
			e.buf = append(e.buf, '"')
			e.buf = x.AppendFormat(e.buf, time.RFC3339Nano)
			e.buf = append(e.buf, '"')
			if e.canon {
				e.canonCopy(at)
			}
			return
		}
		e.str(Sanitize(x.String()))
	case map[string]any:
		switch {
		case depth >= redactMaxDepth:
			e.str(redactTooDeep)
		case x == nil:
			e.raw("null")
		default:
			e.mapAny(x, depth)
		}
	case []any:
		switch {
		case depth >= redactMaxDepth:
			e.str(redactTooDeep)
		case x == nil:
			e.raw("null")
		default:
			e.buf = append(e.buf, '[')
			if e.canon {
				e.cbuf = append(e.cbuf, '[')
			}
			for i, el := range x {
				if i > 0 {
					e.buf = append(e.buf, ',')
					if e.canon {
						e.cbuf = append(e.cbuf, ", "...)
					}
				}
				e.value(el, depth+1)
			}
			e.buf = append(e.buf, ']')
			if e.canon {
				e.cbuf = append(e.cbuf, ']')
			}
		}
	default:
		e.marshal(e.r.walk(v, depth))
	}
}

// raw writes s, a JSON text that jsonb prints as it is (null, true, false).
func (e *redactEncoder) raw(s string) {
	e.buf = append(e.buf, s...)
	if e.canon {
		e.cbuf = append(e.cbuf, s...)
	}
}

// str writes the JSON string s.
func (e *redactEncoder) str(s string) {
	if e.canon {
		e.strCanon(s)
		return
	}
	e.buf = appendJSONStr(e.buf, s)
}

// strCanon is str when the jsonb text is written too.
func (e *redactEncoder) strCanon(s string) {
	at := len(e.buf)
	e.buf = appendJSONStr(e.buf, s)
	e.canonStr(at, s)
}

// int64 writes an integer.
func (e *redactEncoder) int64(x int64) {
	if e.canon {
		e.intCanon(x)
		return
	}
	e.buf = strconv.AppendInt(e.buf, x, 10)
}

// intCanon is int64 when the jsonb text is written too.
func (e *redactEncoder) intCanon(x int64) {
	at := len(e.buf)
	e.buf = strconv.AppendInt(e.buf, x, 10)
	e.canonCopy(at)
}

// uint64 writes an unsigned integer.
func (e *redactEncoder) uint64(x uint64) {
	if e.canon {
		e.uintCanon(x)
		return
	}
	e.buf = strconv.AppendUint(e.buf, x, 10)
}

// uintCanon is uint64 when the jsonb text is written too.
func (e *redactEncoder) uintCanon(x uint64) {
	at := len(e.buf)
	e.buf = strconv.AppendUint(e.buf, x, 10)
	e.canonCopy(at)
}

// int writes an int or int64 as walk keeps it: a card number becomes Redacted.
func (e *redactEncoder) int(x int64, v any) {
	if x >= 1e12 && redactIntCard(v) == Redacted {
		e.str(Redacted)
		return
	}
	if e.canon {
		e.intCanon(x)
		return
	}
	e.buf = strconv.AppendInt(e.buf, x, 10)
}

// uint writes a uint or uint64 as walk keeps it: a card number becomes Redacted.
func (e *redactEncoder) uint(x uint64, v any) {
	if x >= 1e12 && redactIntCard(v) == Redacted {
		e.str(Redacted)
		return
	}
	if e.canon {
		e.uintCanon(x)
		return
	}
	e.buf = strconv.AppendUint(e.buf, x, 10)
}

// float writes a float as encoding/json does (NaN and infinities spelt out as walk does): the
// shortest decimal that round-trips at the given size, in exponent form below 1e-6 and from 1e21.
func (e *redactEncoder) float(f float64, bits int) {
	switch {
	case math.IsNaN(f):
		e.raw(`"NaN"`)
		return
	case math.IsInf(f, 1):
		e.raw(`"+Inf"`)
		return
	case math.IsInf(f, -1):
		e.raw(`"-Inf"`)
		return
	}
	at := len(e.buf)
	e.buf = appendJSONFloat(e.buf, f, bits)
	if e.canon {
		e.canonNumber(at)
	}
}

// appendJSONFloat appends a finite float as encoding/json writes it.
func appendJSONFloat(b []byte, f float64, bits int) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 {
		if bits == 64 && (a < 1e-6 || a >= 1e21) || bits == 32 && (float32(a) < 1e-6 || float32(a) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// A two-digit negative exponent loses its leading zero: 1e-07 is written 1e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// members collects the members of m sorted by key, after the members of the objects being
// written, each with its Sensitive verdict. It reports false, collecting nothing, when a key
// must be sanitised or carries a secret: walkMap renames such keys, and the map then takes the
// slow path. named is false when no key is the name member of a name/value pair, so that
// namesSecretPairs is false whatever the values. When m has the keys of an object written before
// at the same depth, the verdicts are that object's (see keyShape). sh is the shape m took, nil
// when it has none.
func (e *redactEncoder) members(m map[string]any, depth int) (start int, sh *keyShape, named, ok bool) {
	start = len(e.pairs)
	if sh := e.shapeOf(m, depth); sh != nil {
		return start, sh, sh.named, true
	}
	for k, v := range m {
		if !redactCleanKey(k) || e.r.keySecret(k, false, depth+1) {
			clear(e.pairs[start:])
			e.pairs = e.pairs[:start]
			return start, nil, false, false
		}
		e.pairs = append(e.pairs, encodePair{key: k, val: v})
	}
	pairs := e.pairs[start:]
	sortPairs(pairs)
	if sh := e.keepShape(pairs, depth); sh != nil {
		for i := range pairs {
			pairs[i].sensitive = sh.sensitive[i]
		}
		return start, sh, sh.named, true
	}
	for i := range pairs {
		pairs[i].sensitive = e.r.Sensitive(pairs[i].key)
	}
	return start, nil, true, true
}

// shapeOf appends the members of m, sorted by key, when m has exactly the keys of a shape the
// encoder remembers at depth, and returns that shape; otherwise it appends nothing and returns
// nil. The keys of a shape are distinct: m has them all and no other when it has as many keys
// and each of them.
func (e *redactEncoder) shapeOf(m map[string]any, depth int) *keyShape {
	if e.shapesOf != e.r {
		e.forgetShapes()
		e.shapesOf = e.r
		return nil
	}
	n := len(m)
	if n < 2 || n > keyShapeMax {
		return nil
	}
	start := len(e.pairs)
	for i := range e.shapes {
		sh := &e.shapes[i]
		if len(sh.keys) != n || sh.depth != depth {
			continue
		}
		found := true
		for j, k := range sh.keys {
			v, ok := m[k]
			if !ok {
				found = false
				break
			}
			e.pairs = append(e.pairs, encodePair{k, v, sh.sensitive[j]})
		}
		if found {
			return sh
		}
		clear(e.pairs[start:])
		e.pairs = e.pairs[:start]
	}
	return nil
}

// keepShape remembers the keys of pairs, the sorted members of an object at depth that took the
// fast path, and judges them, in place of the oldest shape remembered; it returns the shape, or
// nil for an object with too few or too many keys to be remembered.
func (e *redactEncoder) keepShape(pairs []encodePair, depth int) *keyShape {
	if len(pairs) < 2 || len(pairs) > keyShapeMax {
		return nil
	}
	sh := &e.shapes[e.shapeNext]
	e.shapeNext = (e.shapeNext + 1) % len(e.shapes)
	e.shapeGen++
	clear(sh.last)
	sh.depth, sh.keys, sh.sensitive, sh.named = depth, sh.keys[:0], sh.sensitive[:0], false
	sh.last, sh.gen = sh.last[:0], e.shapeGen
	for _, p := range pairs {
		sh.keys = append(sh.keys, p.key)
		sh.sensitive = append(sh.sensitive, e.r.Sensitive(p.key))
		sh.named = sh.named || redactNamesSecretKey(p.key)
		sh.last = append(sh.last, shapeValue{})
	}
	return sh
}

// forgetShapes drops the shapes remembered.
func (e *redactEncoder) forgetShapes() {
	for i := range e.shapes {
		sh := &e.shapes[i]
		clear(sh.keys)
		clear(sh.last)
		sh.keys, sh.sensitive, sh.last = sh.keys[:0], sh.sensitive[:0], sh.last[:0]
		sh.gen = 0 // no object is using it any more (keepShape's generations start at 1)
	}
	e.shapeNext, e.shapesOf = 0, nil
}

// forgetValues drops the strings the shapes remember, keeping their keys.
func (e *redactEncoder) forgetValues() {
	for i := range e.shapes {
		clear(e.shapes[i].last)
	}
}

// sortPairs sorts pairs by key, bytewise. The objects of audit records are small: an insertion
// sort comparing keys with < is faster there than a sort calling a comparison function.
func sortPairs(pairs []encodePair) {
	if len(pairs) > 16 {
		slices.SortFunc(pairs, func(a, b encodePair) int { return strings.Compare(a.key, b.key) })
		return
	}
	for i := 1; i < len(pairs); i++ {
		for j := i; j > 0 && pairs[j].key < pairs[j-1].key; j-- {
			pairs[j], pairs[j-1] = pairs[j-1], pairs[j]
		}
	}
}

// mapAny writes walkMap(m, depth), encoded.
func (e *redactEncoder) mapAny(m map[string]any, depth int) {
	start, sh, named, ok := e.members(m, depth)
	if !ok {
		e.marshal(e.r.walkMap(m, depth))
		return
	}
	named = named && e.r.namesSecretPairs(e.pairs[start:])
	images := e.images
	e.images = 0 // only the top level of an image
	var gen uint64
	if sh != nil {
		gen = sh.gen
	}
	e.buf = append(e.buf, '{')
	segs := e.objectStart()
	for i := start; i < len(e.pairs); i++ {
		p := e.pairs[i]
		if i > start {
			e.buf = append(e.buf, ',')
		}
		at := len(e.buf)
		e.buf = appendJSONStr(e.buf, p.key)
		if e.canon {
			e.canonMember(segs, len(p.key))
			e.canonStr(at, p.key)
			e.cbuf = append(e.cbuf, ": "...)
		}
		e.buf = append(e.buf, ':')
		if p.sensitive || named && redactValueMember(p.key) {
			e.mask(p.val)
			continue
		}
		if x, ok := p.val.(string); ok {
			var last *shapeValue
			if sh != nil && sh.gen == gen { // the objects written inside this one may replace its shape
				last = &sh.last[i-start]
			}
			if images != 0 {
				e.images = images
				e.imageString(p.key, x, last)
				e.images = 0
			} else {
				e.str(e.judge(x, depth+1, last))
			}
			continue
		}
		e.value(p.val, depth+1)
	}
	e.buf = append(e.buf, '}')
	if e.canon {
		e.objectEnd(segs)
	}
	clear(e.pairs[start:])
	e.pairs = e.pairs[:start]
}

// mask writes redactMask(v).
func (e *redactEncoder) mask(v any) {
	if v == nil {
		e.raw("null")
		return
	}
	e.str(Redacted)
}

// diff writes Diff(d), encoded.
func (e *redactEncoder) diff(d map[string]Change) {
	e.diffs = e.diffs[:0]
	for k, c := range d {
		if !redactCleanKey(k) || e.r.keySecret(k, false, 1) {
			clear(e.diffs)
			e.marshal(e.r.Diff(d))
			return
		}
		e.diffs = append(e.diffs, diffPair{k, c})
	}
	slices.SortFunc(e.diffs, func(a, b diffPair) int { return strings.Compare(a.key, b.key) })
	e.buf = append(e.buf, '{')
	segs := e.objectStart()
	for i, p := range e.diffs {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		at := len(e.buf)
		e.buf = appendJSONStr(e.buf, p.key)
		var change int
		if e.canon {
			e.canonMember(segs, len(p.key))
			e.canonStr(at, p.key)
			e.cbuf = append(e.cbuf, ": "...)
			change = e.objectStart()
			e.canonMember(change, len("from"))
			e.cbuf = append(e.cbuf, `"from": `...)
		}
		e.buf = append(e.buf, `:{"from":`...)
		sensitive := e.r.Sensitive(p.key)
		if sensitive {
			e.mask(p.c.From)
		} else {
			e.value(p.c.From, 1)
		}
		e.buf = append(e.buf, `,"to":`...)
		if e.canon {
			e.canonMember(change, len("to"))
			e.cbuf = append(e.cbuf, `"to": `...)
		}
		if sensitive {
			e.mask(p.c.To)
		} else {
			e.value(p.c.To, 1)
		}
		e.buf = append(e.buf, '}')
		if e.canon {
			e.objectEnd(change)
		}
	}
	e.buf = append(e.buf, '}')
	if e.canon {
		e.objectEnd(segs)
	}
	clear(e.diffs)
	e.diffs = e.diffs[:0]
}

// redactCleanKey reports whether Sanitize leaves k as it is.
func redactCleanKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c == 0 || c >= utf8.RuneSelf {
			return Sanitize(k) == k
		}
	}
	return true
}

// jsonPlain marks the ASCII bytes encoding/json writes as they are (HTML characters escaped).
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const jsonHex = "0123456789abcdef"

// jsonPlain8 reports whether encoding/json writes each of the 8 bytes of s as it is: ASCII from
// 0x20, none of '"', '\\', '<', '>' and '&'. It tests all eight at once in a uint64: a byte is
// zero in x (x-0x01…)&^x&0x80… only where x has a zero byte, and the test of each byte equal to
// c is that of a zero byte in w^c….
func jsonPlain8(s string) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s), 8))
	q, bs, lt, gt, amp := w^('"'*lo), w^('\\'*lo), w^('<'*lo), w^('>'*lo), w^('&'*lo)
	bad := w | (w-0x20*lo)&^w | (q-lo)&^q | (bs-lo)&^bs | (lt-lo)&^lt | (gt-lo)&^gt | (amp-lo)&^amp
	return bad&hi == 0
}

// appendASCIIEscape appends the escape of the ASCII byte c that encoding/json and jsonb's text
// both write: \" and \\, \b \f \n \r \t, and \u00xx (lowercase hex) for any other byte.
func appendASCIIEscape(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', jsonHex[c>>4], jsonHex[c&0xf])
}

// appendJSONStr appends s as a JSON string, escaped as encoding/json escapes it: quotes,
// backslashes and control characters, the HTML characters <, > and &, U+2028 and U+2029; invalid
// UTF-8 becomes U+FFFD.
func appendJSONStr(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs a look: the usual text of a record.
		for i+8 <= len(s) && jsonPlain8(s[i:i+8]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			b = appendASCIIEscape(append(b, s[start:i]...), c)
			i++
			start = i
			continue
		}
		ru, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case ru == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case ru == '\u2028' || ru == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', jsonHex[ru&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
