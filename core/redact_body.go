package core

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"mime/multipart"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Why a body document holds no content ("omitted").
const (
	bodyOmittedBinary      = "binary"       // declared or sniffed as binary
	bodyOmittedEncoded     = "encoded"      // compressed (Content-Encoding)
	bodyOmittedTruncated   = "truncated"    // cut at the capture cap in a format that cannot be parsed in part
	bodyOmittedUnparsed    = "unparsed"     // declared structured, but its bytes do not parse
	bodyOmittedNotCaptured = "not_captured" // never read (Body.NotCaptured says why)
)

// redactTruncatedValue stands for a value cut by the capture cap.
const redactTruncatedValue = "[truncated]"

// redactBodyDoc is the document stored for a body that is not stored as its own JSON value.
type redactBodyDoc struct {
	ContentType     string  `json:"content_type"`
	ContentEncoding string  `json:"content_encoding,omitempty"`
	Size            int64   `json:"size"`
	Truncated       *bool   `json:"truncated,omitempty"`
	Format          string  `json:"format,omitempty"`
	Omitted         string  `json:"omitted,omitempty"`
	Reason          string  `json:"reason,omitempty"`
	Parts           []any   `json:"parts,omitempty"`
	Value           any     `json:"value,omitempty"`
	Text            *string `json:"text,omitempty"`
}

// body is Body for a non-nil, non-encoded body of r.rules().
func (r *Redactor) body(b *Body) []byte {
	ct := Sanitize(b.ContentType)
	mt := redactMediaType(b.ContentType)
	truncated := b.Truncated
	doc := redactBodyDoc{ContentType: ct, Size: b.Size}
	omit := func(why string) []byte {
		doc.Omitted = why
		if truncated {
			doc.Truncated = &truncated
		}
		return redactEncodeJSON(doc)
	}
	if b.NotCaptured != "" {
		if !redactTextLike(mt, nil, false) && !strings.HasPrefix(mt, "multipart/") {
			return omit(bodyOmittedBinary)
		}
		doc.Reason = Sanitize(b.NotCaptured)
		return omit(bodyOmittedNotCaptured)
	}
	data := b.Data
	if !redactTextLike(mt, data, truncated) && !strings.HasPrefix(mt, "multipart/") {
		return omit(bodyOmittedBinary)
	}
	if len(data) == 0 && truncated {
		return omit(bodyOmittedTruncated) // more was sent, none of it kept
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	declared := redactDeclaredFormat(mt)

	if len(trimmed) > 0 {
		// Multipart: "--<boundary>" and part headers, whatever the declared type says.
		if boundary, ok := redactSniffMultipart(trimmed); ok {
			parts, cut, ok := r.multipart(trimmed, boundary, truncated)
			if ok {
				doc.Format = "multipart"
				doc.Parts = parts
				if cut || truncated {
					t := true
					doc.Truncated = &t
				}
				return redactEncodeJSON(doc)
			}
		}
		switch trimmed[0] {
		case '{', '[':
			if !truncated && json.Valid(trimmed) {
				if v, err := redactDecodeJSON(trimmed); err == nil {
					return redactEncodeJSON(r.walk(v, 0))
				}
			}
			if truncated {
				if v, ok := redactPartialJSON(trimmed); ok {
					doc.Format, doc.Truncated, doc.Value = "json", &truncated, r.walk(v, 1)
					return redactEncodeJSON(doc)
				}
			}
		case '<':
			if redactSniffXML(trimmed) {
				if truncated {
					return omit(bodyOmittedTruncated)
				}
				if out, ok := r.xmlDoc(string(trimmed), true); ok {
					doc.Format, doc.Truncated, doc.Text = "xml", &truncated, &out
					return redactEncodeJSON(doc)
				}
				// Lenient: a bare '&' or an unknown entity, as hand-written XML often has.
				if out, ok := r.xmlDoc(string(trimmed), false); ok {
					doc.Format, doc.Truncated, doc.Text = "xml", &truncated, &out
					return redactEncodeJSON(doc)
				}
			}
		}
		if declared == "json" && !truncated && json.Valid(trimmed) {
			// A JSON scalar, declared as JSON.
			if v, err := redactDecodeJSON(trimmed); err == nil {
				return redactEncodeJSON(r.walk(v, 0))
			}
		}
		if declared == "form" || redactSniffForm(trimmed) {
			if v, ok := r.form(trimmed, truncated); ok {
				if !truncated {
					return redactEncodeJSON(v)
				}
				doc.Format, doc.Truncated, doc.Value = "form", &truncated, v
				return redactEncodeJSON(doc)
			}
		}
		if v, ok := r.yamlDoc(trimmed, truncated, declared == "yaml"); ok {
			doc.Format, doc.Truncated, doc.Value = "yaml", &truncated, v
			// A YAML parser can disagree with the lines (a stray anchor can move the next line
			// into a neutral value): what the text rules hide must not survive the parse.
			if out := redactEncodeJSON(doc); !r.keepsHidden(trimmed, out) {
				return out
			}
			doc.Format, doc.Value = "", nil
		}
		if declared != "" {
			if truncated {
				return omit(bodyOmittedTruncated)
			}
			return omit(bodyOmittedUnparsed)
		}
	}
	text := r.bodyText(string(b.Data), truncated)
	doc.Truncated, doc.Text = &truncated, &text
	return redactEncodeJSON(doc)
}

// bodyText redacts a text body. Text that holds URL-encoded pairs (a form broken by raw white
// space) is decoded first, so that an encoded "token%3Dx" or "Bearer+x" is judged like the plain
// one. In a truncated text the last token may have been cut, which hides its shape (a JWT, a card
// number, a key): it is replaced by "[truncated]".
func (r *Redactor) bodyText(s string, truncated bool) string {
	if redactLooksURLEncoded(s) {
		s = r.decodePairs(s)
	}
	out := r.Text(s)
	if truncated && !strings.HasSuffix(out, Redacted) {
		if i := strings.LastIndexAny(out, redactTokenEnds); i < len(out)-1 {
			out = out[:i+1] + redactTruncatedValue
		}
	}
	return out
}

// redactTokenEnds are the bytes that end a token in free text.
const redactTokenEnds = " \t\r\n\"'<>,;&=:()[]{}"

// redactLooksURLEncoded reports whether s holds URL-encoded k=v pairs: '&' and '=' with a
// percent escape or a '+'.
func redactLooksURLEncoded(s string) bool {
	if !strings.Contains(s, "=") || !strings.Contains(s, "&") {
		return false
	}
	if strings.Contains(s, "+") {
		return true
	}
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && redactIsHex(s[i+1]) && redactIsHex(s[i+2]) {
			return true
		}
	}
	return false
}

func redactIsHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f' }

// decodePairs decodes the '&'-separated k=v pairs of s, hiding the whole value of a sensitive
// key (which, decoded, may hold white space that would end it in free text).
func (r *Redactor) decodePairs(s string) string {
	parts := strings.Split(s, "&")
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		k = redactDecodeURLText(k)
		switch {
		case !ok:
			parts[i] = k
		case v != "" && r.Sensitive(k):
			parts[i] = k + "=" + Redacted
		default:
			parts[i] = k + "=" + redactDecodeURLText(v)
		}
	}
	return strings.Join(parts, "&")
}

// redactDecodeURLText decodes '+' and valid percent escapes, keeping anything else as it is.
func redactDecodeURLText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && redactIsHex(s[i+1]) && redactIsHex(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return Sanitize(b.String())
}

// redactDeclaredFormat returns the structured format a media type declares ("json", "form",
// "xml", "yaml", "multipart"), or "" for text and unknown types.
func redactDeclaredFormat(mt string) string {
	switch {
	case strings.HasSuffix(mt, "/json") || strings.HasSuffix(mt, "+json"):
		return "json"
	case mt == "application/x-www-form-urlencoded":
		return "form"
	case strings.HasSuffix(mt, "/xml") || strings.HasSuffix(mt, "+xml"):
		return "xml"
	case strings.HasSuffix(mt, "/yaml") || strings.HasSuffix(mt, "+yaml") || strings.HasSuffix(mt, "/x-yaml"):
		return "yaml"
	case strings.HasPrefix(mt, "multipart/"):
		return "multipart"
	}
	return ""
}

// redactPartialJSON parses the complete part of a JSON document cut short: every container
// opened is closed where the data ends, a key whose value was cut gets redactTruncatedValue, and
// a number that ends exactly where the data ends (it may have lost digits) is replaced by it too.
// It reports false when the data is not the beginning of a JSON object or array.
func redactPartialJSON(data []byte) (any, bool) {
	type frame struct {
		obj  map[string]any
		arr  []any
		key  string
		want bool // an object waiting for the value of key
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	var root any
	done := false
	add := func(v any) {
		if len(stack) == 0 {
			root, done = v, true
			return
		}
		f := stack[len(stack)-1]
		if f.obj != nil {
			f.obj[f.key] = v
			f.want = false
			return
		}
		f.arr = append(f.arr, v)
	}
	// closeTop ends the innermost container and adds it to its parent.
	closeTop := func() {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if f.obj != nil {
			if f.want {
				f.obj[f.key] = redactTruncatedValue
			}
			add(f.obj)
			return
		}
		if f.arr == nil {
			f.arr = []any{}
		}
		add(f.arr)
	}
	for !done {
		tok, err := dec.Token()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, false
			}
			break
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if len(stack) > 0 && stack[len(stack)-1].obj != nil && !stack[len(stack)-1].want {
					return nil, false
				}
				stack = append(stack, &frame{obj: map[string]any{}})
			case '[':
				stack = append(stack, &frame{})
			default:
				if len(stack) == 0 {
					return nil, false
				}
				closeTop()
			}
		default:
			if len(stack) == 0 {
				return nil, false // a scalar document is not sniffed as JSON
			}
			if f := stack[len(stack)-1]; f.obj != nil && !f.want {
				k, ok := t.(string)
				if !ok {
					return nil, false
				}
				f.key, f.want = k, true
				continue
			}
			if _, ok := t.(json.Number); ok && dec.InputOffset() >= int64(len(bytes.TrimRight(data, " \t\r\n"))) {
				add(redactTruncatedValue)
				continue
			}
			add(t)
		}
	}
	if root == nil && len(stack) == 0 {
		return nil, false
	}
	for len(stack) > 0 {
		closeTop()
	}
	return root, true
}

// redactSniffForm reports whether data reads as a URL-encoded form: "k=v" pairs joined by '&',
// without white space (a form encodes its spaces), starting with a key.
func redactSniffForm(data []byte) bool {
	data = bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
	if len(data) == 0 || data[0] == '=' || data[0] == '&' || bytes.IndexByte(data, '=') < 0 {
		return false
	}
	for _, c := range data {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(data)
}

// form parses a URL-encoded form into an object of its redacted fields. Raw white space in a key
// means the body is not a form (a form encodes its spaces; text such as .netrc sent as a form
// would otherwise become one key). When truncated, the last pair, which may be cut, is left out.
// A form whose only key is a JSON document with no value is that JSON document.
func (r *Redactor) form(data []byte, truncated bool) (any, bool) {
	s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	for _, p := range strings.Split(s, "&") {
		if k, _, _ := strings.Cut(p, "="); strings.ContainsAny(k, " \t\r\n") {
			return nil, false
		}
	}
	if truncated {
		i := strings.LastIndexByte(s, '&')
		if i < 0 {
			return nil, false
		}
		s = s[:i]
	}
	vals, err := url.ParseQuery(s)
	if err != nil {
		return nil, false
	}
	if len(vals) == 1 && !truncated {
		for k, vs := range vals {
			if len(vs) == 1 && vs[0] == "" && redactLooksJSON(k) && json.Valid([]byte(k)) {
				if v, err := redactDecodeJSON([]byte(k)); err == nil {
					return r.walk(v, 0), true
				}
			}
		}
	}
	return r.formObject(vals), true
}

// redactSniffXML reports whether data starts like an XML document (a declaration or a root
// element), not like HTML.
func redactSniffXML(data []byte) bool {
	if bytes.HasPrefix(data, []byte("<?xml")) {
		return true
	}
	if len(data) < 2 {
		return false
	}
	c := data[1]
	if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '!') {
		return false
	}
	head := strings.ToLower(string(data[:min(len(data), 16)]))
	return !strings.HasPrefix(head, "<!doctype html") && !strings.HasPrefix(head, "<html") &&
		!strings.HasPrefix(head, "<!--")
}

// redactXMLName reports whether an attribute or element name names what an element holds
// (<entry key="db.password">, <property name="password" value="...">, <param><name>): the name
// members of name/value structures, and id.
func redactXMLName(n string) bool { return redactNameMember(n) || strings.EqualFold(n, "id") }

// xmlDoc returns the redacted text of a well-formed XML document: the content of elements with
// sensitive names, of elements named by a sensitive name attribute and of value elements next to
// a sensitive <name>, and the values of sensitive attributes (and of the value attribute of a
// sensitively named element) become Redacted; other text and attribute values are redacted as
// strings by Value. It reports false when data is not well-formed XML with one root element.
func (r *Redactor) xmlDoc(s string, strict bool) (out string, ok bool) {
	defer func() {
		if recover() != nil {
			out, ok = "", false
		}
	}()
	type elem struct {
		name       string
		masked     bool // content hidden from its end of start tag to its end tag
		start      int  // end of the start tag
		pairSecret bool // a child <name> element holds a sensitive name
		values     []replSpan
	}
	dec := xml.NewDecoder(strings.NewReader(s))
	dec.Strict = strict
	var stack []*elem
	var spans []replSpan
	roots := 0
	prev := 0
	lastText := ""
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", false
		}
		end := int(dec.InputOffset())
		if end < prev || end > len(s) {
			return "", false
		}
		raw := s[prev:end]
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				roots++
				if roots > 1 {
					return "", false
				}
			}
			parentMasked := len(stack) > 0 && stack[len(stack)-1].masked
			e := &elem{name: t.Name.Local, start: end, masked: parentMasked}
			if !parentMasked {
				named := false
				for _, a := range t.Attr {
					if redactXMLName(a.Name.Local) && r.Sensitive(a.Value) {
						named = true
					}
				}
				if named || r.Sensitive(t.Name.Local) {
					e.masked = true
				}
				spans = r.xmlAttrs(raw, prev, t, named, spans)
			}
			stack = append(stack, e)
			if strings.HasSuffix(raw, "/>") {
				// RawToken reports a self-closing element as a start and an end.
				e.start = end
			}
			lastText = ""
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].name != t.Name.Local {
				return "", false
			}
			e := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			contentEnd := prev
			if e.masked && (len(stack) == 0 || !stack[len(stack)-1].masked) && contentEnd > e.start &&
				strings.TrimSpace(s[e.start:contentEnd]) != "" {
				spans = append(spans, replSpan{e.start, contentEnd, Redacted})
			}
			if len(stack) > 0 && !e.masked {
				p := stack[len(stack)-1]
				switch {
				case redactXMLName(e.name) && r.namesKey(strings.TrimSpace(lastText)):
					p.pairSecret = true
				case redactValueMember(e.name) && contentEnd > e.start:
					p.values = append(p.values, replSpan{e.start, contentEnd, Redacted})
				}
				if p.pairSecret && !p.masked {
					spans = append(spans, p.values...)
					p.values = nil
				}
			}
			lastText = ""
		case xml.CharData:
			if len(stack) == 0 {
				if strings.TrimSpace(string(t)) != "" {
					return "", false
				}
				break
			}
			lastText = string(t)
			if stack[len(stack)-1].masked {
				break
			}
			if v, changed := r.str(string(t), 1); changed && v != string(t) {
				spans = append(spans, replSpan{prev, end, redactXMLEscape(v)})
			}
		case xml.Directive, xml.ProcInst, xml.Comment:
			// Markup that is not element content (a comment, a DOCTYPE with a URL) is judged as text.
			if len(stack) == 0 || !stack[len(stack)-1].masked {
				if v := r.text(raw); v != raw {
					spans = append(spans, replSpan{prev, end, v})
				}
			}
		}
		prev = end
	}
	if roots != 1 || len(stack) != 0 {
		return "", false
	}
	return redactApplySpans(s, spans), true
}

// xmlAttrs appends the spans of the attribute values to hide in the raw start tag found at
// offset off: sensitive attributes, the value attribute of a sensitively named element (named),
// and values that Value changes.
func (r *Redactor) xmlAttrs(raw string, off int, t xml.StartElement, named bool, spans []replSpan) []replSpan {
	if len(t.Attr) == 0 {
		return spans
	}
	// Walk the raw tag: <name attr="v" attr='v' ...>
	i := 1
	for i < len(raw) && !redactXMLSpace(raw[i]) && raw[i] != '>' && raw[i] != '/' {
		i++
	}
	for ai := 0; ai < len(t.Attr); ai++ {
		for i < len(raw) && redactXMLSpace(raw[i]) {
			i++
		}
		ns := i
		for i < len(raw) && raw[i] != '=' && !redactXMLSpace(raw[i]) {
			i++
		}
		name := raw[ns:i]
		for i < len(raw) && (redactXMLSpace(raw[i]) || raw[i] == '=') {
			i++
		}
		if i >= len(raw) || (raw[i] != '"' && raw[i] != '\'') {
			return spans
		}
		q := raw[i]
		vs := i + 1
		ve := strings.IndexByte(raw[vs:], q)
		if ve < 0 {
			return spans
		}
		ve += vs
		i = ve + 1
		a := t.Attr[ai]
		local := name
		if c := strings.LastIndexByte(local, ':'); c >= 0 {
			local = local[c+1:]
		}
		switch {
		case r.Sensitive(local) || named && redactValueMember(local):
			if ve > vs {
				spans = append(spans, replSpan{off + vs, off + ve, Redacted})
			}
		case redactXMLName(local):
			// The name itself; judged for its shape like any value below.
			fallthrough
		default:
			if v, changed := r.str(a.Value, 1); changed && v != a.Value {
				spans = append(spans, replSpan{off + vs, off + ve, redactXMLEscape(v)})
			}
		}
	}
	return spans
}

func redactXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// redactXMLEscape escapes text for XML character data and attribute values.
func redactXMLEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// replSpan is a part of a text to replace by with.
type replSpan struct {
	start, end int
	with       string
}

// redactApplySpans replaces the spans in s; overlapping spans merge into the first one's
// replacement (Redacted when they differ).
func redactApplySpans(s string, spans []replSpan) string {
	if len(spans) == 0 {
		return s
	}
	sortSpans(spans)
	var b strings.Builder
	last := 0
	for i := 0; i < len(spans); {
		start, end, with := spans[i].start, spans[i].end, spans[i].with
		for i++; i < len(spans) && spans[i].start < end; i++ {
			end = max(end, spans[i].end)
			with = Redacted
		}
		if start < last {
			start = last
		}
		b.WriteString(s[last:start])
		b.WriteString(with)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

func sortSpans(spans []replSpan) {
	slices.SortStableFunc(spans, func(a, b replSpan) int { return a.start - b.start })
}

// redactSniffMultipart reports whether data starts like a multipart body: a line "--<boundary>"
// followed by part headers that include Content-Disposition or Content-Type. It returns the
// boundary, which the body itself names, whatever the declared content type says.
func redactSniffMultipart(data []byte) (string, bool) {
	if !bytes.HasPrefix(data, []byte("--")) {
		return "", false
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return "", false
	}
	boundary := strings.TrimRight(string(data[2:nl]), " \t\r")
	if boundary == "" || len(boundary) > 200 || strings.ContainsAny(boundary, "\r\n") {
		return "", false
	}
	hdr := strings.ToLower(string(data[nl+1 : min(len(data), nl+1+1024)]))
	hdr, _, _ = strings.Cut(hdr, "\n\r\n")
	return boundary, strings.HasPrefix(hdr, "content-disposition:") || strings.Contains(hdr, "\ncontent-disposition:") ||
		strings.HasPrefix(hdr, "content-type:")
}

// redactMultipartDepth bounds the nesting of multipart bodies inside multipart bodies.
const redactMultipartDepth = 4

// multipart returns the parts of a multipart body: form fields with their redacted values, files
// (a filename or a binary content type) by size only. A part cut by the end of the data is listed
// with "truncated" and no value; cut reports that. It reports false when the data does not parse.
func (r *Redactor) multipart(data []byte, boundary string, truncated bool) (parts []any, cut bool, ok bool) {
	return r.multipartDepth(data, boundary, truncated, 0)
}

func (r *Redactor) multipartDepth(data []byte, boundary string, truncated bool, depth int) (parts []any, cut bool, ok bool) {
	defer func() {
		if recover() != nil {
			parts, cut, ok = nil, false, false
		}
	}()
	mr := multipart.NewReader(bytes.NewReader(data), boundary)
	parts = []any{}
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return parts, false, true
		}
		if err != nil {
			if truncated {
				return parts, true, true
			}
			return nil, false, false
		}
		content, rerr := io.ReadAll(p)
		part := map[string]any{"name": Sanitize(p.FormName())}
		if fn := p.FileName(); fn != "" {
			part["filename"] = Sanitize(fn)
		}
		pct := p.Header.Get("Content-Type")
		if pct != "" {
			part["content_type"] = Sanitize(pct)
		}
		part["size"] = len(content)
		if rerr != nil {
			if !truncated {
				return nil, false, false
			}
			part["truncated"] = true
			parts = append(parts, r.walk(part, 2))
			return parts, true, true
		}
		if cte := p.Header.Get("Content-Transfer-Encoding"); cte != "" && !strings.EqualFold(cte, "8bit") &&
			!strings.EqualFold(cte, "7bit") && !strings.EqualFold(cte, "binary") {
			part["omitted"] = bodyOmittedEncoded
		} else if _, isFile := part["filename"]; isFile {
			part["omitted"] = "file"
		} else if r.Sensitive(p.FormName()) {
			part["value"] = Redacted
		} else {
			part["value"] = r.partValue(content, pct, depth)
		}
		parts = append(parts, r.walk(part, 2))
	}
}

// partValue redacts the value of a multipart form field: as a body of its own when it declares a
// content type, else as a string.
func (r *Redactor) partValue(content []byte, ct string, depth int) any {
	mt := redactMediaType(ct)
	if ct != "" && !redactTextLike(mt, content, false) && !strings.HasPrefix(mt, "multipart/") {
		return map[string]any{"omitted": bodyOmittedBinary}
	}
	if !utf8.Valid(content) {
		return map[string]any{"omitted": bodyOmittedBinary}
	}
	if ct != "" || bytes.HasPrefix(bytes.TrimSpace(content), []byte("--")) {
		if depth+1 >= redactMultipartDepth {
			return redactTooDeep
		}
		if b, ok := redactSniffMultipart(bytes.TrimLeft(content, " \t\r\n")); ok {
			if ps, _, ok := r.multipartDepth(bytes.TrimLeft(content, " \t\r\n"), b, false, depth+1); ok {
				return map[string]any{"parts": ps}
			}
			return map[string]any{"omitted": bodyOmittedUnparsed}
		}
		var v any
		if err := json.Unmarshal(r.body(&Body{ContentType: ct, Data: content, Size: int64(len(content))}), &v); err == nil {
			return v
		}
		return map[string]any{"omitted": bodyOmittedUnparsed}
	}
	if v, ok := r.yamlDoc(content, false, false); ok && strings.Contains(string(content), "\n") {
		return v
	}
	v, _ := r.str(string(content), 2)
	return v
}

// yamlDoc parses a YAML document (several documents become an array) whose top level is a
// mapping or a sequence, and returns it redacted. When truncated, only the complete lines are
// parsed. With declared, a scalar document is accepted too. Aliases are not expanded: an alias
// becomes the string "*<name>", so that a small body cannot expand into a huge one.
func (r *Redactor) yamlDoc(data []byte, truncated, declared bool) (v any, ok bool) {
	if truncated {
		i := bytes.LastIndexByte(data, '\n')
		if i < 0 {
			return nil, false
		}
		data = data[:i+1]
	}
	if !declared && !bytes.Contains(data, []byte(": ")) && !bytes.Contains(data, []byte(":\n")) &&
		!bytes.HasPrefix(data, []byte("- ")) && !bytes.HasPrefix(data, []byte("---")) {
		return nil, false
	}
	defer func() {
		if recover() != nil {
			v, ok = nil, false
		}
	}()
	f, err := parser.ParseBytes(data, 0)
	if err != nil || f == nil {
		return nil, false
	}
	var docs []any
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		body := d.Body
		if !declared && !redactYAMLCollection(body) {
			return nil, false
		}
		docs = append(docs, redactYAMLValue(body, 0))
	}
	switch len(docs) {
	case 0:
		return nil, false
	case 1:
		return r.walk(docs[0], 1), true
	}
	return r.walk(docs, 1), true
}

// redactYAMLCollection reports whether n is a mapping or a sequence (under anchors and tags).
func redactYAMLCollection(n ast.Node) bool {
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
			return true
		default:
			return false
		}
	}
}

// redactYAMLValue converts a YAML node to a JSON-like value: mappings to map[string]any,
// sequences to []any, scalars to strings, numbers and bools.
func redactYAMLValue(n ast.Node, depth int) any {
	if depth > redactMaxDepth {
		return redactTooDeep
	}
	switch x := n.(type) {
	case nil:
		return nil
	case *ast.DocumentNode:
		return redactYAMLValue(x.Body, depth)
	case *ast.AnchorNode:
		return redactYAMLValue(x.Value, depth)
	case *ast.TagNode:
		return redactYAMLValue(x.Value, depth)
	case *ast.AliasNode:
		if x.Value != nil {
			return "*" + x.Value.String()
		}
		return "*"
	case *ast.MappingNode:
		m := make(map[string]any, len(x.Values))
		for _, mv := range x.Values {
			redactYAMLPair(m, mv, depth)
		}
		return m
	case *ast.MappingValueNode:
		m := map[string]any{}
		redactYAMLPair(m, x, depth)
		return m
	case *ast.SequenceNode:
		out := make([]any, 0, len(x.Values))
		for _, e := range x.Values {
			out = append(out, redactYAMLValue(e, depth+1))
		}
		return out
	case *ast.LiteralNode:
		if x.Value != nil {
			return x.Value.Value
		}
		return ""
	case *ast.StringNode:
		return x.Value
	case *ast.NullNode:
		return nil
	case *ast.BoolNode:
		return x.Value
	case *ast.IntegerNode, *ast.FloatNode:
		if s := x.String(); redactValidNumber(s) {
			return json.Number(s)
		}
		return x.String()
	case ast.ScalarNode:
		return x.String()
	}
	return n.String()
}

// redactYAMLPair adds one key: value pair to m; a non-string key becomes its YAML text.
func redactYAMLPair(m map[string]any, mv *ast.MappingValueNode, depth int) {
	if mv == nil {
		return
	}
	var k string
	switch key := mv.Key.(type) {
	case nil:
	case *ast.StringNode:
		k = key.Value
	case *ast.MappingKeyNode:
		if key.Value != nil {
			k = key.Value.String()
		}
	default:
		k = key.String()
	}
	m[k] = redactYAMLValue(mv.Value, depth+1)
}

// redactHiddenMin is the length of the shortest hidden text keepsHidden looks for: shorter
// pieces ("1", "on") occur anywhere.
const redactHiddenMin = 4

// keepsHidden reports whether out, a document made from data, holds a piece of data that Text
// would hide.
func (r *Redactor) keepsHidden(data, out []byte) bool {
	s := Sanitize(string(data))
	for _, sp := range r.textSpans(s) {
		piece := strings.TrimSpace(s[sp.start:sp.end])
		for _, line := range strings.Split(piece, "\n") {
			line = strings.Trim(strings.TrimSpace(line), `"'`)
			if len(line) < redactHiddenMin || line == Redacted {
				continue
			}
			if bytes.Contains(out, []byte(line)) || bytes.Contains(out, redactEncodeJSON(line)[1:len(redactEncodeJSON(line))-1]) {
				return true
			}
		}
	}
	return false
}
