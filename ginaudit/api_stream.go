package ginaudit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
)

// WebSocket close codes of the stream, besides the standard ones.
const (
	// StreamCloseLagged closes a stream whose client fell too far behind; catch up with GET /logs.
	StreamCloseLagged websocket.StatusCode = 4000
	// StreamCloseTokenExpired closes a stream when the token it was opened with expires.
	StreamCloseTokenExpired websocket.StatusCode = 4001
	// StreamCloseTenantSuspended closes a tenant user's stream when the tenant is suspended.
	StreamCloseTenantSuspended websocket.StatusCode = 4002
)

// stream serves GET /logs/stream: Server-Sent Events, or a WebSocket when the request asks for
// an upgrade. Each new record that matches the filters is sent once, as the JSON of GET /logs.
func (a *apiServer) stream(c *gin.Context) {
	p := apiPrincipalOf(c)
	v, ok := a.params(c, store.FilterParams, apiTenantParam, apiStreamParams)
	if !ok {
		return
	}
	enc, ok := a.streamEncoder(c, v)
	if !ok {
		return
	}
	delete(v, store.ParamFormat)
	sc, ok := a.scope(c, p, v)
	if !ok {
		return
	}
	f, err := store.ParseFilter(v)
	if err != nil {
		a.fail(c, err)
		return
	}
	ws := apiWantsWebSocket(c.Request)
	if !ws && !apiAcceptsEventStream(c.Request) {
		apiFail(c, http.StatusNotAcceptable, "not_acceptable", "the stream is text/event-stream (Accept: text/event-stream) or a WebSocket (Upgrade: websocket)")
		return
	}
	// The origin is checked here, as websocket.Accept would, so that a refusal is a JSON error
	// like every other (Accept answers in plain text) and costs no stream slot.
	if ws {
		if err := apiCheckOrigin(c.Request, a.opts.WebSocketOrigins); err != nil {
			apiFail(c, http.StatusForbidden, "origin_forbidden", err.Error())
			return
		}
	}
	key := p.limitKey()
	if !a.streams.acquire(key, a.opts.MaxStreams) {
		c.Header("Retry-After", "10")
		apiFail(c, http.StatusTooManyRequests, "too_many_streams", "this tenant has the most live streams open at once already; close one first")
		return
	}
	defer a.streams.release(key)

	ctx := c.Request.Context()
	// A suspension shuts a tenant's users out of its log, open streams included (platform
	// administrators keep access); the store notices it, made by any process, within a second.
	// The live source is the Store (PostgreSQL notifications) unless APIOptions.Live names
	// another, such as a message queue the records pass through.
	var src store.LiveSource = a.st
	if a.opts.Live != nil {
		src = a.opts.Live
	}
	sub, err := src.SubscribeLive(ctx, sc, f, store.SubscribeOptions{EndOnSuspend: !p.admin})
	if err != nil {
		a.fail(c, err)
		return
	}
	defer sub.Close()
	transport := "sse"
	if ws {
		transport = "websocket"
	}
	a.audit(c, p, core.Entry{Action: "auditlog.stream", Tenant: core.Tenant{ID: sc.TenantID}, Metadata: map[string]any{
		"scope": scopeMeta(sc), "filters": f.Map(), "transport": transport,
	}}, true)
	// A stream lives no longer than the token that opened it.
	var expiry <-chan time.Time
	if !p.id.ExpiresAt.IsZero() {
		t := time.NewTimer(time.Until(p.id.ExpiresAt))
		defer t.Stop()
		expiry = t.C
	}
	if ws {
		a.streamWebSocket(c, sub, expiry, enc)
	} else {
		a.streamEvents(c, sub, expiry, enc)
	}
}

func apiWantsWebSocket(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return true
		}
	}
	return false
}

// apiCheckOrigin allows requests without an Origin (non-browser clients), from the same host,
// or from a host (or scheme://host) matching one of patterns, with the rules of
// github.com/coder/websocket's AcceptOptions.OriginPatterns.
func apiCheckOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("the Origin %q is not a URL with a host", apiTruncate(origin, 200))
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, pat := range patterns {
		target := u.Host
		if strings.Contains(pat, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("pages from %q may not open this WebSocket; the service allows its own origin and those it is configured with", apiTruncate(u.Host, 200))
}

func apiAcceptsEventStream(r *http.Request) bool {
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return true
	}
	for _, h := range accept {
		for part := range strings.SplitSeq(h, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "text/event-stream", "text/*", "*/*":
				return true
			}
		}
	}
	return false
}

// apiStreamEnd says why a stream ended, as a code and a message for the client.
func apiStreamEnd(expired bool, sub store.LiveStream) (code, message string) {
	err := sub.Err()
	switch {
	case expired:
		return "token_expired", "the token that opened the stream expired; reconnect with a fresh token"
	case errors.Is(err, store.ErrTenantSuspended):
		return "tenant_suspended", "the tenant was suspended; its users can no longer read its log"
	case errors.Is(err, store.ErrLagged):
		return "lagged", "the stream fell too far behind and was closed; read what you missed with GET /logs from the time of the last record, then reconnect"
	case errors.Is(err, store.ErrInterrupted):
		return "interrupted", "the stream could not read new records and was closed; read what you missed with GET /logs, then reconnect"
	case errors.Is(err, store.ErrClosed):
		return "shutting_down", "the service is shutting down; reconnect"
	}
	return "closed", "the stream was closed"
}

// streamEvents writes Server-Sent Events: "event: log" with the record's id and JSON, a comment
// as keep-alive, and a final "event: error" saying why the stream ended.
func (a *apiServer) streamEvents(c *gin.Context, sub store.LiveStream, expiry <-chan time.Time, enc apiStreamEncoder) {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	// Every write gets a deadline: a client that stops reading would otherwise block the handler
	// in Write for ever, holding a MaxStreams slot and a subscription.
	rc := http.NewResponseController(c.Writer)
	w := io.Writer(c.Writer)
	if a.opts.WriteTimeout > 0 {
		w = &apiDeadlineWriter{w: c.Writer, rc: rc, d: a.opts.WriteTimeout}
	}
	send := func(b []byte) bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send([]byte(": stream open\n\n")) {
		return
	}
	tick := time.NewTicker(a.opts.StreamHeartbeat)
	defer tick.Stop()
	end := func(expired bool) {
		code, msg := apiStreamEnd(expired, sub)
		body, _ := json.Marshal(apiError{Code: code, Message: msg})
		send([]byte("event: error\ndata: " + string(body) + "\n\n"))
	}
	buf := make([]byte, 0, 4096)
	records := sub.Records()
	for {
		select {
		case r, ok := <-records:
			if !ok {
				end(false)
				return
			}
			buf = apiAppendEvent(buf[:0], r, enc)
			// Send what is already waiting with one write and one flush.
			closed := false
		drain:
			for len(buf) < 256<<10 {
				select {
				case r, ok := <-records:
					if !ok {
						closed = true
						break drain
					}
					buf = apiAppendEvent(buf, r, enc)
				default:
					break drain
				}
			}
			if !send(buf) {
				return
			}
			if closed {
				end(false)
				return
			}
		case <-tick.C:
			if !send([]byte(": keep-alive\n\n")) {
				return
			}
		case <-expiry:
			end(true)
			return
		case <-c.Request.Context().Done():
			return
		}
	}
}

// apiStreamParams are the stream's parameters besides the filters and the tenant.
var apiStreamParams = []string{store.ParamFormat}

// apiStreamEncoder encodes one record of a stream.
type apiStreamEncoder func(r *store.Record) ([]byte, error)

// streamEncoder reads the stream's format parameter: absent, records are sent as their JSON;
// format=ocsf sends each as its OCSF event (store.OCSFEvent).
func (a *apiServer) streamEncoder(c *gin.Context, v url.Values) (apiStreamEncoder, bool) {
	vals, ok := v[store.ParamFormat]
	if !ok {
		return func(r *store.Record) ([]byte, error) { return json.Marshal(r) }, true
	}
	if len(vals) != 1 || vals[0] != string(store.FormatOCSF) {
		a.fail(c, &store.ParamError{Param: store.ParamFormat, Problem: "must be ocsf, given once (leave it out for records as JSON)"})
		return nil, false
	}
	return func(r *store.Record) ([]byte, error) { return json.Marshal(store.OCSFEvent(r)) }, true
}

// apiAppendEvent appends one "log" event holding the record encoded by enc.
func apiAppendEvent(buf []byte, r *store.Record, enc apiStreamEncoder) []byte {
	body, err := enc(r)
	if err != nil { // a Record always encodes; keep the stream well-formed regardless
		return buf
	}
	buf = append(buf, "id: "...)
	buf = append(buf, r.ID.String()...)
	buf = append(buf, "\nevent: log\ndata: "...)
	buf = append(buf, body...)
	return append(buf, '\n', '\n')
}

// streamWebSocket sends each record as a text message holding its JSON; the connection is closed
// with StreamCloseLagged, StreamCloseTokenExpired, StreamCloseTenantSuspended or 1001 (going
// away) and a reason.
func (a *apiServer) streamWebSocket(c *gin.Context, sub store.LiveStream, expiry <-chan time.Time, enc apiStreamEncoder) {
	conn, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{OriginPatterns: a.opts.WebSocketOrigins})
	if err != nil {
		return // Accept has answered the request
	}
	defer conn.CloseNow()
	// Client messages are not part of the protocol: reading them closes the connection, which
	// also keeps control frames (pings, close) flowing. The context ends when the connection does.
	ctx := conn.CloseRead(context.WithoutCancel(c.Request.Context()))
	tick := time.NewTicker(a.opts.StreamHeartbeat)
	defer tick.Stop()
	records := sub.Records()
	closeWith := func(expired bool) {
		code, msg := apiStreamEnd(expired, sub)
		status := websocket.StatusNormalClosure
		switch code {
		case "lagged":
			status = StreamCloseLagged
		case "token_expired":
			status = StreamCloseTokenExpired
		case "tenant_suspended":
			status = StreamCloseTenantSuspended
		case "shutting_down":
			status = websocket.StatusGoingAway
		case "interrupted":
			status = websocket.StatusInternalError
		}
		if len(msg) > 120 { // a close reason fits in a control frame (123 bytes)
			msg = code
		}
		_ = conn.Close(status, msg)
	}
	for {
		select {
		case r, ok := <-records:
			if !ok {
				closeWith(false)
				return
			}
			body, err := enc(r)
			if err != nil {
				return
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = conn.Write(wctx, websocket.MessageText, body)
			cancel()
			if err != nil {
				return
			}
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case <-expiry:
			closeWith(true)
			return
		case <-ctx.Done():
			return
		}
	}
}
