package ginaudit_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/ginaudit"
)

// blackHole accepts TCP connections and never answers: a PostgreSQL that hangs.
func blackHole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// stalledWriter returns a Writer whose PostgreSQL sink points at a peer that never answers.
func stalledWriter(t testing.TB, queue int) *core.Writer {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://u@"+blackHole(t)+"/db?connect_timeout=60")
	if err != nil {
		t.Fatal(err)
	}
	w := core.NewWriter(core.NewPostgresSink(pool, core.PostgresSinkOptions{}),
		core.WriterOptions{QueueSize: queue, BatchSize: 10, FlushInterval: time.Millisecond, Logger: discardLogger()})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = w.Close(ctx) // gives up: the records cannot be written
		pool.Close()
	})
	return w
}

// TestStalledDatabaseDoesNotDelayRequests: with PostgreSQL hanging, every request completes, and
// once the queue is full records are refused and counted rather than waited for.
func TestStalledDatabaseDoesNotDelayRequests(t *testing.T) {
	w := stalledWriter(t, 20)
	r := gin.New()
	r.Use(ginaudit.Middleware(ginaudit.Options{Writer: w, Config: core.Config{LogAnonymous: true}, Logger: discardLogger()}))
	r.GET("/x", func(c *gin.Context) {
		_ = core.Dispatch(c.Request.Context(), w, &core.Record{Kind: core.KindInsert, ResourceType: "x"})
		c.Status(200)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	srv.Client().Timeout = 30 * time.Second // a request waiting on the database fails here
	const n = 200
	start := time.Now()
	for i := 0; i < n; i++ {
		resp, err := srv.Client().Get(fmt.Sprintf("%s/x?i=%d", srv.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// Generous: 200 loopback requests take a few milliseconds each at most under -race; a request
	// that waited for the database would take at least the 60s connect timeout.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("%d requests took %s", n, d)
	}
	st := w.Stats()
	if st.Enqueued+st.Dropped != 2*n || st.Dropped == 0 || st.Written != 0 {
		t.Fatalf("stats %+v: want every record either queued or counted as dropped", st)
	}
}
