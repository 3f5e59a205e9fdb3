package httpaudit

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"github.com/auditkit/auditkit/internal/auditmw"
)

// responseWriter is the writer the handler gets: it notes the status and the size of the
// response, keeps its first bytes when response bodies are captured (auditmw.Capture), notes
// Flush (a streamed response is not kept) and Hijack (a WebSocket has no response to keep), and
// unwraps for http.NewResponseController.
type responseWriter struct {
	http.ResponseWriter
	status int
	size   int
	wrote  bool
	noted  bool // the capture's findings go into the record (bodies captured, or an upgrade asked)
	cap    auditmw.Capture
}

func (w *responseWriter) WriteHeader(code int) {
	// 1xx responses other than 101 are informational: the final status follows.
	if !w.wrote && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	w.cap.Before()
	n, err := w.ResponseWriter.Write(p)
	w.size += n
	w.cap.Keep(p[:n], "")
	return n, err
}

// ReadFrom copies src into the response. When the body is not kept, the copy goes to the server's
// own writer, which sends files with sendfile; otherwise it goes through Write.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.cap.Limit > 0 {
		return io.Copy(writeOnly{w}, src)
	}
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.size += int(n)
	return n, err
}

// writeOnly hides every method of a writer but Write, so that io.Copy does not call ReadFrom
// again.
type writeOnly struct{ io.Writer }

// Flush sends what was written so far; the response counts as streamed and is not kept.
func (w *responseWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	w.cap.Flushed()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack takes over the connection (a WebSocket upgrade), when the server's writer allows it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.cap.Hijacked = true
	}
	return conn, rw, err
}

// Unwrap returns the wrapped writer, for http.NewResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
