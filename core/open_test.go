package core_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
)

// TestOpenClosesPromptlyOnASilentPeer: with a server that accepts connections and never answers,
// Close gives up when its context ends, and the pool is closed in the background.
func TestOpenClosesPromptlyOnASilentPeer(t *testing.T) {
	addr := blackHole(t)
	log, _ := newLogger()
	w, err := core.Open(context.Background(), core.Config{
		DatabaseURL:   "postgres://postgres@" + addr + "/test?sslmode=disable",
		BatchSize:     5,
		FlushInterval: time.Millisecond,
		Logger:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = w.Close(ctx)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s for a 300ms context", d)
	}
	if err == nil || !strings.Contains(err.Error(), "12 audit records were not written") {
		t.Fatalf("Close = %v, want an error counting the 12 unwritten records", err)
	}
	if s := w.Stats(); s.Dropped != 12 || s.Written != 0 {
		t.Fatalf("stats = %+v, want the 12 records counted as dropped", s)
	}
}
