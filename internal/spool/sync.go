package spool

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// SyncMode says when appended data is fsynced. Append never waits for it: a frame survives a
// crash of the process as soon as Append returns, and an OS crash once it is fsynced.
type SyncMode int

const (
	// SyncBatch fsyncs from a background goroutine whenever appended data is unsynced (group
	// commit: one fsync covers every frame appended since the previous one).
	SyncBatch SyncMode = iota
	// SyncInterval fsyncs every Options.SyncInterval when something was appended.
	SyncInterval
	// SyncNever leaves writing back to the OS; Close still fsyncs.
	SyncNever
)

// ParseSyncMode parses "batch", "interval" or "never".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "batch":
		return SyncBatch, nil
	case "interval":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("spool: unknown sync mode %q (want batch, interval or never)", s)
}

// String returns the name ParseSyncMode accepts.
func (m SyncMode) String() string {
	switch m {
	case SyncBatch:
		return "batch"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

func (s *Spool) batchLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
			s.syncMu.Lock()
			_ = s.syncLocked(false)
			s.syncMu.Unlock()
		}
	}
}

func (s *Spool) intervalLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.syncMu.Lock()
			_ = s.syncLocked(false)
			s.syncMu.Unlock()
		}
	}
}

// Sync fsyncs everything appended so far, and the directory when segment files were created or
// removed.
func (s *Spool) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.syncLocked(true)
}

// syncLocked runs one fsync round; with force unset it does nothing when nothing is unsynced.
// Called with syncMu held. The files are fsynced without holding mu, so appends go on meanwhile.
func (s *Spool) syncLocked(force bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if !force && !s.unsynced && !s.dirDirty && len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	active, pending, dir := s.active, s.pending, s.dirDirty
	var nums []uint64
	if force {
		nums, s.closedNums = s.closedNums, nil
	}
	s.pending, s.unsynced, s.dirDirty = nil, false, false
	s.mu.Unlock()

	// A rolled file stays open in pending until this round fsyncs it, and only a round (or
	// Close, which holds syncMu) closes files, so active and pending cannot be closed under us.
	var err error
	for _, f := range pending {
		err = errors.Join(err, f.Sync())
		f.Close()
	}
	for _, num := range nums {
		err = errors.Join(err, syncPath(s.segPath(num)))
	}
	if active != nil {
		aerr := active.Sync()
		if s.opts.Sync == SyncNever && errors.Is(aerr, os.ErrClosed) {
			// Rolled meanwhile; its number is in closedNums for the next forced round.
			aerr = nil
		}
		err = errors.Join(err, aerr)
	}
	if dir {
		err = errors.Join(err, syncDir(s.opts.Dir))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Syncs++
	if err != nil {
		err = fmt.Errorf("spool: fsync: %w", err)
		s.st.SyncErrors++
		s.st.LastSyncError = err
		s.syncErr = err
		s.log.Error("spool: fsync failed; appends fail until the spool is reopened", "dir", s.opts.Dir, "err", err)
	}
	return err
}

// syncPath fsyncs a file by name; a file already removed needs nothing.
func syncPath(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
