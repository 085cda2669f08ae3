// Package atomicfile exists so that the CA's files that must never be seen
// half-written (policy caches, software keys, workload credentials) are
// written one way: a complete, synced temporary file next to the final one.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteTemp writes data to a new temporary file in dir named by pattern (as
// os.CreateTemp), with mode set before any data is written (so a private key
// is never readable by others, not even briefly), synced and closed, and
// returns its name. The caller moves it into place and removes the name
// afterwards (a no-op once moved). On failure nothing is left behind.
func WriteTemp(dir, pattern string, data []byte, mode os.FileMode) (name string, err error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// Replace replaces path with data through a temporary file in the same
// directory (WriteTemp) renamed over it: a reader sees the old file or the
// new one, never a part.
func Replace(path string, data []byte, mode os.FileMode) error {
	name, err := WriteTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*", data, mode)
	if err != nil {
		return err
	}
	defer os.Remove(name)
	return os.Rename(name, path)
}
