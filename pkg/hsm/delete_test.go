package hsm_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// keyLister is what both stores offer to list their keys.
type keyLister interface {
	KeyLabels(ctx context.Context) ([]string, error)
}

func TestDeleteRemovesTheKeyAndOnlyIt(t *testing.T) {
	for name, b := range map[string]backend{"software": softwareBackend(), "SoftHSM": softhsmBackend()} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			reopen := b.storage(t)
			s := reopen(t)
			keep, err := s.Generate(ctx, "keep", hsm.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			gone, err := s.Generate(ctx, "gone", hsm.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, gone.URI); err != nil {
				t.Fatalf("Delete(%s): %v", gone.URI, err)
			}
			if _, err := s.Find(ctx, gone.URI); !errors.Is(err, hsm.ErrKeyNotFound) {
				t.Errorf("Find after Delete: %v, want ErrKeyNotFound", err)
			}
			if err := s.Delete(ctx, gone.URI); !errors.Is(err, hsm.ErrKeyNotFound) {
				t.Errorf("second Delete: %v, want ErrKeyNotFound", err)
			}
			if _, err := s.Find(ctx, keep.URI); err != nil {
				t.Errorf("the other key is gone too: %v", err)
			}
			// After a restart the deleted key stays deleted.
			_ = s.Close()
			s = reopen(t)
			if _, err := s.Find(ctx, gone.URI); !errors.Is(err, hsm.ErrKeyNotFound) {
				t.Errorf("Find after restart: %v, want ErrKeyNotFound", err)
			}
			labels, err := s.(keyLister).KeyLabels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(labels, "keep") || slices.Contains(labels, "gone") {
				t.Errorf("KeyLabels = %v; want keep and not gone", labels)
			}
			// A name can be generated again once deleted.
			if _, err := s.Generate(ctx, "gone", hsm.ECDSAP256); err != nil {
				t.Errorf("Generate after Delete: %v", err)
			}
		})
	}
}
