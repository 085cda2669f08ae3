package main

import (
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/config"
)

func TestGCPolicyTakesTheConfigurationTheEnvironmentAndTheCgroup(t *testing.T) {
	const gib = int64(1) << 30
	def := config.Server{GCPercent: config.DefaultGCPercent}
	tests := []struct {
		name        string
		s           config.Server
		env         map[string]string
		cgroup      int64
		wantPercent int
		percentFrom string
		wantLimit   int64
		limitFrom   string
	}{
		{"the default outside a cgroup limit", def, nil, 0, 400, "config", math.MaxInt64, "none"},
		{"three quarters of a container's limit", def, nil, 2 * gib, 400, "config", 3 * gib / 2, "cgroup"},
		{"the configured limit wins over the cgroup's", config.Server{GCPercent: 200, MemoryLimitMiB: 512}, nil, 2 * gib, 200, "config", 512 << 20, "config"},
		{"GOGC and GOMEMLIMIT win over everything", config.Server{GCPercent: 200, MemoryLimitMiB: 512},
			map[string]string{"GOGC": "150", "GOMEMLIMIT": "1GiB"}, 2 * gib, -1, "GOGC", -1, "GOMEMLIMIT"},
		{"an empty GOGC is not set", def, map[string]string{"GOGC": ""}, 0, 400, "config", math.MaxInt64, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := decideGC(tt.s, config.MapEnv(tt.env), tt.cgroup)
			if g.percent != tt.wantPercent || g.percentSource != tt.percentFrom || g.limit != tt.wantLimit || g.limitSource != tt.limitFrom {
				t.Errorf("got %+v; want percent %d from %s, limit %d from %s", g, tt.wantPercent, tt.percentFrom, tt.wantLimit, tt.limitFrom)
			}
		})
	}
}

func TestCgroupMemoryLimitReadsTheProcessOwnCgroup(t *testing.T) {
	root := t.TempDir()
	write := func(rel, v string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ctr/memory.max", "536870912")
	write("unlimited/memory.max", "max")
	write("memory/v1ctr/memory.limit_in_bytes", "268435456")
	write("memory/memory.limit_in_bytes", "9223372036854771712")
	tests := []struct {
		name, self string
		want       int64
	}{
		{"cgroup v2", "0::/ctr\n", 512 << 20},
		{"cgroup v2 without a limit", "0::/unlimited\n", 0},
		{"cgroup v1", "4:memory:/v1ctr\n3:cpu,cpuacct:/v1ctr\n", 256 << 20},
		{"cgroup v1, memory among other controllers", "4:cpuacct,memory:/v1ctr\n", 256 << 20},
		{"a path not mounted here falls back to the root's files (no limit there)", "4:memory:/elsewhere\n", 0},
		{"nothing readable", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cgroupMemoryLimit(root, tt.self); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
	write("memory.max", "1073741824")
	if got := cgroupMemoryLimit(root, "0::/\n"); got != 1<<30 {
		t.Errorf("a container's own namespace (path /): got %d, want the root's 1 GiB", got)
	}
}

func TestApplyGCPolicySetsTheRuntime(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })

	g := applyGCPolicy(config.Server{GCPercent: 250, MemoryLimitMiB: 300}, config.MapEnv(nil), slog.New(slog.DiscardHandler))
	if got := debug.SetGCPercent(-1); got != 250 {
		t.Errorf("GC percent %d, want 250", got)
	}
	debug.SetGCPercent(250)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("memory limit %d, want %d", got, 300<<20)
	}
	if g.percent != 250 || g.limit != 300<<20 {
		t.Errorf("reported %+v", g)
	}

	// With GOGC and GOMEMLIMIT set, the runtime's values are left and reported.
	debug.SetGCPercent(120)
	debug.SetMemoryLimit(700 << 20)
	g = applyGCPolicy(config.Server{GCPercent: 250, MemoryLimitMiB: 300},
		config.MapEnv(map[string]string{"GOGC": "120", "GOMEMLIMIT": "700MiB"}), slog.New(slog.DiscardHandler))
	if got := debug.SetGCPercent(-1); got != 120 {
		t.Errorf("GC percent %d, want the environment's 120", got)
	}
	debug.SetGCPercent(120)
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Errorf("memory limit %d, want the environment's", got)
	}
	if g.percent != 120 || g.percentSource != "GOGC" || g.limit != 700<<20 || g.limitSource != "GOMEMLIMIT" {
		t.Errorf("reported %+v", g)
	}
}
