package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
)

// BuildCA builds the real `ca` binary from the package at pkgDir (relative to
// the calling test's directory) into a fresh temp dir, for TestMain of the
// end-to-end tests and drills. cleanup removes the directory.
func BuildCA(pkgDir string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "wca-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "ca")
	build := exec.Command("go", "build", "-o", bin, pkgDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building ca: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := caserve.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// ChildEnv is this process's environment without any CA_* variable, plus
// vars, so a child `ca` sees only the configuration the test gives it.
func ChildEnv(vars map[string]string) []string { return caserve.Env(vars) }

// LockedBuffer collects a child process's output while it runs; safe for
// concurrent Write and String.
type LockedBuffer = caserve.LockedBuffer

// ServeCA starts `ca serve` as o says (caserve.Start) and waits until it is
// ready, failing t if it exits first or is not ready in time. At t's cleanup
// it kills the process if it still runs, and logs its stderr if t failed.
func ServeCA(t testing.TB, o caserve.Options) *caserve.Process {
	t.Helper()
	p, err := caserve.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() && p.StderrBuffer() != nil {
			t.Logf("ca serve stderr:\n%s", p.Stderr())
		}
	})
	return p
}
