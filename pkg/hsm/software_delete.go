package hsm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// Delete removes the key file a softkey:<name> URI names. It fails with
// ErrBadURI for other URIs and ErrKeyNotFound if there is no such key.
// Signers handed out for the key keep their in-memory copy until Close.
func (s *SoftwareStore) Delete(ctx context.Context, uri string) error {
	name, err := parseSoftkeyURI(uri)
	if err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = os.Remove(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hsm: delete %s: %w", uri, ErrKeyNotFound)
	}
	if err != nil {
		return fmt.Errorf("hsm: delete %s: %w", uri, err)
	}
	delete(s.signers, name)
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("hsm: delete %s: %w", uri, err)
	}
	s.log.Info("software key deleted", "key", name)
	return nil
}

// KeyLabels returns the names of the keys in the directory, sorted.
func (s *SoftwareStore) KeyLabels(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("hsm: listing keys: %w", err)
	}
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), keyFileSuffix); ok && !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
