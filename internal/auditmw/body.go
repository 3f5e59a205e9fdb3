package auditmw

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/auditkit/auditkit/core"
)

// capturable reports whether a body of content type ct is read into the audit record: JSON, forms,
// multipart forms, XML, YAML, GraphQL and text (not event streams), or a body without a content
// type (the redactor decides what its bytes are). Streamed multipart (x-mixed-replace), octet
// streams, media and archives are not read; their record holds only the content type, the size
// and why (core.Body.NotCaptured).
func capturable(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(strings.ToLower(ct), ";")
		mt = strings.TrimSpace(mt)
	}
	switch {
	case mt == "text/event-stream":
		return false
	case strings.HasPrefix(mt, "text/"),
		mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/x-www-form-urlencoded",
		mt == "multipart/form-data", mt == "multipart/mixed",
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/yaml", mt == "application/x-yaml", strings.HasSuffix(mt, "+yaml"),
		mt == "application/graphql", mt == "application/x-ndjson":
		return true
	}
	return false
}

// CaptureRequest records the request body for the audit record. A body of known length whose
// client does not wait for "100 Continue" is read now, at most limit+1 bytes, and the handler gets
// a body that yields every byte, the read bytes first; a read error (a client gone, an outer
// http.MaxBytesReader) is handed to the handler after the bytes read before it.
//
// A body of unknown length (chunked, HTTP/2 without Content-Length) or one sent only after
// "100 Continue" is not read ahead of the handler: reading it first would make the server answer
// 100 Continue to a request the handler refuses unread, and would stall a full-duplex exchange in
// which the client sends more only after the handler's answer. Such a body is captured as the
// handler reads it (the returned TeeBody).
//
// A body with a Content-Encoding other than identity is not read: its bytes are compressed, so
// it is recorded like a binary body, with the encoding in the content type (see encodedBody).
func CaptureRequest(req *http.Request, limit int) (*core.Body, *TeeBody) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil, nil
	}
	ct := req.Header.Get("Content-Type")
	if enc := ContentEncoding(req.Header); enc != "" {
		return encodedBody(ct, enc, req.ContentLength), nil
	}
	if !capturable(ct) {
		return &core.Body{ContentType: ct, Size: req.ContentLength, NotCaptured: notCapturedType}, nil
	}
	orig := req.Body
	if req.ContentLength < 0 || expectsContinue(req) {
		t := &TeeBody{rc: orig, limit: limit, ct: ct, length: req.ContentLength}
		req.Body = t
		return nil, t
	}
	// One allocation of the right size; the extra byte detects a body longer than the limit.
	buf := make([]byte, min(req.ContentLength, int64(limit))+1)
	n, err := io.ReadFull(orig, buf)
	buf = buf[:n]
	if errors.Is(err, io.ErrUnexpectedEOF) && int64(n) == req.ContentLength {
		err = nil // the whole body; the spare byte stayed empty
	}
	// No byte although Content-Length announced some: the handler gets the body's own EOF again,
	// the record says that nothing was captured.
	short := err == io.EOF
	if err == io.EOF {
		err = nil
	}
	rest := io.Reader(orig)
	if err != nil {
		rest = errReader{err}
	}
	req.Body = &stitchedBody{Reader: io.MultiReader(bytes.NewReader(buf), rest), closer: orig}

	b := &core.Body{ContentType: ct, Data: buf, Size: int64(len(buf))}
	if len(buf) > limit {
		b.Data, b.Truncated, b.Size = buf[:limit], true, req.ContentLength
	} else if err != nil || short {
		b.Truncated, b.Size = true, req.ContentLength
		if len(buf) == 0 {
			b.Truncated, b.NotCaptured = false, notCapturedReadError
		}
	}
	return b, nil
}

func expectsContinue(req *http.Request) bool {
	for _, v := range req.Header["Expect"] {
		if strings.Contains(strings.ToLower(v), "100-continue") {
			return true
		}
	}
	return false
}

// ContentEncoding returns the Content-Encoding of h, or "" when it is absent or identity.
func ContentEncoding(h http.Header) string {
	var encs []string
	for _, v := range h["Content-Encoding"] {
		for _, e := range strings.Split(v, ",") {
			if e = strings.ToLower(strings.TrimSpace(e)); e != "" && e != "identity" {
				encs = append(encs, e)
			}
		}
	}
	return strings.Join(encs, ",")
}

// encodedBody is the record of a compressed (Content-Encoding) body: its size, content type and
// encoding, never its bytes.
func encodedBody(ct, enc string, size int64) *core.Body {
	return &core.Body{ContentType: ct, Encoding: enc, Size: size}
}

// Why a body was not captured (core.Body.NotCaptured).
const (
	notCapturedType      = "content type not captured"
	notCapturedUnread    = "not read by the handler"
	notCapturedReadError = "read failed before any byte"
	notCapturedStreamed  = "streamed"
	notCapturedHijacked  = "connection hijacked"
)

// TeeBody is a request body that keeps the first limit bytes the handler reads, for bodies that
// must not be read ahead of the handler.
type TeeBody struct {
	rc     io.ReadCloser
	limit  int
	ct     string
	length int64 // Content-Length, -1 when unknown

	mu   sync.Mutex // a handler may read in another goroutine (full duplex) and panic meanwhile
	buf  []byte
	read int64 // bytes the handler has read
	eof  bool
	err  error // a read error other than io.EOF
	done bool  // captured has run; later reads are not kept
}

func (t *TeeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.mu.Lock()
	if !t.done {
		if room := t.limit - len(t.buf); room > 0 && n > 0 {
			if t.buf == nil {
				t.buf = make([]byte, 0, min(t.limit, max(n, 512)))
			}
			t.buf = append(t.buf, p[:min(n, room)]...)
		}
		t.read += int64(n)
		switch {
		case err == io.EOF:
			t.eof = true
		case err != nil && t.err == nil:
			t.err = err
		}
	}
	t.mu.Unlock()
	return n, err
}

func (t *TeeBody) Close() error { return t.rc.Close() }

// captured returns what the handler read. The body is complete when the handler reached its end
// (EOF, or Content-Length bytes); otherwise partial is true, and the body is marked truncated when
// more is known to follow. A body the handler did not read at all is recorded as not captured,
// never as an empty one. Size is the body's size when known, else -1.
func (t *TeeBody) captured() (b *core.Body, partial bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	b = &core.Body{ContentType: t.ct, Data: t.buf, Size: t.length}
	short := t.eof && t.length >= 0 && t.read < t.length // ended before its Content-Length
	complete := t.err == nil && !short && (t.eof || t.length >= 0 && t.read >= t.length)
	if complete {
		b.Size = t.read
		b.Truncated = t.read > int64(t.limit)
		return b, false
	}
	if t.read == 0 {
		b.NotCaptured = notCapturedUnread
		if t.err != nil || short {
			b.NotCaptured = notCapturedReadError
		}
		return b, true
	}
	b.Truncated = t.err != nil || t.read > int64(t.limit) || t.length > t.read
	return b, true
}

type stitchedBody struct {
	io.Reader
	closer io.Closer
}

func (b *stitchedBody) Close() error { return b.closer.Close() }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// Capture keeps the first bytes of a response for the record, and notes whether the response was
// streamed (Flush, Server-Sent Events) or its connection hijacked (WebSocket). An integration's
// response writer calls Before ahead of passing bytes on, Keep with what was written, Flushed and
// Hijacked; it works on the writer's own headers.
type Capture struct {
	Limit     int         // 0: only Flush and Hijack are noted
	Header    http.Header // the response headers
	Streamed  bool
	Hijacked  bool
	decided   bool
	keep      bool
	buf       []byte
	truncated bool
	ct        string
	// outerEnc is the Content-Encoding already set when the middleware started: a compression
	// middleware registered before this one sets it and compresses what passes through here
	// later, so the bytes seen here are still plain. enc is a Content-Encoding set after that
	// (by the handler or a compression middleware inside this one): the bytes are compressed.
	outerEnc string
	enc      string
}

// NewCapture returns a capture of up to limit bytes of a response with headers h.
func NewCapture(limit int, h http.Header) Capture {
	return Capture{Limit: limit, Header: h, outerEnc: ContentEncoding(h)}
}

// Before is called before bytes are passed on: at the first write it looks at the headers once
// (an outer writer may set headers as it writes).
func (w *Capture) Before() {
	if w.Limit > 0 && !w.decided {
		w.decide()
	}
}

// decide looks at the response headers once, at the first write: what is kept depends on the
// content type and the encoding the handler chose.
func (w *Capture) decide() {
	w.decided = true
	h := w.Header
	w.ct = h.Get("Content-Type")
	if enc := ContentEncoding(h); enc != "" && enc != w.outerEnc {
		w.enc = enc
		return
	}
	w.keep = capturable(w.ct)
	if mt, _, _ := strings.Cut(w.ct, ";"); strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
		w.Streamed = true
	}
}

// Keep keeps what of p (or s, when p is nil) fits, for a body that is kept.
func (w *Capture) Keep(p []byte, s string) {
	if w.Limit <= 0 || !w.keep || w.Streamed {
		return
	}
	room := w.Limit - len(w.buf)
	n := len(p) + len(s)
	if n > room {
		w.truncated = true
		n = room
	}
	if n <= 0 {
		return
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, min(w.Limit, max(n, 512)))
	}
	if p != nil {
		w.buf = append(w.buf, p[:n]...)
	} else {
		w.buf = append(w.buf, s[:n]...)
	}
}

// Flushed marks the response as streamed: it is passed through and not kept.
func (w *Capture) Flushed() {
	w.Streamed = true
	w.buf = nil
}

// Captured returns the kept response body of size bytes.
func (w *Capture) Captured(size int64) *core.Body {
	if !w.decided {
		w.decide()
	}
	if w.enc != "" {
		return encodedBody(w.ct, w.enc, size)
	}
	if !w.keep {
		return w.NotCaptured(size, notCapturedType)
	}
	return &core.Body{ContentType: w.ct, Data: w.buf, Truncated: w.truncated || int64(len(w.buf)) < size, Size: size}
}

// NotCaptured returns the record of a response body whose bytes were not kept: its content type,
// size (-1 when unknown) and why.
func (w *Capture) NotCaptured(size int64, why string) *core.Body {
	if !w.decided && !w.Hijacked {
		w.decide()
	}
	return &core.Body{ContentType: w.ct, Size: size, NotCaptured: why}
}
