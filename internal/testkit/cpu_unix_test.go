//go:build unix

package testkit

import (
	"testing"
	"time"
)

func TestProcessCPUGrowsWithWork(t *testing.T) {
	start := ProcessCPU()
	if start <= 0 {
		t.Fatalf("ProcessCPU() = %v before any work; want the process's time so far", start)
	}
	x := 0
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
		for i := range 10000 {
			x ^= i * i
		}
	}
	_ = x
	if got := ProcessCPU() - start; got < 10*time.Millisecond {
		t.Errorf("50 ms of busy work counted %v of CPU", got)
	}
}
