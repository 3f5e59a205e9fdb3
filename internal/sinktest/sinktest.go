// Package sinktest holds a core.Sink for tests that need a database which is stalled or slow: it
// stores through a real sink (PostgreSQL in the tests), after waiting while it is stalled.
package sinktest

import (
	"context"
	"sync"
	"time"

	"github.com/auditkit/auditkit/core"
)

// Gated passes each batch to Inner, but first sleeps Delay (when set) and waits while the sink is
// stalled, or until the write's context ends. The zero value (with Inner set) is open.
type Gated struct {
	Inner core.Sink     // set before the first record is enqueued
	Delay time.Duration // a slow database: each write sleeps this long first

	mu   sync.Mutex
	gate chan struct{} // nil: open
}

// Write stores recs through Inner once the sink is open.
func (s *Gated) Write(ctx context.Context, recs []*core.Record) error {
	if s.Delay > 0 {
		time.Sleep(s.Delay)
	}
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Inner.Write(ctx, recs)
}

// Stall makes writes wait until Open.
func (s *Gated) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

// Open lets waiting and later writes through. It may be called more than once.
func (s *Gated) Open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}
