package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReplaceWritesTheWholeFileWithItsModeAndLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("after Replace the file holds %q (%v); want \"new\"", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v; want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries; want only the file", len(entries))
	}
}

func TestWriteTempLeavesNothingBehindOnFailure(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteTemp(filepath.Join(dir, "missing"), ".tmp-*", []byte("x"), 0o600); err == nil {
		t.Fatal("WriteTemp in a missing directory succeeded")
	}
	name, err := WriteTemp(dir, ".tmp-*", []byte("key"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(name); string(got) != "key" || filepath.Dir(name) != dir {
		t.Errorf("WriteTemp wrote %q at %s", got, name)
	}
}
