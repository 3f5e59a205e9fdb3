//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// lockDir creates dir/LOCK exclusively. Without flock the lock outlives a crashed process: the
// LOCK file must then be removed by hand.
func lockDir(dir string) (unlock func() error, err error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: %s (remove %s if no process uses it)", ErrLocked, dir, path)
		}
		return nil, fmt.Errorf("spool: create lock file: %w", err)
	}
	f.Close()
	return func() error { return os.Remove(path) }, nil
}
