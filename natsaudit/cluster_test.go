package natsaudit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
	"github.com/auditkit/auditkit/natsaudit"
)

// startCluster starts a three-node JetStream cluster on loopback ports and returns its servers.
// A server that cannot bind one of its ports (another test's server drew it too) stops at once;
// the cluster then starts again on new ports.
func startCluster(t *testing.T) []*server {
	t.Helper()
	const nodes, attempts = 3, 3
	for attempt := 1; ; attempt++ {
		ports, routes := make([]int, nodes), make([]string, nodes)
		for i := range nodes {
			ports[i] = freePort(t)
			routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
		}
		servers := make([]*server, 0, nodes)
		var err error
		for i := range nodes {
			var others []string
			for j := range nodes {
				if j != i {
					others = append(others, routes[j])
				}
			}
			var s *server
			s, err = tryStartServer(t, fmt.Sprintf("n%d", i+1), ports[i],
				"--cluster_name", "auditkit-test", "--cluster", routes[i], "--routes", strings.Join(others, ","))
			servers = append(servers, s)
			if err != nil {
				break
			}
		}
		if err == nil {
			return servers
		}
		for _, s := range servers {
			s.kill()
		}
		if attempt == attempts {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again on new ports: %v", err)
	}
}

func clusterURL(servers []*server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.url()
	}
	return strings.Join(urls, ",")
}

// TestClusterNodeLoss runs the pipeline on a three-node JetStream cluster with a stream of three
// replicas and kills the stream's leader with SIGKILL under load: the writer (with a spool) and
// the ingest consumer move to the other servers, and every record accepted is stored once.
func TestClusterNodeLoss(t *testing.T) {
	ctx := context.Background()
	servers := startCluster(t)
	url := clusterURL(servers)
	pub, sub := connect(t, url), connect(t, url)
	n := newNames(t, pub)
	opts := n.streamOptions()
	opts.Replicas = 3
	var stream jetstream.Stream
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The cluster elects its meta leader first.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := natsaudit.EnsureStream(sctx, pub, opts)
		cancel()
		if err == nil {
			stream = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating an R3 stream: %v\n%s", err, servers[0].logText())
		}
		time.Sleep(200 * time.Millisecond)
	}
	sink, err := natsaudit.NewSink(pub, n.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	wopts := core.WriterOptions{Spool: core.SpoolOptions{Dir: t.TempDir()}, FlushInterval: 10 * time.Millisecond,
		RecheckInterval: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quietLogger()}
	w, err := core.OpenWriter(sink, wopts)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	in := startIngest(t, sub, n, db, func(o *natsaudit.IngestOptions) {
		o.AckWait = 3 * time.Second
		o.MaxBackoff = 200 * time.Millisecond
		o.Logger = quietLogger()
	})

	const rate = 2000 // records per second
	var (
		mu       sync.Mutex
		ids      []uuid.UUID
		refused  int
		stopLoad = make(chan struct{})
		loadDone = make(chan struct{})
	)
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			r := newRecord(i)
			err := w.Enqueue(r)
			mu.Lock()
			if err != nil {
				refused++
			} else {
				ids = append(ids, r.ID)
			}
			mu.Unlock()
		}
	}()
	time.Sleep(2 * time.Second)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("the stream is not replicated on three servers: %+v", info.Cluster)
	}
	leader := info.Cluster.Leader
	var killed *server
	for _, s := range servers {
		if s.name == leader {
			killed = s
		}
	}
	if killed == nil {
		t.Fatalf("the stream's leader %q is not one of the servers", leader)
	}
	mu.Lock()
	atKill := len(ids)
	mu.Unlock()
	killed.kill()
	killedAt := time.Now()
	time.Sleep(4 * time.Second)
	close(stopLoad)
	<-loadDone

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	wst := core.Stats{}
	if err := w.Close(cctx); err != nil {
		// Close gives up while the sink is unavailable (the connection still moving to another
		// server on a slow machine): the records stay in the spool, and the next start sends them.
		t.Logf("Close after the loss of a server: %v; restarting the writer on its spool", err)
		wst = w.Stats()
		if wst.Dropped != 0 {
			t.Fatalf("the writer dropped records: %+v", wst)
		}
		for !pub.IsConnected() && time.Now().Before(deadline.Add(time.Minute)) {
			time.Sleep(10 * time.Millisecond)
		}
		w, err = core.OpenWriter(sink, wopts)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(cctx); err != nil {
			t.Fatalf("Close after a restart: %v", err)
		}
	}
	wst = w.Stats()
	deadline = time.Now().Add(60 * time.Second)
	for db.Count(t) < len(ids) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Since(killedAt)
	stored := storedIDs(t, db)
	lost := 0
	for _, id := range ids {
		if !stored[id] {
			lost++
		}
	}
	info, err = stream.Info(ctx)
	newLeader := "?"
	if err == nil && info.Cluster != nil {
		newLeader = info.Cluster.Leader
	}
	t.Logf("killed the stream leader %s after %d records; %d accepted, %d refused, %d stored, %d lost; new leader %s; all stored %s after the kill; writer %+v; sink %+v; ingest %+v",
		leader, atKill, len(ids), refused, len(stored), lost, newLeader, recovered.Round(time.Millisecond), wst, sink.Stats(), in.Stats())
	if lost > 0 || len(stored) != len(ids) {
		t.Fatalf("%d records lost, %d stored of %d accepted", lost, len(stored), len(ids))
	}
	if refused > 0 {
		t.Errorf("%d records refused by the writer", refused)
	}
	if newLeader == leader {
		t.Errorf("the killed server %s still leads the stream", leader)
	}
	verifyChains(t, db)
}
