package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/config"
)

func TestCAProfileEnvWritesACPUProfileOfTheRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serve.cpu.prof")
	stop, err := startCPUProfile(config.MapEnv(map[string]string{cpuProfileEnv: path}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 5_000_000 {
		x ^= i * i
	}
	_ = x
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// runtime/pprof writes a gzip-compressed profile.proto.
	if len(b) < 64 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("the profile is %d bytes and not gzip: % x", len(b), b[:min(len(b), 4)])
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("profile mode %v; want 0600", fi.Mode().Perm())
	}
}

func TestWithoutCAProfileEnvNoProfileIsWritten(t *testing.T) {
	stop, err := startCPUProfile(config.MapEnv(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	// A second profile can start: none was running.
	path := filepath.Join(t.TempDir(), "p")
	stop, err = startCPUProfile(config.MapEnv(map[string]string{cpuProfileEnv: path}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("a profile was left running: %v", err)
	}
	stop()
}
