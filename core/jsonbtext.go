package core

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"
)

// The text PostgreSQL prints for a jsonb value (`col::text`), computed without the database so that a
// record can be hashed before it is written and a verifier reading the table recomputes the same bytes.
//
// PostgreSQL 15's rules for a database encoded in UTF8 (as the server decodes \u escapes into the
// database encoding), each checked against the server by the tests:
//   - objects keep one member per key (the last one in the input), ordered by key length in bytes,
//     then bytewise, and print as {"a": 1, "bb": [1, 2]};
//   - strings print `"` and `\` escaped, \b \f \n \r \t, other control characters as \u00xx (lowercase
//     hex) and everything else raw; input escapes are decoded, \u0000 and lone surrogates refused;
//   - numbers are numeric: no exponent, the input's scale kept ("1.50", "12.340e1" → 123.40), bounded
//     by numeric's format (131072 digits before the point, 16383 after).

// Limits of PostgreSQL's numeric format, past which numeric_in reports "value overflows numeric format".
const (
	numericExpLimit    = 1<<30 - 1 // |exponent| ≥ INT_MAX/2 is refused before anything else
	numericMaxScale    = 0x3FFF    // NUMERIC_DSCALE_MAX: digits after the point
	numericMaxIntPower = 131071    // the first nonzero digit's power of ten: weight ≤ 32767 in base 10000
)

// jsonbMaxDepth bounds nesting, as encoding/json does; PostgreSQL's own bound depends on max_stack_depth
// and lies above it with the default 2MB.
const jsonbMaxDepth = 10000

var (
	errJSONBSyntax     = errors.New("invalid input syntax for type json")
	errJSONBNulEscape  = errors.New("unsupported Unicode escape sequence: \\u0000 cannot be converted to text")
	errJSONBSurrogate  = errors.New("invalid input syntax for type json: Unicode low surrogate must follow a high surrogate")
	errJSONBEncoding   = errors.New(`invalid byte sequence for encoding "UTF8"`)
	errJSONBNumeric    = errors.New("value overflows numeric format")
	errJSONBTooDeep    = errors.New("jsonb nesting deeper than 10000 levels")
	errJSONBUnexpected = errors.New("invalid input syntax for type json: the input string ended unexpectedly")
)

// jsonbKind tells what a tape entry holds.
type jsonbKind uint8

const (
	jsonbNull jsonbKind = iota
	jsonbTrue
	jsonbFalse
	jsonbNumber // start:end in the input
	jsonbRawStr // start:end in the input, no escapes: printed as is
	jsonbDecStr // start:end in jsonbParser.text, decoded: printed escaped
	jsonbArray  // start: element count, end: index of the entry after the array's last one
	jsonbObject // as jsonbArray, members stored key, value, key, value
)

type jsonbTok struct {
	kind       jsonbKind
	start, end int
}

// jsonbMember is one object member on the sort stack: the tape indexes of its key and value. It
// holds no pointer, so that the stack costs the garbage collector nothing (no write barriers while
// it is filled, nothing to clear before the parser is pooled).
type jsonbMember struct {
	key, val int
}

// jsonbParser holds the buffers of one jsonbText call; they are reused through jsonbParsers.
type jsonbParser struct {
	in      []byte
	pos     int
	tape    []jsonbTok
	text    []byte
	members []jsonbMember
}

var jsonbParsers = sync.Pool{New: func() any { return new(jsonbParser) }}

// jsonbText appends to dst the text PostgreSQL's jsonb output function prints for the JSON document doc
// (what `SELECT $1::jsonb::text` returns), or an error when PostgreSQL would refuse doc as jsonb.
// On error dst is returned unchanged.
func jsonbText(dst, doc []byte) ([]byte, error) {
	p := jsonbParsers.Get().(*jsonbParser)
	p.in, p.pos = doc, 0
	p.tape, p.text, p.members = p.tape[:0], p.text[:0], p.members[:0]
	out, err := p.run(dst)
	p.in = nil
	if cap(p.tape) <= 1<<14 && cap(p.text) <= 1<<16 && cap(p.members) <= 1<<12 {
		jsonbParsers.Put(p)
	}
	if err != nil {
		return dst, err
	}
	return out, nil
}

func (p *jsonbParser) run(dst []byte) ([]byte, error) {
	p.skipSpace()
	if err := p.value(0); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.fail(errJSONBSyntax)
	}
	out, _ := p.emit(dst, 0)
	return out, nil
}

func (p *jsonbParser) fail(err error) error {
	return fmt.Errorf("jsonb: %w (at byte %d)", err, p.pos)
}

func (p *jsonbParser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value reads one JSON value at p.pos onto the tape.
func (p *jsonbParser) value(depth int) error {
	if p.pos >= len(p.in) {
		return p.fail(errJSONBUnexpected)
	}
	switch c := p.in[p.pos]; {
	case c == '{' || c == '[':
		if depth >= jsonbMaxDepth {
			return p.fail(errJSONBTooDeep)
		}
		return p.container(c, depth+1)
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", jsonbTrue)
	case c == 'f':
		return p.literal("false", jsonbFalse)
	case c == 'n':
		return p.literal("null", jsonbNull)
	}
	return p.fail(errJSONBSyntax)
}

func (p *jsonbParser) literal(word string, kind jsonbKind) error {
	if !bytes.HasPrefix(p.in[p.pos:], []byte(word)) {
		return p.fail(errJSONBSyntax)
	}
	p.pos += len(word)
	p.tape = append(p.tape, jsonbTok{kind: kind})
	return nil
}

func (p *jsonbParser) container(open byte, depth int) error {
	at := len(p.tape)
	kind, closer := jsonbArray, byte(']')
	if open == '{' {
		kind, closer = jsonbObject, '}'
	}
	p.tape = append(p.tape, jsonbTok{kind: kind})
	p.pos++
	p.skipSpace()
	n := 0
	if p.pos < len(p.in) && p.in[p.pos] == closer {
		p.pos++
	} else {
		for {
			if kind == jsonbObject {
				if p.pos >= len(p.in) || p.in[p.pos] != '"' {
					return p.fail(errJSONBSyntax)
				}
				if err := p.str(); err != nil {
					return err
				}
				p.skipSpace()
				if p.pos >= len(p.in) || p.in[p.pos] != ':' {
					return p.fail(errJSONBSyntax)
				}
				p.pos++
				p.skipSpace()
			}
			if err := p.value(depth); err != nil {
				return err
			}
			n++
			p.skipSpace()
			if p.pos >= len(p.in) {
				return p.fail(errJSONBUnexpected)
			}
			c := p.in[p.pos]
			p.pos++
			if c == closer {
				break
			}
			if c != ',' {
				return p.fail(errJSONBSyntax)
			}
			p.skipSpace()
		}
	}
	p.tape[at].start, p.tape[at].end = n, len(p.tape)
	return nil
}

// str reads a string; one without escapes stays a span of the input, others are decoded into p.text.
func (p *jsonbParser) str() error {
	p.pos++ // opening quote
	start := p.pos
	in := p.in
	for i := start; i < len(in); {
		c := in[i]
		switch {
		case c == '"':
			p.tape = append(p.tape, jsonbTok{kind: jsonbRawStr, start: start, end: i})
			p.pos = i + 1
			return nil
		case c == '\\':
			p.pos = i
			return p.decodeStr(start)
		case c < 0x20:
			p.pos = i
			return p.fail(errJSONBSyntax)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size == 1 {
				p.pos = i
				return p.fail(errJSONBEncoding)
			}
			i += size
		}
	}
	p.pos = len(in)
	return p.fail(errJSONBUnexpected)
}

// decodeStr continues str at the first backslash (p.pos) of the string whose contents begin at start.
func (p *jsonbParser) decodeStr(start int) error {
	textStart := len(p.text)
	p.text = append(p.text, p.in[start:p.pos]...)
	in := p.in
	i := p.pos
	for i < len(in) {
		c := in[i]
		switch {
		case c == '"':
			p.tape = append(p.tape, jsonbTok{kind: jsonbDecStr, start: textStart, end: len(p.text)})
			p.pos = i + 1
			return nil
		case c == '\\':
			if i+1 >= len(in) {
				p.pos = len(in)
				return p.fail(errJSONBUnexpected)
			}
			i += 2
			switch in[i-1] {
			case '"', '\\', '/':
				p.text = append(p.text, in[i-1])
			case 'b':
				p.text = append(p.text, '\b')
			case 'f':
				p.text = append(p.text, '\f')
			case 'n':
				p.text = append(p.text, '\n')
			case 'r':
				p.text = append(p.text, '\r')
			case 't':
				p.text = append(p.text, '\t')
			case 'u':
				r, ok := hex4(in, i)
				if !ok {
					p.pos = i
					return p.fail(errJSONBSyntax)
				}
				i += 4
				switch {
				case r == 0:
					p.pos = i
					return p.fail(errJSONBNulEscape)
				case r >= 0xDC00 && r <= 0xDFFF:
					p.pos = i
					return p.fail(errJSONBSurrogate)
				case r >= 0xD800 && r <= 0xDBFF:
					var lo rune
					if i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
						lo, ok = hex4(in, i+2)
						if !ok {
							p.pos = i + 2
							return p.fail(errJSONBSyntax)
						}
					}
					if lo < 0xDC00 || lo > 0xDFFF {
						p.pos = i
						return p.fail(errJSONBSurrogate)
					}
					i += 6
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				}
				p.text = utf8.AppendRune(p.text, r)
			default:
				p.pos = i - 1
				return p.fail(errJSONBSyntax)
			}
		case c < 0x20:
			p.pos = i
			return p.fail(errJSONBSyntax)
		case c < utf8.RuneSelf:
			p.text = append(p.text, c)
			i++
		default:
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size == 1 {
				p.pos = i
				return p.fail(errJSONBEncoding)
			}
			p.text = append(p.text, in[i:i+size]...)
			i += size
		}
	}
	p.pos = len(in)
	return p.fail(errJSONBUnexpected)
}

// hex4 reads the four hex digits of a \u escape at in[i:].
func hex4(in []byte, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range in[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number checks the JSON number grammar and numeric's range; PostgreSQL converts every number, also
// those of members a later duplicate key replaces.
func (p *jsonbParser) number() error {
	in, i := p.in, p.pos
	start := i
	if in[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(in) && in[i] == '0' {
		i++
	} else if digits() == 0 {
		p.pos = i
		return p.fail(errJSONBSyntax)
	}
	if i < len(in) && in[i] == '.' {
		i++
		if digits() == 0 {
			p.pos = i
			return p.fail(errJSONBSyntax)
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if digits() == 0 {
			p.pos = i
			return p.fail(errJSONBSyntax)
		}
	}
	if _, err := parseNumeric(in[start:i]); err != nil {
		p.pos = start
		return p.fail(err)
	}
	p.pos = i
	p.tape = append(p.tape, jsonbTok{kind: jsonbNumber, start: start, end: i})
	return nil
}

// emit prints the value at tape index i and returns the index after it. The tape holds only values
// PostgreSQL accepts, so printing cannot fail.
func (p *jsonbParser) emit(dst []byte, i int) ([]byte, int) {
	t := p.tape[i]
	switch t.kind {
	case jsonbNull:
		return append(dst, "null"...), i + 1
	case jsonbTrue:
		return append(dst, "true"...), i + 1
	case jsonbFalse:
		return append(dst, "false"...), i + 1
	case jsonbNumber:
		n, _ := parseNumeric(p.in[t.start:t.end]) // checked by number
		return n.appendText(dst), i + 1
	case jsonbRawStr, jsonbDecStr:
		return p.appendStr(dst, t), i + 1
	case jsonbArray:
		dst = append(dst, '[')
		j := i + 1
		for k := 0; k < t.start; k++ {
			if k > 0 {
				dst = append(dst, ", "...)
			}
			dst, j = p.emit(dst, j)
		}
		return append(dst, ']'), t.end
	}
	return p.emitObject(dst, i)
}

func (p *jsonbParser) emitObject(dst []byte, i int) ([]byte, int) {
	t := p.tape[i]
	base := len(p.members)
	j := i + 1
	for k := 0; k < t.start; k++ {
		p.members = append(p.members, jsonbMember{key: j, val: j + 1})
		j = p.skip(j + 1)
	}
	ms := p.members[base:]
	// Stable, so that among equal keys the last one in the input is the last of its run and wins.
	slices.SortStableFunc(ms, func(a, b jsonbMember) int {
		x, y := p.strBytes(p.tape[a.key]), p.strBytes(p.tape[b.key])
		if len(x) != len(y) {
			return len(x) - len(y)
		}
		return bytes.Compare(x, y)
	})
	n := 0
	for k := range ms {
		if k+1 < len(ms) && bytes.Equal(p.strBytes(p.tape[ms[k].key]), p.strBytes(p.tape[ms[k+1].key])) {
			continue
		}
		ms[n] = ms[k]
		n++
	}
	p.members = p.members[:base+n]
	dst = append(dst, '{')
	for k := 0; k < n; k++ {
		if k > 0 {
			dst = append(dst, ", "...)
		}
		m := p.members[base+k] // re-read: nested objects may have grown p.members
		dst = p.appendStr(dst, p.tape[m.key])
		dst = append(dst, ": "...)
		dst, _ = p.emit(dst, m.val)
	}
	p.members = p.members[:base]
	return append(dst, '}'), t.end
}

// skip returns the tape index after the value at i.
func (p *jsonbParser) skip(i int) int {
	if k := p.tape[i].kind; k == jsonbArray || k == jsonbObject {
		return p.tape[i].end
	}
	return i + 1
}

func (p *jsonbParser) strBytes(t jsonbTok) []byte {
	if t.kind == jsonbDecStr {
		return p.text[t.start:t.end]
	}
	return p.in[t.start:t.end]
}

// appendStr prints a string as PostgreSQL's escape_json does.
func (p *jsonbParser) appendStr(dst []byte, t jsonbTok) []byte {
	dst = append(dst, '"')
	if t.kind == jsonbRawStr { // no escapes in the input, so nothing that needs one
		dst = append(dst, p.in[t.start:t.end]...)
		return append(dst, '"')
	}
	s := p.text[t.start:t.end]
	from := 0
	for k, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[from:k]...)
		from = k + 1
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
	}
	dst = append(dst, s[from:]...)
	return append(dst, '"')
}

// jsonbNumeric is a JSON number as numeric_in reads it: digits intPart+frac, the decimal point
// moved by the exponent to index point among them, first the index of the first nonzero digit
// (len(intPart)+len(frac) for zero), and scale the digits printed after the point.
type jsonbNumeric struct {
	neg                 bool
	intPart, frac       []byte
	point, first, scale int
}

// parseNumeric reads the JSON number s (already checked against the JSON grammar) and refuses it as
// numeric_in does when it is out of numeric's range.
func parseNumeric(s []byte) (jsonbNumeric, error) {
	var n jsonbNumeric
	i := 0
	if s[0] == '-' {
		n.neg = true
		i++
	}
	intStart := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n.intPart = s[intStart:i]
	if i < len(s) && s[i] == '.' {
		i++
		fracStart := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n.frac = s[fracStart:i]
	}
	exp := 0
	if i < len(s) {
		i++ // e or E
		expNeg := false
		if s[i] == '+' || s[i] == '-' {
			expNeg = s[i] == '-'
			i++
		}
		for ; i < len(s); i++ {
			if exp < numericExpLimit { // saturates, as strtol does, far past the limit
				exp = exp*10 + int(s[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if exp >= numericExpLimit || exp <= -numericExpLimit {
		return n, errJSONBNumeric
	}
	n.scale = max(len(n.frac)-exp, 0)
	if n.scale > numericMaxScale {
		return n, errJSONBNumeric
	}
	n.point = len(n.intPart) + exp
	nd := len(n.intPart) + len(n.frac)
	for n.first < nd && n.digit(n.first) == '0' {
		n.first++
	}
	if n.first < nd && n.point-n.first-1 > numericMaxIntPower {
		return n, errJSONBNumeric
	}
	return n, nil
}

// digit returns the k-th digit of intPart+frac, '0' outside them.
func (n *jsonbNumeric) digit(k int) byte {
	switch {
	case k < 0:
		return '0'
	case k < len(n.intPart):
		return n.intPart[k]
	case k < len(n.intPart)+len(n.frac):
		return n.frac[k-len(n.intPart)]
	}
	return '0'
}

// appendText appends what numeric_out prints: every digit, the exponent applied, scale digits after
// the point, no sign on zero.
func (n *jsonbNumeric) appendText(dst []byte) []byte {
	switch {
	case n.first == len(n.intPart)+len(n.frac): // zero
		dst = append(dst, '0')
	case n.point <= n.first:
		if n.neg {
			dst = append(dst, '-')
		}
		dst = append(dst, '0')
	default:
		if n.neg {
			dst = append(dst, '-')
		}
		for k := n.first; k < n.point; k++ {
			dst = append(dst, n.digit(k))
		}
	}
	if n.scale > 0 {
		dst = append(dst, '.')
		for k := n.point; k < n.point+n.scale; k++ {
			dst = append(dst, n.digit(k))
		}
	}
	return dst
}
