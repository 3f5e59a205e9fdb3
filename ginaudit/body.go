package ginaudit

import (
	"bufio"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/internal/auditmw"
)

// bodyWriter wraps Gin's writer to keep the first bytes of the response (auditmw.Capture). It
// overrides both Write and WriteString (Gin's text renderers use the latter), notes Flush (a
// streamed response is not kept) and Hijack (a WebSocket has no response to keep), and unwraps
// for http.NewResponseController. Embedding keeps Status, Size, Written, CloseNotify and Pusher.
type bodyWriter struct {
	gin.ResponseWriter
	cap auditmw.Capture
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	w.cap.Before()
	n, err := w.ResponseWriter.Write(p)
	w.cap.Keep(p[:n], "")
	return n, err
}

func (w *bodyWriter) WriteString(s string) (int, error) {
	w.cap.Before()
	n, err := w.ResponseWriter.WriteString(s)
	w.cap.Keep(nil, s[:n])
	return n, err
}

// Flush marks the response as streamed: it is passed through and not kept.
func (w *bodyWriter) Flush() {
	w.cap.Flushed()
	w.ResponseWriter.Flush()
}

// Hijack notes that the connection left HTTP (a WebSocket upgrade).
func (w *bodyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := w.ResponseWriter.Hijack()
	if err == nil {
		w.cap.Hijacked = true
	}
	return conn, rw, err
}

// Unwrap returns the wrapped writer, for http.NewResponseController.
func (w *bodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
