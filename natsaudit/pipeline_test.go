package natsaudit_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

func TestTenantToken(t *testing.T) {
	ids := []string{"", "acme", "ACME", "a-b", "a.b", "a_b", "_", "_5F", "a b", "a*", "a>", "ü", "a_2Eb", "a.b.c", "\x00", "\xff"}
	seen := make(map[string]string)
	for _, id := range ids {
		tok := natsaudit.TenantToken(id)
		if tok == "" || strings.ContainsAny(tok, ". *>\t\r\n") {
			t.Errorf("TenantToken(%q) = %q: not a valid subject token", id, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < 0x21 || tok[i] > 0x7e {
				t.Errorf("TenantToken(%q) = %q: byte %#x outside printable ASCII", id, tok, tok[i])
			}
		}
		if other, ok := seen[tok]; ok {
			t.Errorf("TenantToken(%q) = TenantToken(%q) = %q", id, other, tok)
		}
		seen[tok] = id
	}
	for id, want := range map[string]string{"": natsaudit.NoTenantToken, "acme-1": "acme-1", "a.b": "a_2Eb", "_": "_5F", "é": "_C3_A9"} {
		if got := natsaudit.TenantToken(id); got != want {
			t.Errorf("TenantToken(%q) = %q, want %q", id, got, want)
		}
	}
	if got := natsaudit.Subject("audit.eu", "a.b"); got != "audit.eu.a_2Eb" {
		t.Errorf("Subject = %q", got)
	}
}

func TestBadOptions(t *testing.T) {
	nc := connect(t, natsURL())
	ctx := context.Background()
	if _, err := natsaudit.NewSink(nil, natsaudit.SinkOptions{}); err == nil {
		t.Error("NewSink(nil) succeeded")
	}
	for _, o := range []natsaudit.SinkOptions{{Stream: "a.b"}, {SubjectPrefix: "a.*"}, {SubjectPrefix: "a..b"}, {Stream: "a b"}} {
		if _, err := natsaudit.NewSink(nc, o); err == nil {
			t.Errorf("NewSink(%+v) succeeded", o)
		}
	}
	if _, err := natsaudit.EnsureStream(ctx, nc, natsaudit.StreamOptions{Name: "x", DuplicateWindow: time.Hour, MaxAge: time.Minute}); err == nil {
		t.Error("EnsureStream with a duplicate window longer than MaxAge succeeded")
	}
	if _, err := natsaudit.NewIngester(ctx, natsaudit.IngestOptions{Conn: nc}); err == nil || !strings.Contains(err.Error(), "Sink") {
		t.Errorf("NewIngester without a sink: %v", err)
	}
	db := pgtest.New(t)
	sink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema})
	if _, err := natsaudit.NewIngester(ctx, natsaudit.IngestOptions{Conn: nc, Sink: sink, Stream: "NO_SUCH_STREAM_" + uuid.NewString()[:8]}); err == nil {
		t.Error("NewIngester on a missing stream succeeded")
	}
}

// TestPipeline writes records through a Writer with the Sink, ingests them into PostgreSQL and
// compares them with the same records written directly.
func TestPipeline(t *testing.T) {
	const n = 3000
	ctx := context.Background()
	p := newPipe(t)
	w := core.NewWriter(p.sink, core.WriterOptions{FlushInterval: 20 * time.Millisecond, Logger: testLogger()})
	direct := pgtest.New(t)
	dw := core.NewWriter(core.NewPostgresSink(direct.Pool, core.PostgresSinkOptions{Schema: direct.Schema}),
		core.WriterOptions{FlushInterval: 20 * time.Millisecond, Logger: testLogger()})
	at := time.Now().Add(-time.Hour)
	for i := range n {
		r, twin := newRecord(i), newRecord(i)
		r.OccurredAt = at.Add(time.Duration(i) * 1001 * time.Nanosecond)
		twin.ID, twin.OccurredAt = r.ID, r.OccurredAt
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
		if err := dw.Enqueue(twin); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	closeWriter(t, dw)
	if st := p.sink.Stats(); st.Published != n || st.Duplicates != 0 {
		t.Fatalf("sink stats %+v, want %d published", st, n)
	}

	// One subject per tenant.
	info, err := p.stream.Info(ctx, jetstream.WithSubjectFilter(p.names.prefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	for i, tenant := range tenants {
		subj := natsaudit.Subject(p.names.prefix, tenant)
		want := uint64(n / len(tenants))
		if i < n%len(tenants) {
			want++
		}
		if got := info.State.Subjects[subj]; got != want {
			t.Errorf("subject %s holds %d messages, want %d (subjects %v)", subj, got, want, info.State.Subjects)
		}
	}

	db := pgtest.New(t)
	in := startIngest(t, p.nc, p.names, db, nil)
	waitCount(t, db, n, 30*time.Second)
	waitWritten(t, n, 10*time.Second, in)
	if st := in.Stats(); st.Written != n || st.Fetched != n || st.Failed != 0 || st.Pending != 0 || st.Batches == 0 || st.LastCommit.IsZero() {
		t.Errorf("ingest stats %+v", st)
	}
	verifyChains(t, db)

	cols := strings.Join(core.Columns, ", ")
	rowsOf := func(db *pgtest.DB) []string {
		rows, err := db.Pool.Query(ctx, `SELECT jsonb_build_array(`+cols+`)::text FROM audit_logs ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, want := rowsOf(db), rowsOf(direct)
	if len(got) != len(want) {
		t.Fatalf("%d rows through JetStream, %d written directly", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("row %d through JetStream:\n%s\nwritten directly:\n%s", i, got[i], want[i])
		}
	}
	if strings.Contains(strings.Join(got, "\n"), "hunter2") {
		t.Error("a password reached the database unredacted")
	}
}

func closeWriter(t *testing.T, w *core.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Written != st.Enqueued+st.Replayed || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("writer stats %+v", st)
	}
}

// TestReplay publishes records again, within the duplicate window (the stream drops them) and
// as new messages (as after the window: the consumer skips them), then delivers the whole stream
// a second time to a new consumer of the same name: the database holds every record once.
func TestReplay(t *testing.T) {
	t.Run("chained", func(t *testing.T) { testReplay(t, true) })
	t.Run("unchained", func(t *testing.T) { testReplay(t, false) })
}

func testReplay(t *testing.T, chained bool) {
	const n = 1200
	ctx := context.Background()
	p := newPipe(t)
	nc, names := p.nc, p.names
	recs := nowRecords(n)
	for range 2 { // the second time within the duplicate window
		p.publish(t, recs)
	}
	if st := p.sink.Stats(); st.Published != n || st.Duplicates != n {
		t.Fatalf("sink stats %+v, want %d published and %d duplicates", st, n, n)
	}
	// The same records under other message ids: the stream keeps them.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:n/2] {
		data, err := core.AppendRecordRow(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: natsaudit.Subject(names.prefix, r.Tenant.ID), Data: data, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, "again-"+r.ID.String())
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	db := pgtest.New(t)
	ictx, cancel := context.WithCancel(ctx)
	pgSink := core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema, DisableChain: !chained})
	opts := names.ingestOptions(nc, pgSink)
	opts.BatchSize = 100
	in, err := natsaudit.NewIngester(ictx, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ictx) }()
	deadline := time.Now().Add(30 * time.Second)
	for in.Stats().Written < n+n/2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := in.Stats(); st.Written != n+n/2 {
		t.Fatalf("ingest stats %+v, want %d written", st, n+n/2)
	}
	ids := storedIDs(t, db)
	if len(ids) != n {
		t.Fatalf("%d records stored, want %d", len(ids), n)
	}
	for _, r := range recs {
		if !ids[r.ID] {
			t.Fatalf("record %s lost", r.ID)
		}
	}

	// The whole stream again, through a consumer recreated under the same name.
	if err := js.DeleteConsumer(ctx, names.stream, names.durable); err != nil {
		t.Fatal(err)
	}
	in2 := startIngest(t, nc, names, db, func(o *natsaudit.IngestOptions) { o.Sink = pgSink })
	deadline = time.Now().Add(30 * time.Second)
	for in2.Stats().Written < n+n/2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := in2.Stats(); st.Written != n+n/2 {
		t.Fatalf("second ingest stats %+v, want %d written", st, n+n/2)
	}
	if ids := storedIDs(t, db); len(ids) != n {
		t.Fatalf("%d records stored after the replay, want %d", len(ids), n)
	}
	if chained {
		verifyChains(t, db)
	}
}

// TestSinkErrors: a missing stream and a closed connection make the sink unavailable; a record
// over the server's message size is rejected with its position.
func TestSinkErrors(t *testing.T) {
	ctx := context.Background()
	nc := connect(t, natsURL())
	names := newNames(t, nc)
	sink, err := natsaudit.NewSink(nc, names.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	rec := func(i int) *core.Record { r := newRecord(i); r.OccurredAt = time.Now(); return r }
	var unavail *core.UnavailableError
	err = sink.Write(ctx, []*core.Record{rec(0)})
	if !errors.As(err, &unavail) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Write without the stream: %v, want an UnavailableError saying the stream does not exist", err)
	}

	if _, err := natsaudit.EnsureStream(ctx, nc, names.streamOptions()); err != nil {
		t.Fatal(err)
	}
	big := rec(1)
	big.Metadata = map[string]any{"blob": strings.Repeat("x", int(nc.MaxPayload()))}
	var rej *core.RejectedError
	if err := sink.Write(ctx, []*core.Record{rec(0), big, rec(2)}); !errors.As(err, &rej) || rej.Index != 1 {
		t.Fatalf("Write of a record over the message size: %v, want a RejectedError at index 1", err)
	}

	other := connect(t, natsURL())
	closed, err := natsaudit.NewSink(other, names.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if err := closed.Write(ctx, []*core.Record{rec(3)}); !errors.As(err, &unavail) {
		t.Fatalf("Write on a closed connection: %v, want an UnavailableError", err)
	}
}

// TestSharedConsumer: three Ingesters of one durable consumer share the stream; a message that
// is not a record is terminated and counted, the rest stored once.
func TestSharedConsumer(t *testing.T) {
	const n = 6000
	ctx := context.Background()
	p := newPipe(t)
	js, err := jetstream.New(p.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, natsaudit.Subject(p.names.prefix, "acme"), []byte("not a record")); err != nil {
		t.Fatal(err)
	}
	recs := nowRecords(n)
	for i := 0; i < n; i += 500 {
		p.publish(t, recs[i:i+500])
	}
	db := pgtest.New(t)
	var ins []*natsaudit.Ingester
	for range 3 {
		ins = append(ins, startIngest(t, connect(t, natsURL()), p.names, db, func(o *natsaudit.IngestOptions) {
			o.BatchSize = 100
			o.Logger = quietLogger()
		}))
	}
	waitBacklog(t, ins[0], 60*time.Second)
	waitWritten(t, n, 10*time.Second, ins...)
	var written, failed uint64
	for i, in := range ins {
		st := in.Stats()
		if st.Written == 0 {
			t.Errorf("ingester %d stored nothing: %+v", i, st)
		}
		written += st.Written
		failed += st.Failed
	}
	if written != n || failed != 1 {
		t.Errorf("the ingesters stored %d records and failed %d messages, want %d and 1", written, failed, n)
	}
	if ids := storedIDs(t, db); len(ids) != n {
		t.Fatalf("%d records stored, want %d", len(ids), n)
	}
	verifyChains(t, db)
}

// TestProgressLog: while records flow, the Ingester logs its progress with the records written,
// the rate and the backlog.
func TestProgressLog(t *testing.T) {
	p := newPipe(t)
	p.publish(t, nowRecords(300))
	var logs lockedBuffer
	db := pgtest.New(t)
	in := startIngest(t, p.nc, p.names, db, func(o *natsaudit.IngestOptions) {
		o.ProgressInterval = 50 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	waitBacklog(t, in, 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "written=300") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"auditkit: ingest progress", "stream=" + p.names.stream, "consumer=" + p.names.durable, "written=300", "records_per_second=", "pending=0", "latency="} {
		if !strings.Contains(out, want) {
			t.Errorf("the progress log lacks %q:\n%s", want, out)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// slowSink delays every write by delay before passing it on.
type slowSink struct {
	core.Sink
	delay time.Duration
}

func (s slowSink) Write(ctx context.Context, recs []*core.Record) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Sink.Write(ctx, recs)
}

// TestSlowWrite: a write that takes three times AckWait keeps its batch: no other Ingester of
// the durable consumer receives the messages meanwhile.
func TestSlowWrite(t *testing.T) {
	p := newPipe(t)
	p.publish(t, nowRecords(400))
	db := pgtest.New(t)
	var ins []*natsaudit.Ingester
	for range 2 {
		ins = append(ins, startIngest(t, connect(t, natsURL()), p.names, db, func(o *natsaudit.IngestOptions) {
			// The Ingester tells the stream a batch is in progress every third of AckWait: an
			// AckWait of seconds leaves those reports room to be late on a loaded machine.
			o.Sink = slowSink{Sink: o.Sink, delay: 9 * time.Second}
			o.AckWait = 3 * time.Second
			o.BatchSize = 400
			o.Workers = 1
		}))
	}
	waitBacklog(t, ins[0], 60*time.Second)
	var fetched, redelivered uint64
	for _, in := range ins {
		st := in.Stats()
		fetched += st.Fetched
		redelivered += st.Redelivered
	}
	if fetched != 400 || redelivered != 0 {
		t.Errorf("the ingesters received %d messages (%d again), want 400 once each", fetched, redelivered)
	}
	if got := db.Count(t); got != 400 {
		t.Fatalf("%d records stored, want 400", got)
	}
}
