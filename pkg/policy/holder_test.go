package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestReloadKeepsTheOldPolicyOnABadFile(t *testing.T) {
	good, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(first)

	// A condition that no longer compiles.
	bad := bytes.Replace(good, []byte(`claims.ref == "refs/heads/main"`), []byte(`claims.ref ==`), 1)
	if bytes.Equal(bad, good) {
		t.Fatal("test fixture changed: could not break the condition")
	}
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Reload(path); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Reload(bad) = %v, want ErrInvalid", err)
	}
	if h.Load() != first {
		t.Fatal("a refused reload replaced the policy")
	}

	if _, _, err := h.Reload(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || h.Load() != first {
		t.Fatalf("Reload(missing) = %v; want an error and the old policy kept", err)
	}

	changed := append(append([]byte(nil), good...), []byte("# changed\n")...)
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	old, cur, err := h.Reload(path)
	if err != nil {
		t.Fatalf("Reload(good) = %v", err)
	}
	if old != first || h.Load() != cur || cur.Version() == first.Version() {
		t.Error("a good reload did not install the new policy")
	}
}

func TestHolderIsSafeForConcurrentUse(t *testing.T) {
	p := mustLoad(t)
	h := NewHolder(p)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				_ = h.Load().Version()
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				h.Swap(p)
			}
		}()
	}
	wg.Wait()
}
