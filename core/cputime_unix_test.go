//go:build unix

package core

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used, user and system, in all its threads: the
// garbage collector's work included, and the time other programs take on a busy machine excluded.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
