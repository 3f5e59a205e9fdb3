//go:build !unix

package core

import "time"

// processCPU is not measured on this system; benchmarks then report no CPU time.
func processCPU() time.Duration { return 0 }
