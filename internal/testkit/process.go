package testkit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ChildEnv is this process's environment without any CA_* variable, plus
// vars, so a child `ca` sees only the configuration the test gives it.
func ChildEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CA_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// LockedBuffer collects a child process's output while it runs; safe for
// concurrent Write and String.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
