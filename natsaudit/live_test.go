package natsaudit_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/core/store"
	"github.com/auditkit/auditkit/ginaudit"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

// liveSecret signs the live stream tests' tokens.
const liveSecret = "live-test-secret-0123456789abcdef-012"

// liveEnv is a NATS stream of the test's own, a database, a store, an ingest process storing
// the stream into the database, the API mounted twice (/pg with the Store as the live source,
// /nats with a natsaudit.Live), and an application writer publishing to the stream.
type liveEnv struct {
	nc     *nats.Conn
	stream string
	prefix string
	db     *pgtest.DB
	st     *store.Store
	live   *natsaudit.Live
	app    *core.Writer
	srv    *httptest.Server
}

func liveNATSURL() string {
	if u := os.Getenv("AUDITKIT_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func newLiveEnv(t testing.TB, liveOpts func(*natsaudit.LiveOptions)) *liveEnv {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	nc, err := nats.Connect(liveNATSURL(), nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s: %v (start nats-server -a 127.0.0.1 -p 4222 -js)", liveNATSURL(), err)
	}
	t.Cleanup(nc.Close)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	e := &liveEnv{nc: nc, stream: "AUDITLIVE_" + suffix, prefix: "auditlive." + suffix}
	ctx := context.Background()
	if _, err := natsaudit.EnsureStream(ctx, nc, natsaudit.StreamOptions{Name: e.stream, SubjectPrefix: e.prefix, Memory: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		js, err := jetstream.New(nc)
		if err == nil && !nc.IsClosed() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = js.DeleteStream(ctx, e.stream)
		}
	})
	e.db = pgtest.New(t)
	if e.st, err = store.New(e.db.Pool, store.Options{Schema: e.db.Schema, StreamStatusInterval: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	lo := natsaudit.LiveOptions{Conn: nc, Stream: e.stream, SubjectPrefix: e.prefix, Tenants: e.st,
		StatusInterval: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	if liveOpts != nil {
		liveOpts(&lo)
	}
	if e.live, err = natsaudit.NewLive(lo); err != nil {
		t.Fatal(err)
	}
	// The ingest process stores what the stream carries.
	inCtx, inCancel := context.WithCancel(ctx)
	in, err := natsaudit.NewIngester(inCtx, natsaudit.IngestOptions{Conn: nc, Stream: e.stream, SubjectPrefix: e.prefix,
		Durable: "ingest-" + suffix, MaxWait: 20 * time.Millisecond, ProgressInterval: -1, Logger: slog.New(slog.DiscardHandler),
		Sink: core.NewPostgresSink(e.db.Pool, core.PostgresSinkOptions{Schema: e.db.Schema})})
	if err != nil {
		inCancel()
		t.Fatal(err)
	}
	inDone := make(chan error, 1)
	go func() { inDone <- in.Run(inCtx) }()
	sink, err := natsaudit.NewSink(nc, natsaudit.SinkOptions{Stream: e.stream, SubjectPrefix: e.prefix})
	if err != nil {
		t.Fatal(err)
	}
	e.app = core.NewWriter(sink, core.WriterOptions{FlushInterval: time.Millisecond})
	// The API's own records go to the database directly.
	apiW := core.NewWriter(core.NewPostgresSink(e.db.Pool, core.PostgresSinkOptions{Schema: e.db.Schema}), core.WriterOptions{FlushInterval: 5 * time.Millisecond})
	v, err := ginaudit.NewVerifier(ctx, core.JWTConfig{Secret: liveSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	for _, src := range []struct {
		path string
		live store.LiveSource
	}{{"/pg", nil}, {"/nats", e.live}} {
		if err := ginaudit.MountAPI(r.Group(src.path), e.st, ginaudit.APIOptions{Verifier: v, Writer: apiW, RateLimit: -1,
			Logger: slog.New(slog.DiscardHandler), Live: src.live}); err != nil {
			t.Fatal(err)
		}
	}
	e.srv = httptest.NewServer(r)
	t.Cleanup(func() {
		e.live.Close()
		e.st.Close()
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.app.Close(ctx)
		_ = apiW.Close(ctx)
		inCancel()
		<-inDone
	})
	return e
}

func liveToken(t testing.TB, typ core.ActorType, tenant string, extra ...any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "u-" + tenant, "actor_type": string(typ), "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	if tenant != "" {
		c["tenant_id"] = tenant
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(liveSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// liveEvent is one Server-Sent Event and when it arrived.
type liveEvent struct {
	id, name, data string
	at             time.Time
}

// liveSSE is an open stream whose events arrive on events.
type liveSSE struct {
	resp   *http.Response
	events chan liveEvent
}

// open opens GET <source>/logs/stream with q, failing unless it answers 200.
func (e *liveEnv) open(t testing.TB, source, token string, q url.Values) *liveSSE {
	t.Helper()
	resp, status, body := e.get(t, source, token, q)
	if status != http.StatusOK {
		t.Fatalf("%s stream %v: %d %s", source, q, status, body)
	}
	s := &liveSSE{resp: resp, events: make(chan liveEvent, 10000)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev liveEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ev.at = time.Now()
					s.events <- ev
				}
				ev = liveEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return s
}

// get starts the request; it returns the response (open, for a 200) or the status and body.
func (e *liveEnv) get(t testing.TB, source, token string, q url.Values) (*http.Response, int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+source+"/logs/stream?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var sb strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
		return nil, resp.StatusCode, sb.String()
	}
	return resp, resp.StatusCode, ""
}

// collect reads log events until want ids arrived or timeout; it returns them by id.
func (s *liveSSE) collect(t testing.TB, want int, timeout time.Duration) map[string]liveEvent {
	t.Helper()
	got := map[string]liveEvent{}
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended after %d of %d events", len(got), want)
			}
			if ev.name != "log" {
				t.Fatalf("event %+v", ev)
			}
			if _, dup := got[ev.id]; dup {
				t.Fatalf("record %s streamed twice", ev.id)
			}
			got[ev.id] = ev
		case <-deadline:
			t.Fatalf("%d of %d events within %s", len(got), want, timeout)
		}
	}
	return got
}

// quiet fails on any log event arriving within d.
func (s *liveSSE) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if ok && ev.name == "log" {
				t.Fatalf("unexpected event %s %s", ev.id, ev.data)
			}
			if !ok {
				return
			}
		case <-deadline:
			return
		}
	}
}

// liveRecords returns records of several tenants and actions, every third one an invoice of the
// given tenant, with documents whose jsonb form differs from Go's encoding.
func liveRecords(n int) []*core.Record {
	tenants := []string{"acme", "globex", "", "acme.eu"}
	var out []*core.Record
	for i := range n {
		r := &core.Record{
			Kind:         []core.Kind{core.KindCustom, core.KindHTTP, core.KindUpdate}[i%3],
			Action:       []string{"invoice.sent", "user.login", "invoice.paid"}[i%3],
			Tenant:       core.Tenant{ID: tenants[i%len(tenants)]},
			Actor:        core.Actor{ID: fmt.Sprintf("u-%d", i%3), Type: core.ActorTenantUser, Email: "Ana@Example.com"},
			ResourceType: "invoices",
			ResourceID:   fmt.Sprint(i),
			Metadata:     map[string]any{"n": i, "amount": 12.5, "zz": "a<b>&\u00e9", "a": []any{1e21, nil}},
		}
		if r.Kind == core.KindHTTP {
			r.Method, r.Path, r.Status, r.Duration = "GET", "/x", 200+i%3, time.Duration(i)*time.Millisecond
		}
		if r.Kind == core.KindUpdate {
			r.Diff = map[string]core.Change{"total": {From: 1.5, To: 2}}
		}
		out = append(out, r)
	}
	return out
}

func (e *liveEnv) publish(t testing.TB, recs ...*core.Record) {
	t.Helper()
	for _, r := range recs {
		if err := e.app.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.app.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLiveSSEFollowsJetStream: through MountAPI with the NATS source, a record published by the
// Sink arrives on its tenant's stream and never on another's, the filters apply, format=ocsf
// works, and every event is byte for byte the event the PostgreSQL source sends for the same
// record once the ingest process stored it.
func TestLiveSSEFollowsJetStream(t *testing.T) {
	e := newLiveEnv(t, nil)
	acme := liveToken(t, core.ActorTenantUser, "acme")
	globex := liveToken(t, core.ActorTenantUser, "globex")
	admin := liveToken(t, core.ActorPlatformAdmin, "")
	inv := url.Values{"action_prefix": {"invoice."}}
	ocsf := url.Values{"format": {"ocsf"}, "kind": {"http,update"}}
	streams := map[string]*liveSSE{
		"acme/pg": e.open(t, "/pg", acme, inv), "acme/nats": e.open(t, "/nats", acme, inv),
		"globex/nats": e.open(t, "/nats", globex, nil),
		"admin/pg":    e.open(t, "/pg", admin, ocsf), "admin/nats": e.open(t, "/nats", admin, ocsf),
	}
	time.Sleep(300 * time.Millisecond) // every stream's subscription is in place
	recs := liveRecords(48)
	e.publish(t, recs...)
	// A message on acme's subject holding a globex record reaches neither acme nor globex's
	// stream through the subject (globex's stream does not follow acme's subject).
	forged := &core.Record{ID: core.NewID(), OccurredAt: time.Now(), Kind: core.KindCustom, Action: "invoice.sent",
		Tenant: core.Tenant{ID: "globex"}, Actor: core.Actor{Type: core.ActorSystem}, Severity: core.SeverityInfo}
	row, err := core.AppendRecordRow(nil, forged)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(e.nc)
	if _, err := js.Publish(context.Background(), natsaudit.Subject(e.prefix, "acme"), row); err != nil {
		t.Fatal(err)
	}
	want := func(f func(*core.Record) bool) []string {
		var ids []string
		for _, r := range recs {
			if f(r) {
				ids = append(ids, r.ID.String())
			}
		}
		return ids
	}
	acmeIDs := want(func(r *core.Record) bool { return r.Tenant.ID == "acme" && strings.HasPrefix(r.Action, "invoice.") })
	globexIDs := want(func(r *core.Record) bool { return r.Tenant.ID == "globex" })
	adminIDs := want(func(r *core.Record) bool { return r.Kind == core.KindHTTP || r.Kind == core.KindUpdate })
	got := map[string]map[string]liveEvent{}
	for name, n := range map[string]int{"acme/pg": len(acmeIDs), "acme/nats": len(acmeIDs), "globex/nats": len(globexIDs),
		"admin/pg": len(adminIDs), "admin/nats": len(adminIDs)} {
		got[name] = streams[name].collect(t, n, 30*time.Second)
	}
	for name, ids := range map[string][]string{"acme/nats": acmeIDs, "globex/nats": globexIDs, "admin/nats": adminIDs} {
		keys := make([]string, 0, len(got[name]))
		for id := range got[name] {
			keys = append(keys, id)
		}
		slices.Sort(keys)
		slices.Sort(ids)
		if !slices.Equal(keys, ids) {
			t.Fatalf("%s streamed %v, want %v", name, keys, ids)
		}
	}
	for _, who := range []string{"acme", "admin"} {
		for id, pe := range got[who+"/pg"] {
			ne, ok := got[who+"/nats"][id]
			if !ok {
				t.Fatalf("%s: record %s on the PostgreSQL stream only", who, id)
			}
			if pe.data != ne.data {
				t.Fatalf("%s: record %s differs:\nPostgreSQL %s\nNATS       %s", who, id, pe.data, ne.data)
			}
		}
	}
	var ev map[string]any
	for _, x := range got["admin/nats"] {
		if err := json.Unmarshal([]byte(x.data), &ev); err != nil || ev["class_uid"] == nil {
			t.Fatalf("format=ocsf event %s: %v", x.data, err)
		}
		break
	}
	// Nothing more arrives: the forged record is on no stream, globex's records never on acme's.
	streams["acme/nats"].quiet(t, 500*time.Millisecond)
	streams["globex/nats"].quiet(t, 10*time.Millisecond)
}

// TestLiveRefusesSearch: q needs PostgreSQL; the NATS source refuses it with 400.
func TestLiveRefusesSearch(t *testing.T) {
	e := newLiveEnv(t, nil)
	_, status, body := e.get(t, "/nats", liveToken(t, core.ActorTenantUser, "acme"), url.Values{"q": {"invoice"}})
	if status != http.StatusBadRequest || !strings.Contains(body, `"param":"q"`) || !strings.Contains(body, "full-text search") {
		t.Fatalf("q on the NATS source: %d %s", status, body)
	}
}

// TestLiveEndsOnSuspend: a suspended tenant's stream ends, as with the PostgreSQL source.
func TestLiveEndsOnSuspend(t *testing.T) {
	e := newLiveEnv(t, nil)
	ctx := context.Background()
	if _, err := e.st.CreateTenant(ctx, store.Tenant{ID: "acme"}); err != nil {
		t.Fatal(err)
	}
	s := e.open(t, "/nats", liveToken(t, core.ActorTenantUser, "acme"), nil)
	time.Sleep(300 * time.Millisecond)
	suspended := store.TenantSuspended
	if _, _, err := e.st.UpdateTenant(ctx, "acme", store.TenantUpdate{Status: &suspended}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev, ok := <-s.events:
		if !ok || ev.name != "error" || !strings.Contains(ev.data, `"tenant_suspended"`) {
			t.Fatalf("event %+v (open %v)", ev, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream of a suspended tenant goes on")
	}
}

// TestLiveEndsWithTheToken: a viewer's or user's stream ends when its token expires.
func TestLiveEndsWithTheToken(t *testing.T) {
	e := newLiveEnv(t, nil)
	// The token must outlive the opening of the stream, however loaded the machine.
	s := e.open(t, "/nats", liveToken(t, core.ActorTenantUser, "acme", "exp", time.Now().Add(5*time.Second).Unix()), nil)
	select {
	case ev := <-s.events:
		if ev.name != "error" || !strings.Contains(ev.data, `"token_expired"`) {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream outlived its token")
	}
}

// TestLiveLagged: a consumer that does not read is ended with store.ErrLagged, and the API says
// "lagged".
func TestLiveLagged(t *testing.T) {
	e := newLiveEnv(t, func(o *natsaudit.LiveOptions) { o.Buffer = 3 })
	sub, err := e.live.SubscribeLive(context.Background(), store.TenantScope("acme"), store.Filter{}, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var recs []*core.Record
	for i := range 20 {
		recs = append(recs, &core.Record{Kind: core.KindCustom, Action: "a", Tenant: core.Tenant{ID: "acme"}, ResourceID: fmt.Sprint(i)})
	}
	e.publish(t, recs...)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-time.After(50 * time.Millisecond):
			if sub.Err() == nil {
				continue
			}
		case <-deadline:
			t.Fatal("a consumer that does not read was not ended")
		}
		break
	}
	n := 0
	for range sub.Records() {
		n++
	}
	if !errors.Is(sub.Err(), store.ErrLagged) || n != 3 {
		t.Fatalf("ended with %v after %d records, want ErrLagged after 3", sub.Err(), n)
	}
	// Closing the Live ends the others with ErrClosed, and a closed Live refuses new streams.
	other, err := e.live.SubscribeLive(context.Background(), store.AllTenantsScope(), store.Filter{}, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.live.Close()
	for range other.Records() {
	}
	if !errors.Is(other.Err(), store.ErrClosed) {
		t.Fatalf("after Close: %v", other.Err())
	}
	if _, err := e.live.SubscribeLive(context.Background(), store.AllTenantsScope(), store.Filter{}, store.SubscribeOptions{}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("SubscribeLive after Close: %v", err)
	}
}

// TestLiveOptions: bad options and filters are clear errors.
func TestLiveOptions(t *testing.T) {
	if _, err := natsaudit.NewLive(natsaudit.LiveOptions{}); err == nil {
		t.Fatal("NewLive without a connection")
	}
	nc, err := nats.Connect(liveNATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, o := range []natsaudit.LiveOptions{{Conn: nc, Stream: "a.b"}, {Conn: nc, SubjectPrefix: "a.>"}, {Conn: nc, Buffer: -1}, {Conn: nc, StatusInterval: -1}} {
		if _, err := natsaudit.NewLive(o); err == nil {
			t.Errorf("NewLive(%+v) accepted", o)
		}
	}
	l, err := natsaudit.NewLive(natsaudit.LiveOptions{Conn: nc, Stream: "AUDITLIVE_NO_SUCH_STREAM"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.SubscribeLive(ctx, store.TenantScope("acme"), store.Filter{}, store.SubscribeOptions{EndOnSuspend: true}); err == nil || !strings.Contains(err.Error(), "Tenants") {
		t.Errorf("EndOnSuspend without Tenants: %v", err)
	}
	if _, err := l.SubscribeLive(ctx, store.Scope{}, store.Filter{}, store.SubscribeOptions{}); !errors.Is(err, store.ErrInvalidScope) {
		t.Errorf("empty scope: %v", err)
	}
	if _, err := l.SubscribeLive(ctx, store.AllTenantsScope(), store.Filter{}, store.SubscribeOptions{}); err == nil || !strings.Contains(err.Error(), "AUDITLIVE_NO_SUCH_STREAM") {
		t.Errorf("missing stream: %v", err)
	}
}

// TestLiveWebSocket: the WebSocket transport of the stream works with the NATS source, and a
// stream a platform administrator opens for one tenant (tenant_id) sees that tenant only.
func TestLiveWebSocket(t *testing.T) {
	e := newLiveEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := strings.Replace(e.srv.URL, "http", "ws", 1) + "/nats/logs/stream?tenant_id=globex&access_token=" + liveToken(t, core.ActorPlatformAdmin, "")
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	recs := liveRecords(8)
	e.publish(t, recs...)
	var want []string
	for _, r := range recs {
		if r.Tenant.ID == "globex" {
			want = append(want, r.ID.String())
		}
	}
	var got []string
	for len(got) < len(want) {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", len(got), len(want), err)
		}
		var rec store.Record
		if err := json.Unmarshal(msg, &rec); err != nil || rec.TenantID != "globex" {
			t.Fatalf("message %s: %v", msg, err)
		}
		got = append(got, rec.ID.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("streamed %v, want %v", got, want)
	}
}

// TestLiveEndsWhenNATSIsGone: a stream whose connection closes for good ends with
// store.ErrInterrupted, so that its client knows to catch up with GET /logs.
func TestLiveEndsWhenNATSIsGone(t *testing.T) {
	e := newLiveEnv(t, nil)
	nc, err := nats.Connect(liveNATSURL())
	if err != nil {
		t.Fatal(err)
	}
	l, err := natsaudit.NewLive(natsaudit.LiveOptions{Conn: nc, Stream: e.stream, SubjectPrefix: e.prefix})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := l.SubscribeLive(context.Background(), store.AllTenantsScope(), store.Filter{}, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	done := make(chan struct{})
	go func() {
		for range sub.Records() {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the stream goes on without its connection")
	}
	if !errors.Is(sub.Err(), store.ErrInterrupted) {
		t.Fatalf("ended with %v, want ErrInterrupted", sub.Err())
	}
}

// TestLiveDecodesOncePerMessage: the streams of one Live that receive the same message share
// the record decoded from it (records are read-only, as the Store's).
func TestLiveDecodesOncePerMessage(t *testing.T) {
	e := newLiveEnv(t, nil)
	ctx := context.Background()
	all, err := e.live.SubscribeLive(ctx, store.AllTenantsScope(), store.Filter{}, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	acme, err := e.live.SubscribeLive(ctx, store.TenantScope("acme"), store.Filter{}, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	r := &core.Record{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}}
	e.publish(t, r)
	recv := func(s store.LiveStream) *store.Record {
		select {
		case got := <-s.Records():
			if got == nil || got.ID != r.ID {
				t.Fatalf("received %+v, want %s", got, r.ID)
			}
			return got
		case <-time.After(10 * time.Second):
			t.Fatal("the record was not streamed")
		}
		return nil
	}
	if a, b := recv(all), recv(acme); a != b {
		t.Fatal("each stream decoded the message itself")
	}
}

// TestLiveRemovesItsConsumers: a stream's consumer leaves the server when the stream ends.
func TestLiveRemovesItsConsumers(t *testing.T) {
	e := newLiveEnv(t, nil)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, e.stream)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	base := consumers() // the ingest process's durable consumer
	var subs []store.LiveStream
	for _, tenant := range []string{"acme", "globex", "acme"} {
		sub, err := e.live.SubscribeLive(ctx, store.TenantScope(tenant), store.Filter{}, store.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if n := consumers(); n != base+3 {
		t.Fatalf("%d consumers with three streams open, want %d", n, base+3)
	}
	for _, sub := range subs {
		sub.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for consumers() != base {
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left after the streams ended, want %d", consumers(), base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
