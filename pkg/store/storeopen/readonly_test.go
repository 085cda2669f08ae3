package storeopen_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

func TestOpenReadOnlyCreatesNothingAndWritesNothing(t *testing.T) {
	ctx := context.Background()
	t.Run("a missing SQLite file is an error and is not created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "fresh")
		path := filepath.Join(dir, "ca.db")
		if s, err := storeopen.OpenReadOnly(ctx, "sqlite:"+path); err == nil || !errors.Is(err, os.ErrNotExist) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("OpenReadOnly of a missing file: %v, want os.ErrNotExist", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("OpenReadOnly created %s (%v)", dir, err)
		}
	})
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			rw, err := storeopen.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rw.AppendAudit(ctx, store.AuditEntry{Time: time.Now(), Actor: "a", Action: "init", Decision: "allow"}); err != nil {
				t.Fatal(err)
			}
			rw.Close()

			ro, err := storeopen.OpenReadOnly(ctx, url)
			if err != nil {
				t.Fatalf("OpenReadOnly: %v", err)
			}
			if list, err := ro.AuditEntries(ctx, 0, 10); err != nil || len(list) != 1 {
				t.Errorf("reading through the read-only store: %d entries, %v", len(list), err)
			}
			if _, err := ro.AppendAudit(ctx, store.AuditEntry{Time: time.Now(), Actor: "a", Action: "init", Decision: "allow"}); err == nil {
				t.Error("the read-only store appended an audit entry")
			}
			if _, err := ro.InsertAuditCheckpoint(ctx, store.AuditCheckpoint{Time: time.Now(), Kind: store.CheckpointPeriodic, KeyID: "k", Signature: []byte{1}}); err == nil {
				t.Error("the read-only store inserted a checkpoint")
			}
			ro.Close()

			if err := storeopen.Migrate(ctx, url, "down"); err != nil {
				t.Fatal(err)
			}
			if s, err := storeopen.OpenReadOnly(ctx, url); !errors.Is(err, store.ErrSchemaMismatch) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("OpenReadOnly of an older schema: %v, want ErrSchemaMismatch", err)
			}
		})
	}
}
