package store

import "time"

// UnwindowedPages makes s read every page with one unbounded statement, as on a table that is
// not partitioned, for benchmarks that compare the two.
func UnwindowedPages(s *Store) {
	s.partBounds.mu.Lock()
	defer s.partBounds.mu.Unlock()
	s.partBounds.read = time.Now().Add(100 * 365 * 24 * time.Hour) // never stale
	s.partBounds.bounds = nil
}
