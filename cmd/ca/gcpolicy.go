package main

import (
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/config"
)

// The Go runtime's collector settings for `ca serve` (issue 20). At Go's
// default target (GOGC=100) the collector was about 8% of the server's CPU
// under enrollment load: every enrollment allocates a few hundred short-lived
// objects (token and CSR parsing, ASN.1, the lint, JSON) over a small live
// heap, so the heap reached its target many times a second. A target of 400
// lets it grow to five times the live heap between collections: measured on
// the 2-core VM, alternated runs, 10% less server CPU per enrollment and 10%
// more enrollments/s at 16 and 64 clients, for about 25 to 45 MB more RSS.
//
// A larger target also lets a large live heap (a big CRL being built, say)
// grow further before a collection, so a soft memory limit bounds it where
// one is known: three quarters of the cgroup's limit (a container's memory
// limit), leaving room for what the runtime does not count (SQLite's page
// cache is Go memory here, but goroutine stacks and the OS's buffers are not
// all) before the kernel's OOM killer acts. Near the limit the collector runs
// as often as it must, whatever the target.
//
// GOGC and GOMEMLIMIT in the environment win, as Go documents them: the
// runtime has already applied them, and this leaves them alone.

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// gcSettings is what applyGCPolicy decided, for the start-up log line.
type gcSettings struct {
	percent       int
	percentSource string // "config", "GOGC"
	limit         int64  // bytes; math.MaxInt64 when none
	limitSource   string // "config", "cgroup", "GOMEMLIMIT", "none"
}

// decideGC computes the settings from the configuration, the environment and
// the cgroup limit (0 when none is known). It does not touch the runtime.
func decideGC(s config.Server, getenv env, cgroupLimit int64) gcSettings {
	g := gcSettings{percent: s.GCPercent, percentSource: "config", limit: math.MaxInt64, limitSource: "none"}
	if v, ok := getenv("GOGC"); ok && v != "" {
		g.percent, g.percentSource = -1, "GOGC"
	}
	switch v, ok := getenv("GOMEMLIMIT"); {
	case ok && v != "":
		g.limit, g.limitSource = -1, "GOMEMLIMIT"
	case s.MemoryLimitMiB > 0:
		g.limit, g.limitSource = s.MemoryLimitMiB<<20, "config"
	case cgroupLimit > 0:
		g.limit, g.limitSource = cgroupLimit/4*3, "cgroup"
	}
	return g
}

// applyGCPolicy sets the collector's target and soft memory limit for `ca
// serve` (see above) and logs what it set and where each value came from.
func applyGCPolicy(s config.Server, getenv env, log *slog.Logger) gcSettings {
	self, _ := os.ReadFile("/proc/self/cgroup")
	g := decideGC(s, getenv, cgroupMemoryLimit(cgroupRoot, string(self)))
	if g.percentSource == "config" {
		debug.SetGCPercent(g.percent)
	} else {
		g.percent = debug.SetGCPercent(-1) // read it back: the runtime parsed GOGC
		debug.SetGCPercent(g.percent)
	}
	if g.limitSource == "config" || g.limitSource == "cgroup" {
		debug.SetMemoryLimit(g.limit)
	} else {
		g.limit = debug.SetMemoryLimit(-1) // a negative value only reads it
	}
	limit := "none"
	if g.limit != math.MaxInt64 {
		limit = strconv.FormatInt(g.limit>>20, 10) + " MiB"
	}
	log.Info("garbage collector", "gc_percent", g.percent, "gc_percent_from", g.percentSource,
		"memory_limit", limit, "memory_limit_from", g.limitSource)
	return g
}

// cgroupMemoryLimit is the memory limit of the process's cgroup in bytes, or
// 0 when there is none or it cannot be read. selfCgroup is the content of
// /proc/self/cgroup: cgroup v2's "0::/path" line names root/path/memory.max
// ("max" is none), a cgroup v1 line with the memory controller names
// root/memory/path/memory.limit_in_bytes (a value near 2^63 is none).
// Inside a container with its own cgroup namespace the path is "/", so the
// files at root are the container's. Only the process's own cgroup is read,
// not its ancestors': a limit set on a parent alone is not seen.
func cgroupMemoryLimit(root, selfCgroup string) int64 {
	var candidates []string
	for _, line := range strings.Split(selfCgroup, "\n") {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates, filepath.Join(root, parts[2], "memory.max"))
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			candidates = append(candidates, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	// A container without its own cgroup namespace may list its host path
	// while the mount at root is its own cgroup: root's files come last.
	candidates = append(candidates, filepath.Join(root, "memory.max"), filepath.Join(root, "memory", "memory.limit_in_bytes"))
	for _, path := range candidates {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // not mounted here, or not readable: no limit known from it
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		if v == "max" || err != nil || n <= 0 || n >= math.MaxInt64/2 {
			continue
		}
		return n
	}
	return 0
}
