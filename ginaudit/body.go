package ginaudit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
)

// capturable reports whether a body of content type ct is read into the audit record: JSON, forms,
// XML, GraphQL and text (not event streams), or a body without a content type (the Writer stores
// it as text only if it is valid UTF-8). Uploads (multipart/*), octet streams, media and archives
// are not read; their record holds only the content type and the size.
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
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/graphql", mt == "application/x-ndjson":
		return true
	}
	return false
}

// captureRequest reads at most limit+1 bytes of the request body for the record and gives the
// handler a body that yields every byte, the read bytes first. A read error (a client gone, an
// outer http.MaxBytesReader) is handed to the handler after the bytes read before it.
func captureRequest(req *http.Request, limit int) *core.Body {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil
	}
	ct := req.Header.Get("Content-Type")
	if !capturable(ct) {
		return &core.Body{ContentType: ct, Size: req.ContentLength}
	}
	orig := req.Body
	var buf []byte
	var err error
	if req.ContentLength > 0 {
		// One allocation of the right size; the extra byte detects a body longer than the limit.
		buf = make([]byte, min(req.ContentLength, int64(limit))+1)
		var n int
		n, err = io.ReadFull(orig, buf)
		buf = buf[:n]
		if errors.Is(err, io.ErrUnexpectedEOF) && int64(n) == req.ContentLength {
			err = nil // the whole body; the spare byte stayed empty
		}
	} else { // length unknown (chunked): grow as bytes arrive
		var b bytes.Buffer
		_, err = b.ReadFrom(io.LimitReader(orig, int64(limit)+1))
		buf = b.Bytes()
	}
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
	} else if err != nil {
		b.Truncated, b.Size = true, req.ContentLength
	}
	return b
}

type stitchedBody struct {
	io.Reader
	closer io.Closer
}

func (b *stitchedBody) Close() error { return b.closer.Close() }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// bodyWriter wraps Gin's writer to keep the first bytes of the response. It overrides both Write
// and WriteString (Gin's text renderers use the latter), notes Flush (a streamed response is not
// kept) and Hijack (a WebSocket has no response to keep), and unwraps for
// http.NewResponseController. Embedding keeps Status, Size, Written, CloseNotify and Pusher.
type bodyWriter struct {
	gin.ResponseWriter
	limit     int // 0: only Flush and Hijack are noted
	decided   bool
	keep      bool
	buf       []byte
	truncated bool
	streamed  bool
	hijacked  bool
	ct        string
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if w.limit > 0 {
		w.capture(p[:n], "")
	}
	return n, err
}

func (w *bodyWriter) WriteString(s string) (int, error) {
	n, err := w.ResponseWriter.WriteString(s)
	if w.limit > 0 {
		w.capture(nil, s[:n])
	}
	return n, err
}

func (w *bodyWriter) capture(p []byte, s string) {
	if !w.decided {
		w.decided = true
		w.ct = w.Header().Get("Content-Type")
		w.keep = capturable(w.ct)
		if mt, _, _ := strings.Cut(w.ct, ";"); strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
			w.streamed = true
		}
	}
	if !w.keep || w.streamed {
		return
	}
	room := w.limit - len(w.buf)
	n := len(p) + len(s)
	if n > room {
		w.truncated = true
		n = room
	}
	if n <= 0 {
		return
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, min(w.limit, max(n, 512)))
	}
	if p != nil {
		w.buf = append(w.buf, p[:n]...)
	} else {
		w.buf = append(w.buf, s[:n]...)
	}
}

// Flush marks the response as streamed: it is passed through and not kept.
func (w *bodyWriter) Flush() {
	w.streamed = true
	w.buf = nil
	w.ResponseWriter.Flush()
}

// Hijack notes that the connection left HTTP (a WebSocket upgrade).
func (w *bodyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := w.ResponseWriter.Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, rw, err
}

// Unwrap returns the wrapped writer, for http.NewResponseController.
func (w *bodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// captured returns the kept response body of size bytes.
func (w *bodyWriter) captured(size int64) *core.Body {
	if !w.decided {
		w.ct = w.Header().Get("Content-Type")
		w.keep = capturable(w.ct)
	}
	if !w.keep {
		return &core.Body{ContentType: w.ct, Size: size}
	}
	return &core.Body{ContentType: w.ct, Data: w.buf, Truncated: w.truncated || int64(len(w.buf)) < size, Size: size}
}
