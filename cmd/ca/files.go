package main

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"

	"github.com/workload-ca/workload-ca/internal/atomicfile"
)

const cryptoSHA256 = crypto.SHA256

// writeFileAtomic replaces path with data: it writes a temporary file in the
// same directory with the final mode (so a private key is never readable by
// others, not even briefly), syncs it, renames it over path and syncs the
// directory. A reader sees either the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := atomicfile.WriteTemp(dir, "."+filepath.Base(path)+".tmp-*", data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
