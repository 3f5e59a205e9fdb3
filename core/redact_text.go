package core

import (
	"regexp"
	"slices"
	"strings"
)

// The line and markup formats of free text that Text judges besides key=value pairs: .netrc,
// .pgpass, blocks indented under a sensitive key, name/value entries in JSON-like, YAML-like and
// XML-like text.

// lineFormats appends the spans of secrets in line-based text formats: .netrc passwords and
// accounts, the password field of .pgpass lines, and everything indented under a sensitive
// "key:" line that has no value of its own on that line (YAML lists, nested mappings and block
// scalars).
func (r *Redactor) lineFormats(s string, spans []redactSpan) []redactSpan {
	spans = redactNetrc(s, spans)
	if strings.IndexByte(s, ':') < 0 {
		return spans
	}
	spans = r.namedValues(s, spans)
	lines := 0
	for start := 0; start < len(s); lines++ {
		end := redactLineEnd(s, start)
		line := s[start:end]
		spans = redactPgpass(line, start, spans)
		if indent, ok := r.sensitiveBlockKey(line); ok {
			bs, be, next := redactIndentedBlock(s, end, indent, strings.HasSuffix(strings.TrimRight(line, " \t\r"), ":"))
			if be > bs {
				spans = append(spans, redactSpan{bs, be})
			}
			if next > end {
				start = next + 1
				continue
			}
		}
		start = end + 1
	}
	return spans
}

// redactNetrcWords are the .netrc tokens whose next token is a secret.
var redactNetrcWords = map[string]bool{"password": true, "passwd": true, "account": true}

// redactNetrc appends the spans of the tokens after "password" and "account" in .netrc text: text
// with a "machine" or "default" token.
func redactNetrc(s string, spans []redactSpan) []redactSpan {
	if !strings.Contains(s, "machine") && !strings.Contains(s, "default") {
		return spans
	}
	type tok struct{ start, end int }
	var toks []tok
	netrc := false
	for i := 0; i < len(s); {
		for i < len(s) && redactXMLSpace(s[i]) {
			i++
		}
		j := i
		for j < len(s) && !redactXMLSpace(s[j]) {
			j++
		}
		if j > i {
			toks = append(toks, tok{i, j})
			if w := s[i:j]; w == "machine" || w == "default" {
				netrc = true
			}
		}
		i = j
	}
	if !netrc {
		return spans
	}
	for k := 0; k+1 < len(toks); k++ {
		if redactNetrcWords[strings.ToLower(s[toks[k].start:toks[k].end])] {
			spans = append(spans, redactSpan{toks[k+1].start, toks[k+1].end})
			k++
		}
	}
	return spans
}

// redactPgpass appends the span of the password of a .pgpass line (host:port:database:user:password,
// the port a number or '*'), found at offset off.
func redactPgpass(line string, off int, spans []redactSpan) []redactSpan {
	line = strings.TrimRight(line, "\r")
	if line == "" || line[0] == '#' || strings.Count(line, ":") < 4 {
		return spans
	}
	var cuts []int // offsets of the first four unescaped ':'
	for i := 0; i < len(line) && len(cuts) < 4; i++ {
		switch line[i] {
		case '\\':
			i++
		case ':':
			cuts = append(cuts, i)
		case ' ', '\t':
			return spans // the first four fields hold no white space
		}
	}
	if len(cuts) < 4 {
		return spans
	}
	port := line[cuts[0]+1 : cuts[1]]
	if port != "*" {
		if port == "" {
			return spans
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return spans
			}
		}
	}
	if cuts[0] == 0 || cuts[3]+1 >= len(line) {
		return spans
	}
	return append(spans, redactSpan{off + cuts[3] + 1, off + len(line)})
}

// sensitiveBlockKey reports whether line is "key:" or "- key:" with a sensitive key, optionally
// followed by a block scalar indicator (|, >) or by a value, and returns the key's column.
func (r *Redactor) sensitiveBlockKey(line string) (int, bool) {
	line = strings.TrimRight(line, " \t\r")
	i := 0
	for i < len(line) && line[i] == ' ' {
		i++
	}
	if strings.HasPrefix(line[i:], "- ") {
		i += 2
		for i < len(line) && line[i] == ' ' {
			i++
		}
	}
	rest := line[i:]
	var key string
	if rest != "" && (rest[0] == '"' || rest[0] == '\'') {
		e := strings.IndexByte(rest[1:], rest[0])
		if e < 0 {
			return 0, false
		}
		key, rest = rest[1:e+1], rest[e+2:]
	} else {
		c := strings.IndexByte(rest, ':')
		if c <= 0 {
			return 0, false
		}
		key, rest = rest[:c], rest[c:]
	}
	if !strings.HasPrefix(rest, ":") || len(rest) > 1 && rest[1] != ' ' && rest[1] != '\t' {
		return 0, false
	}
	if strings.ContainsAny(key, " \t") && len(key) > 64 || !r.Sensitive(key) {
		return 0, false
	}
	return i, true
}

// redactIndentedBlock returns the span of the lines after the line ending at end that belong to
// a key at column indent: more indented lines, blank lines between them and, when the key line
// has no value (bare), list items at the key's own column. next is where scanning resumes.
func redactIndentedBlock(s string, end, indent int, bare bool) (bs, be, next int) {
	bs, be, next = -1, -1, end
	for start := end + 1; start <= len(s) && end < len(s); {
		e := strings.IndexByte(s[start:], '\n')
		if e < 0 {
			e = len(s)
		} else {
			e += start
		}
		line := strings.TrimRight(s[start:e], " \t\r")
		if line == "" {
			start = e + 1
			if e >= len(s) {
				break
			}
			continue
		}
		col := 0
		for col < len(line) && (line[col] == ' ' || line[col] == '\t') {
			col++
		}
		if col < indent || col == indent && !(bare && strings.HasPrefix(line[col:], "- ") || bare && line[col:] == "-") {
			break
		}
		if bs < 0 {
			bs = start + col
		}
		be = start + len(line)
		next = e
		if e >= len(s) {
			break
		}
		start = e + 1
	}
	if bs < 0 {
		return 0, 0, end
	}
	return bs, be, next
}

// redactNameMember reports whether k names the entry of a name/value structure (see
// redactNameMembers).
func redactNameMember(k string) bool {
	var buf [32]byte
	if len(k) > len(buf) {
		return false
	}
	_, ok := redactNameMembers[string(redactNorm(buf[:0], k))]
	return ok
}

// namesKey reports whether v, the value of a name member, names a sensitive key: a key-like
// string without white space, at most 256 bytes long, for which Sensitive is true.
func (r *Redactor) namesKey(v string) bool {
	return v != "" && len(v) <= 256 && !strings.ContainsAny(v, " \t\r\n") && r.Sensitive(v)
}

var (
	// redactInnerObject matches an object without nested objects in JSON-like text (or the rest
	// of the text after an unclosed one).
	redactInnerObject = regexp.MustCompile(`\{[^{}]*(?:\}|$)`)
	// redactQuotedMember matches a quoted member name and its separator; group 1 is the name.
	redactQuotedMember = regexp.MustCompile(`"([^"\\\n]{1,64})"\s*:\s*`)
	// redactYAMLMember matches a "key: value" line, optionally a list item; group 1 is the
	// indentation with the list marker, group 2 the key, group 3 the value.
	redactYAMLMember = regexp.MustCompile(`^([ \t]*(?:- +)?)([A-Za-z_][\w.-]{0,63}):(?:[ \t]+(.*?))?[ \t\r]*$`)
)

// namedValues appends the spans of the values of name/value structures in free text that name a
// sensitive key: {"name": "DB_PASSWORD", "value": "..."} in JSON-like text (also when the JSON
// does not parse), and the same as YAML-like lines ("- name: DB_PASSWORD" / "  value: ...").
func (r *Redactor) namedValues(s string, spans []redactSpan) []redactSpan {
	if strings.IndexByte(s, '{') >= 0 && redactHasQuotedNameMember(s) {
		for _, o := range redactInnerObject.FindAllStringIndex(s, -1) {
			obj := s[o[0]:o[1]]
			ms := redactQuotedMember.FindAllStringSubmatchIndex(obj, -1)
			named := false
			for _, m := range ms {
				if redactNameMember(obj[m[2]:m[3]]) && m[1] < len(obj) && obj[m[1]] == '"' {
					if e := strings.IndexByte(obj[m[1]+1:], '"'); e >= 0 && r.namesKey(obj[m[1]+1:m[1]+1+e]) {
						named = true
					}
				}
			}
			if !named {
				continue
			}
			for _, m := range ms {
				if redactValueMember(obj[m[2]:m[3]]) {
					if vs, ve := redactValueSpan(obj, m[1], ':', true); ve > vs {
						spans = append(spans, redactSpan{o[0] + vs, o[0] + ve})
					}
				}
			}
		}
	}
	if strings.Contains(s, ": ") && redactHasNameMemberLine(s) {
		spans = r.namedValueLines(s, spans)
	}
	return spans
}

// redactHasQuotedNameMember is the cheap filter before the JSON-like name/value detector: it
// reports whether s has a quoted name member followed by ':' ("name": ...).
func redactHasQuotedNameMember(s string) bool {
	for i := strings.IndexByte(s, '"'); i >= 0 && i+1 < len(s); {
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return false
		}
		j += i + 1
		k := j + 1
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		if k < len(s) && s[k] == ':' && j-i-1 <= 32 && redactNameMember(s[i+1:j]) {
			return true
		}
		i = j
	}
	return false
}

// redactHasNameMemberLine is the cheap filter before the YAML-like name/value detector: it
// reports whether a line of s starts (after indentation and a list marker) with a name member
// and ':'.
func redactHasNameMemberLine(s string) bool {
	for start := 0; start < len(s); {
		end := redactLineEnd(s, start)
		line := strings.TrimLeft(s[start:end], " \t")
		if strings.HasPrefix(line, "- ") {
			line = strings.TrimLeft(line[2:], " ")
		}
		if c := strings.IndexByte(line, ':'); c > 0 && c <= 32 && redactNameMember(line[:c]) {
			return true
		}
		start = end + 1
	}
	return false
}

// redactEntryLines bounds how many lines around a sensitive name line namedValueLines looks at
// for the value lines of the same entry.
const redactEntryLines = 64

// namedValueLines is namedValues for YAML-like lines: the members of one mapping share the key
// column; a list item ("- name: ...") starts a new mapping.
func (r *Redactor) namedValueLines(s string, spans []redactSpan) []redactSpan {
	type line struct {
		end      int
		col      int // a member's key column, another line's indentation
		member   bool
		item     bool // a member that starts a list item
		blank    bool
		key, val string
		valStart int
	}
	var ls []line
	for start := 0; start < len(s); {
		end := redactLineEnd(s, start)
		text := s[start:end]
		l := line{end: end}
		if sm := redactYAMLMember.FindStringSubmatchIndex(text); sm != nil {
			l.member, l.col, l.key = true, sm[3], text[sm[4]:sm[5]]
			l.item = strings.Contains(text[:sm[3]], "-")
			if sm[6] >= 0 {
				l.val, l.valStart = text[sm[6]:sm[7]], start+sm[6]
			}
		} else if strings.TrimSpace(text) == "" {
			l.blank = true
		} else {
			l.col = len(text) - len(strings.TrimLeft(text, " \t"))
		}
		ls = append(ls, l)
		start = end + 1
	}
	hide := func(o line) {
		if !o.member || !redactValueMember(o.key) {
			return
		}
		if o.val != "" {
			spans = append(spans, redactSpan{o.valStart, o.valStart + len(o.val)})
		}
		if bs, be, _ := redactIndentedBlock(s, o.end, o.col, o.val == ""); be > bs {
			spans = append(spans, redactSpan{bs, be})
		}
	}
	for i, m := range ls {
		if !m.member || !redactNameMember(m.key) || !r.namesKey(strings.Trim(m.val, `"'`)) {
			continue
		}
		// A name/value entry is a small mapping: looking further would make the scan quadratic.
		for j := i - 1; j >= 0 && j >= i-redactEntryLines && !m.item; j-- { // back to the start of the mapping
			o := ls[j]
			if o.blank || o.col > m.col {
				continue
			}
			if !o.member || o.col != m.col {
				break
			}
			hide(o)
			if o.item {
				break
			}
		}
		for j := i + 1; j < len(ls) && j <= i+redactEntryLines; j++ { // on to its end
			o := ls[j]
			if o.blank || o.col > m.col {
				continue
			}
			if !o.member || o.col != m.col || o.item {
				break
			}
			hide(o)
		}
	}
	return spans
}

var (
	// redactXMLStartTag matches a start tag with attributes; group 1 is the name, group 2 the
	// attributes.
	redactXMLStartTag = regexp.MustCompile(`<([A-Za-z_][-\w.:]*)(\s[^<>]*?)/?>`)
	// redactXMLAttr matches one attribute; group 1 is the name, groups 2 or 3 the value.
	redactXMLAttr = regexp.MustCompile(`([A-Za-z_][-\w.:]*)\s*=\s*(?:"([^"]*)"|'([^']*)')`)
	// redactXMLSimple matches an element holding text only; group 1 is the name, group 2 the text.
	redactXMLSimple = regexp.MustCompile(`<([A-Za-z_][-\w.:]*)(?:\s[^<>]*)?>([^<]*)</[^<>]*>`)
)

// redactXMLEntryReach bounds how far from a sensitive <name> element a value element is looked
// for in text that is not well-formed XML.
const redactXMLEntryReach = 512

// xmlEntries appends the spans of name/value entries in XML-like text that name a sensitive key:
// the content and value attribute of <entry key="db.password">...</entry> and <property
// name="password" value="..."/>, and the nearest value element (<value>, <data>, ...) before or
// after <name>DB_PASSWORD</name>, with no other name element between them.
func (r *Redactor) xmlEntries(s string, closes *redactCloseTags, spans []redactSpan) []redactSpan {
	for _, m := range redactXMLStartTag.FindAllStringSubmatchIndex(s, -1) {
		attrs := s[m[4]:m[5]]
		named := false
		for _, a := range redactXMLAttr.FindAllStringSubmatch(attrs, -1) {
			if redactXMLName(a[1]) && r.namesKey(a[2]+a[3]) {
				named = true
			}
		}
		if !named {
			continue
		}
		for _, a := range redactXMLAttr.FindAllStringSubmatchIndex(attrs, -1) {
			vs, ve := a[4], a[5]
			if vs < 0 {
				vs, ve = a[6], a[7]
			}
			if redactValueMember(attrs[a[2]:a[3]]) && ve > vs {
				spans = append(spans, redactSpan{m[4] + vs, m[4] + ve})
			}
		}
		if !strings.HasSuffix(s[m[0]:m[1]], "/>") {
			name := s[m[2]:m[3]]
			end := len(s)
			if c := closes.after(name, m[1]); c >= 0 {
				end = c
			} else if c := strings.IndexByte(s[m[1]:], '<'); c >= 0 {
				end = m[1] + c // an element without a closing tag (HTML's <input>)
			}
			if end > m[1] {
				spans = append(spans, redactSpan{m[1], end})
			}
		}
	}
	simple := redactXMLSimple.FindAllStringSubmatchIndex(s, -1)
	for i, m := range simple {
		if !redactXMLName(s[m[2]:m[3]]) || !r.namesKey(strings.TrimSpace(s[m[4]:m[5]])) {
			continue
		}
		for _, dir := range []int{-1, 1} {
			for j := i + dir; j >= 0 && j < len(simple); j += dir {
				o := simple[j]
				if o[0]-m[1] > redactXMLEntryReach || m[0]-o[1] > redactXMLEntryReach {
					break
				}
				on := s[o[2]:o[3]]
				if redactXMLName(on) {
					break
				}
				if redactValueMember(on) {
					if o[5] > o[4] {
						spans = append(spans, redactSpan{o[4], o[5]})
					}
					break
				}
			}
		}
	}
	return spans
}

// redactCloseTag matches a closing tag; group 1 is the name.
var redactCloseTag = regexp.MustCompile(`</([A-Za-z_][-\w.:]*)>`)

// redactCloseTags finds closing tags in a text. It indexes them all on first use, so that many
// unclosed elements cost one scan, not one scan each.
type redactCloseTags struct {
	s   string
	pos map[string][]int // name → starts of "</name>", ascending
}

// after returns the start of the first "</name>" at or after from, or -1.
func (c *redactCloseTags) after(name string, from int) int {
	if c.pos == nil {
		c.pos = map[string][]int{}
		for _, m := range redactCloseTag.FindAllStringSubmatchIndex(c.s, -1) {
			n := c.s[m[2]:m[3]]
			c.pos[n] = append(c.pos[n], m[0])
		}
	}
	ps := c.pos[name]
	i, _ := slices.BinarySearch(ps, from)
	if i == len(ps) {
		return -1
	}
	return ps[i]
}

// redactLineEnd returns the end of the line of s that starts at start: the index of its '\n', or
// len(s) for the last line.
func redactLineEnd(s string, start int) int {
	if i := strings.IndexByte(s[start:], '\n'); i >= 0 {
		return start + i
	}
	return len(s)
}
