package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

func TestServiceStreamSourceConfiguration(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	base := []string{"AUDIT_DATABASE_URL=postgres://x@127.0.0.1/db", "AUDIT_JWT_SECRET=" + e2eSecret}
	_, err := loadConfig(append(base, "AUDITLOG_STREAM_SOURCE=kafka"), logger)
	if err == nil || !strings.Contains(err.Error(), "AUDITLOG_STREAM_SOURCE") {
		t.Errorf("unknown source: %v", err)
	}
	_, err = loadConfig(append(base, "AUDITLOG_NATS_STREAM=AUDIT"), logger)
	if err == nil || !strings.Contains(err.Error(), "AUDITLOG_NATS_STREAM: is only used with AUDITLOG_STREAM_SOURCE=nats") {
		t.Errorf("NATS settings without the nats source: %v", err)
	}
	cfg, err := loadConfig(base, logger)
	if err != nil || cfg.NATSURL != "" {
		t.Fatalf("default source: %v %q", err, cfg.NATSURL)
	}
	cfg, err = loadConfig(append(base, "AUDITLOG_STREAM_SOURCE=nats"), logger)
	if err != nil || cfg.NATSURL != nats.DefaultURL || cfg.NATSStream != natsaudit.DefaultStream || cfg.NATSSubjectPrefix != natsaudit.DefaultSubjectPrefix {
		t.Fatalf("nats defaults: %v %+v", err, cfg)
	}
	cfg, err = loadConfig(append(base, "AUDITLOG_STREAM_SOURCE=NATS", "NATS_URL=nats://10.0.0.1:4222", "AUDITLOG_NATS_STREAM=S",
		"AUDITLOG_NATS_SUBJECT_PREFIX=p.q"), logger)
	if err != nil || cfg.NATSURL != "nats://10.0.0.1:4222" || cfg.NATSStream != "S" || cfg.NATSSubjectPrefix != "p.q" {
		t.Fatalf("nats settings: %v %+v", err, cfg)
	}
}

// TestServiceStreamFollowsNATS runs the service with AUDITLOG_STREAM_SOURCE=nats: a record an
// application publishes to the stream reaches its tenant's live stream.
func TestServiceStreamFollowsNATS(t *testing.T) {
	natsURL := "nats://127.0.0.1:4222"
	if u := os.Getenv("AUDITKIT_TEST_NATS_URL"); u != "" {
		natsURL = u
	}
	nc, err := nats.Connect(natsURL, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s: %v", natsURL, err)
	}
	defer nc.Close()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	stream, prefix := "AUDITSVC_"+suffix, "auditsvc."+suffix
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := natsaudit.EnsureStream(ctx, nc, natsaudit.StreamOptions{Name: stream, SubjectPrefix: prefix, Memory: true}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		js, _ := jetstream.New(nc)
		_ = js.DeleteStream(context.Background(), stream)
	}()
	db := pgtest.NewEmpty(t)
	addr := freeAddr(t)
	ready := make(chan struct{})
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- run(ctx, []string{"AUDIT_DATABASE_URL=" + pgtest.URL(), "AUDIT_DB_SCHEMA=" + db.Schema, "AUDIT_JWT_SECRET=" + e2eSecret,
			"AUDITLOG_LISTEN_ADDR=" + addr, "AUDITLOG_RETENTION=off", "AUDITLOG_STREAM_SOURCE=nats", "AUDITLOG_NATS_URL=" + natsURL,
			"AUDITLOG_NATS_STREAM=" + stream, "AUDITLOG_NATS_SUBJECT_PREFIX=" + prefix}, slog.New(slog.NewTextHandler(&logs, nil)), func(string) { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the service stopped: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatal("the service did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/logs/stream?action_prefix=invoice.", nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken(t, "u", core.ActorTenantUser, "acme"))
	resp, err := (&http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	sink, err := natsaudit.NewSink(nc, natsaudit.SinkOptions{Stream: stream, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(sink, core.WriterOptions{FlushInterval: time.Millisecond})
	other := &core.Record{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "globex"}}
	mine := &core.Record{Kind: core.KindCustom, Action: "invoice.sent", Tenant: core.Tenant{ID: "acme"}}
	for _, r := range []*core.Record{other, {Kind: core.KindCustom, Action: "user.login", Tenant: core.Tenant{ID: "acme"}}, mine} {
		if err := w.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				events <- id
			}
		}
	}()
	select {
	case id := <-events:
		if id != mine.ID.String() {
			t.Fatalf("streamed %s, want %s (only acme's invoice)", id, mine.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the record published to NATS was not streamed\n%s", logs.String())
	}
	if !bytes.Contains([]byte(logs.String()), []byte("live streams follow NATS JetStream")) {
		t.Errorf("the service did not log its stream source: %s", logs.String())
	}
}
