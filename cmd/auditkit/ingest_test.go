package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

func testNATSURL() string {
	if u := os.Getenv("AUDITKIT_TEST_NATS_URL"); u != "" {
		return u
	}
	return nats.DefaultURL
}

// TestIngestDrain: records published to a stream are stored, chained, by ingest -drain, which
// then exits; a second run finds nothing new and stores nothing twice.
func TestIngestDrain(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(testNATSURL(), nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s: %v (start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server)", testNATSURL(), err)
	}
	defer nc.Close()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	stream, prefix := "CMDTEST_"+suffix, "cmdtest."+suffix
	t.Cleanup(func() {
		if js, err := jetstream.New(nc); err == nil {
			_ = js.DeleteStream(context.Background(), stream)
		}
	})
	db := pgtest.New(t)
	flags := []string{"-database-url", pgtest.URL(), "-schema", db.Schema, "-nats-url", testNATSURL(),
		"-stream", stream, "-subject-prefix", prefix, "-durable", "ingest", "-progress", "0"}

	code, stdout, stderr := runCmd(t, nil, append([]string{"ingest", "-create-stream", "-drain"}, flags...)...)
	if code != exitOK || !strings.Contains(stdout, "stored 0 records") {
		t.Fatalf("ingest of an empty stream: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	sink, err := natsaudit.NewSink(nc, natsaudit.SinkOptions{Stream: stream, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(sink, core.WriterOptions{FlushInterval: 10 * time.Millisecond})
	const n = 700
	for i := range n {
		if err := w.Enqueue(&core.Record{Kind: core.KindCustom, Action: "cmd.test", Tenant: core.Tenant{ID: "t" + strconv.Itoa(i%3)}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr = runCmd(t, nil, append([]string{"ingest", "-drain"}, flags...)...)
	if code != exitOK || !strings.Contains(stdout, "stored 700 records") {
		t.Fatalf("ingest: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := db.Count(t); got != n {
		t.Fatalf("%d records stored, want %d", got, n)
	}
	code, stdout, stderr = runCmd(t, nil, append([]string{"ingest", "-drain"}, flags...)...)
	if code != exitOK || !strings.Contains(stdout, "stored 0 records") || db.Count(t) != n {
		t.Fatalf("second ingest: exit %d, stdout %q, stderr %q, %d records", code, stdout, stderr, db.Count(t))
	}
	code, stdout, stderr = runCmd(t, nil, "verify", "-database-url", pgtest.URL(), "-schema", db.Schema)
	if code != exitOK {
		t.Fatalf("verify after ingest: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestIngestUsage: bad flag values are usage errors; a missing stream is a failure that says so.
func TestIngestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-batch", "0"}, {"-workers", "-1"}, {"-ack-wait", "10ms"}, {"-replicas", "0"}, {"-progress", "-1s"}} {
		code, _, stderr := runCmd(t, nil, append([]string{"ingest", "-database-url", pgtest.URL()}, args...)...)
		if code != exitUsage || !strings.Contains(stderr, args[0]) {
			t.Errorf("ingest %v: exit %d, stderr %q", args, code, stderr)
		}
	}
	db := pgtest.New(t)
	code, _, stderr := runCmd(t, nil, "ingest", "-database-url", pgtest.URL(), "-schema", db.Schema, "-nats-url", testNATSURL(),
		"-stream", "NO_SUCH_STREAM_"+strconv.FormatInt(time.Now().UnixNano(), 36), "-drain")
	if code != exitFail || !strings.Contains(stderr, "stream not found") {
		t.Errorf("ingest of a missing stream: exit %d, stderr %q", code, stderr)
	}
}
