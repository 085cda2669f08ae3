package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names a file `ca serve` writes a CPU profile of its whole run
// to (go tool pprof reads it). It is for performance rounds (docs/performance.md):
// an environment variable rather than a flag or an HTTP endpoint, so no
// client and no configuration file can turn it on.
const cpuProfileEnv = "CA_CPU_PROFILE"

// startCPUProfile starts the profile named by CA_CPU_PROFILE, if any, and
// returns the function that stops it and closes the file.
func startCPUProfile(getenv env, log *slog.Logger) (stop func(), err error) {
	path, _ := getenv(cpuProfileEnv)
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	log.Info("writing a CPU profile", "path", path)
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("closing the CPU profile", "path", path, "err", err)
		}
	}, nil
}
