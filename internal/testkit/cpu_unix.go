//go:build unix

package testkit

import (
	"syscall"
	"time"
)

// ProcessCPU is the user plus system CPU time this process has used so far
// (every goroutine: a store's committer, the garbage collector). Benchmarks
// report CPU per operation with it (issue 20): on a shared machine wall time
// is noise, and an fsync's wait is not work.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
