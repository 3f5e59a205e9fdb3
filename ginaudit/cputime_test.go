//go:build unix

package ginaudit_test

import "syscall"

// processCPU returns the CPU time (user and system) the process has used, in nanoseconds. Unlike
// wall time it does not grow while the process waits for a core on a shared machine.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
