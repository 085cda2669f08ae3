package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// checkpointSuites are the audit checkpoint tests (store/checkpoints.go).
var checkpointSuites = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"the audit head is the last entry, ErrNotFound when empty", testAuditHead},
	{"audit checkpoints round-trip, list in ID order and the latest is by time", testAuditCheckpoints},
	{"concurrent checkpoints are all kept", testAuditCheckpointsConcurrent},
	{"audit checkpoints are append-only in the database", testAuditCheckpointsAppendOnly},
}

func testAuditHead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.AuditHead(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AuditHead of an empty log: %v, want ErrNotFound", err)
	}
	var last store.AuditEntry
	for i := 0; i < 3; i++ {
		var err error
		if last, err = s.AppendAudit(ctx, auditFor("issue", "a1", t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(head, last) {
		t.Errorf("AuditHead = %+v\nwant the last appended %+v", head, last)
	}
}

func checkpointAt(seq int64, at time.Time, kind store.CheckpointKind) store.AuditCheckpoint {
	c := store.AuditCheckpoint{Seq: seq, Time: at, Kind: kind, KeyID: "ab12", Signature: []byte{0x30, 0x01, byte(seq)}}
	if seq > 0 {
		c.Hash = []byte{byte(seq), 2, 3}
	}
	return c
}

func testAuditCheckpoints(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.LatestAuditCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestAuditCheckpoint with none: %v, want ErrNotFound", err)
	}
	if list, err := s.AuditCheckpoints(ctx, 0, 0); err != nil || len(list) != 0 {
		t.Fatalf("AuditCheckpoints with none: %v %v", list, err)
	}
	in := []store.AuditCheckpoint{
		checkpointAt(0, t0, store.CheckpointStartup), // an empty log
		checkpointAt(4, t0.Add(2*time.Minute), store.CheckpointPeriodic),
		// Written later but stamped earlier (another replica's clock).
		checkpointAt(3, t0.Add(time.Minute), store.CheckpointShutdown),
	}
	var stored []store.AuditCheckpoint
	for _, c := range in {
		got, err := s.InsertAuditCheckpoint(ctx, c)
		if err != nil {
			t.Fatalf("InsertAuditCheckpoint: %v", err)
		}
		if len(stored) > 0 && got.ID <= stored[len(stored)-1].ID {
			t.Errorf("ID %d does not increase after %d", got.ID, stored[len(stored)-1].ID)
		}
		want := c
		want.ID, want.Time = got.ID, us(c.Time)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("InsertAuditCheckpoint returned %+v, want %+v", got, want)
		}
		stored = append(stored, got)
	}
	var all []store.AuditCheckpoint
	var after int64
	for {
		page, err := s.AuditCheckpoints(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if !reflect.DeepEqual(all, stored) {
		t.Errorf("AuditCheckpoints read back\n%+v\nwant\n%+v", all, stored)
	}
	latest, err := s.LatestAuditCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(latest, stored[1]) {
		t.Errorf("LatestAuditCheckpoint = %+v, want the latest by time %+v", latest, stored[1])
	}
	tie, err := s.InsertAuditCheckpoint(ctx, checkpointAt(4, t0.Add(2*time.Minute), store.CheckpointPeriodic))
	if err != nil {
		t.Fatal(err)
	}
	if latest, err := s.LatestAuditCheckpoint(ctx); err != nil || latest.ID != tie.ID {
		t.Errorf("on a time tie LatestAuditCheckpoint = %+v %v, want ID %d", latest, err, tie.ID)
	}
}

func testAuditCheckpointsConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := s.InsertAuditCheckpoint(ctx, checkpointAt(int64(i+1), t0, store.CheckpointShutdown))
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent InsertAuditCheckpoint: %v", err)
		}
	}
	list, err := s.AuditCheckpoints(ctx, 0, 100)
	if err != nil || len(list) != n {
		t.Fatalf("%d checkpoints kept (%v), want %d", len(list), err, n)
	}
	seen := map[int64]bool{}
	for _, c := range list {
		if seen[c.ID] {
			t.Errorf("ID %d given twice", c.ID)
		}
		seen[c.ID] = true
	}
}

func testAuditCheckpointsAppendOnly(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	raw, ok := s.(RawExecer)
	if !ok {
		t.Fatalf("%T does not implement storetest.RawExecer, so append-only cannot be checked", s)
	}
	for i := int64(1); i <= 2; i++ {
		if _, err := s.InsertAuditCheckpoint(ctx, checkpointAt(i, t0, store.CheckpointPeriodic)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		"UPDATE audit_checkpoints SET seq = 9 WHERE seq = 2",
		"DELETE FROM audit_checkpoints WHERE seq = 2",
		"DELETE FROM audit_checkpoints",
	} {
		if err := raw.ExecRaw(ctx, q); err == nil {
			t.Errorf("%q succeeded on the audit checkpoints", q)
		}
	}
	list, err := s.AuditCheckpoints(ctx, 0, 0)
	if err != nil || len(list) != 2 || list[1].Seq != 2 {
		t.Fatalf("checkpoints after refused tampering: %+v %v", list, err)
	}
}
