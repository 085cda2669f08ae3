package sqlite_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
)

// A token mark is answered while the committer is busy (issue 20: it used
// to wait for the group in progress), a second use is refused at once, and
// the mark reaches the disk with the next group, before the certificate
// recorded after it.
func TestATokenMarkIsAnsweredWhileTheCommitterIsBusy(t *testing.T) {
	s, path := groupStoreAt(t)
	ctx := context.Background()
	release := s.HoldCommitterForTest(ctx)
	answered := make(chan error, 1)
	go func() { answered <- s.MarkTokenUsed(ctx, "iss|busy", gt0.Add(time.Hour), gt0) }()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("MarkTokenUsed = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MarkTokenUsed waited for the busy committer")
	}
	if err := s.MarkTokenUsed(ctx, "iss|busy", gt0.Add(time.Hour), gt0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second use while the first is not yet written = %v; want ErrConflict", err)
	}
	if on, err := sqlite.TokenRecordedForTest(ctx, path, "iss|busy"); err != nil || on {
		t.Fatalf("the mark is on disk while the committer is held (%v, %v): the test holds nothing", on, err)
	}
	leaf := groupLeaf("root")
	recorded := make(chan error, 1)
	go func() { _, err := s.RecordIssuance(ctx, leaf.Cert, leaf.Entry); recorded <- err }()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	// The certificate is committed, so its token's mark is too.
	if on, err := sqlite.TokenRecordedForTest(ctx, path, "iss|busy"); err != nil || !on {
		t.Fatalf("certificate committed, its token's mark on disk = %v, %v; want true", on, err)
	}
	if err := s.MarkTokenUsed(ctx, "iss|busy", gt0.Add(time.Hour), gt0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a use after the mark committed = %v; want ErrConflict", err)
	}
}

// Many uses of one token racing through every stage (reserved, read,
// queued, committed): exactly one is answered "not used", round after round.
func TestExactlyOneUseOfATokenWinsWhateverStageTheOthersMeet(t *testing.T) {
	s := groupStore(t)
	ctx := context.Background()
	for round := range 20 {
		key := "iss|race-" + string(rune('a'+round))
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.MarkTokenUsed(ctx, key, gt0.Add(time.Hour), gt0)
				if i%4 == 0 { // and certificates committing meanwhile
					w := groupLeaf("root")
					if _, err := s.RecordIssuance(ctx, w.Cert, w.Entry); err != nil {
						t.Error(err)
					}
				}
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("use %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d uses answered not used; want 1", round, wins)
		}
	}
}

// A mark no certificate follows (the enrollment was denied after it) is
// written on its own soon after, and Close writes whatever is still queued.
func TestAMarkNothingFollowsIsWrittenOnItsOwnAndAtClose(t *testing.T) {
	s, path := groupStoreAt(t)
	ctx := context.Background()
	if err := s.MarkTokenUsed(ctx, "iss|denied", gt0.Add(time.Hour), gt0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		on, err := sqlite.TokenRecordedForTest(ctx, path, "iss|denied")
		if err != nil {
			t.Fatal(err)
		}
		if on {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a mark without a following write never reached the disk")
		}
	}
	if err := s.MarkTokenUsed(ctx, "iss|closing", gt0.Add(time.Hour), gt0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if on, err := sqlite.TokenRecordedForTest(ctx, path, "iss|closing"); err != nil || !on {
		t.Fatalf("a mark queued at Close on disk = %v, %v; want true", on, err)
	}
	if err := s.MarkTokenUsed(ctx, "iss|after", gt0.Add(time.Hour), gt0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("MarkTokenUsed after Close = %v; want ErrUnavailable", err)
	}
}
