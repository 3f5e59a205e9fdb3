package core_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/auditkit/auditkit/core"
	"github.com/auditkit/auditkit/internal/pgtest"
)

func TestWriterObserveReportsEachBatch(t *testing.T) {
	db := pgtest.New(t)
	log, _ := newLogger()
	w := core.NewWriter(core.NewPostgresSink(db.Pool, core.PostgresSinkOptions{Schema: db.Schema}),
		core.WriterOptions{BatchSize: 10, FlushInterval: time.Hour, Logger: log})
	defer closeWriter(t, w)
	var mu sync.Mutex
	var events []core.BatchEvent
	remove := w.Observe(func(ev core.BatchEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	for i := range 25 {
		if err := w.Enqueue(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]core.BatchEvent(nil), events...)
	mu.Unlock()
	total := 0
	for _, ev := range got {
		if ev.Err != nil || ev.Attempt != 0 || ev.Duration <= 0 {
			t.Fatalf("event %+v, want a first successful attempt with a duration", ev)
		}
		total += ev.Records
	}
	if len(got) != 3 || total != 25 {
		t.Fatalf("%d events for %d records, want 3 for 25: %+v", len(got), total, got)
	}

	// After remove, nothing more is reported.
	remove()
	remove() // a second call is harmless
	if err := w.Enqueue(sampleRecord(99)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 {
		t.Fatalf("%d events after remove, want still 3", len(events))
	}
}
