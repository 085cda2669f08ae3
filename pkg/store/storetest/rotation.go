package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunRotation runs the conformance tests of RecordRotation and
// AbandonIssuers. open is as for Run.
func RunRotation(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"a rotation is recorded whole with its audit entry", testRotationRecorded},
		{"a rotation while one is prepared records nothing", testRotationWhilePrepared},
		{"a rotation with a taken ID records nothing", testRotationIDTaken},
		{"a malformed rotation is refused", testRotationInvalid},
		{"of concurrent rotations exactly one is recorded", testRotationConcurrent},
		{"abandoning retires prepared issuers with its audit entry", testAbandon},
		{"abandoning an issuer that is not prepared changes nothing", testAbandonNotPrepared},
	}
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

// generation is the issuers of one root rotation under the active root-1:
// root-g, int-g under it, xc-g under root-1.
func generation(g string, at time.Time) []store.Issuer {
	root := rootIssuer("root-" + g)
	inter := rootIssuer("int-" + g)
	inter.Kind, inter.ParentID = store.KindIntermediate, "root-"+g
	xc := rootIssuer("xc-" + g)
	xc.Kind, xc.ParentID, xc.KeyURI = store.KindIntermediate, "root-1", ""
	out := []store.Issuer{root, inter, xc}
	for i := range out {
		out[i].State, out[i].CreatedAt, out[i].UpdatedAt = store.IssuerPrepared, at, at
	}
	return out
}

func issuerIDs(t *testing.T, s store.Store) map[string]store.IssuerState {
	t.Helper()
	list, err := s.ListIssuers(ctxT(t))
	if err != nil {
		t.Fatalf("ListIssuers: %v", err)
	}
	out := map[string]store.IssuerState{}
	for _, is := range list {
		out[is.ID] = is.State
	}
	return out
}

func auditCount(t *testing.T, s store.Store) int {
	t.Helper()
	list, err := s.AuditEntries(ctxT(t), 0, 1000)
	if err != nil {
		t.Fatalf("AuditEntries: %v", err)
	}
	return len(list)
}

func testRotationRecorded(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	gen := generation("2", t0.Add(time.Minute))
	e, err := s.RecordRotation(ctx, gen, auditFor("rotate", "int-2", t0.Add(time.Minute)))
	if err != nil {
		t.Fatalf("RecordRotation: %v", err)
	}
	if e.Seq != 1 || e.Action != "rotate" || len(e.Hash) == 0 {
		t.Errorf("audit entry = %+v; want the first, chained", e)
	}
	for _, want := range gen {
		got, err := s.GetIssuer(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetIssuer(%s): %v", want.ID, err)
		}
		if got.State != store.IssuerPrepared || got.ParentID != want.ParentID || got.KeyURI != want.KeyURI {
			t.Errorf("GetIssuer(%s) = %+v; want it as recorded", want.ID, got)
		}
	}
}

func testRotationWhilePrepared(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	if _, err := s.RecordRotation(ctx, generation("2", t0), auditFor("rotate", "int-2", t0)); err != nil {
		t.Fatal(err)
	}
	before := auditCount(t, s)
	_, err := s.RecordRotation(ctx, generation("3", t0), auditFor("rotate", "int-3", t0))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("RecordRotation while int-2 is prepared: %v, want ErrConflict", err)
	}
	ids := issuerIDs(t, s)
	if _, ok := ids["root-3"]; ok || len(ids) != 4 || auditCount(t, s) != before {
		t.Errorf("issuers %v, %d audit entries after the refusal; want nothing recorded", ids, auditCount(t, s))
	}
}

func testRotationIDTaken(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	mustIssuer(t, s, "xc-2") // the last of the three collides
	_, err := s.RecordRotation(ctx, generation("2", t0), auditFor("rotate", "int-2", t0))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("RecordRotation with a taken ID: %v, want ErrConflict", err)
	}
	ids := issuerIDs(t, s)
	if _, ok := ids["root-2"]; ok || len(ids) != 2 || auditCount(t, s) != 0 {
		t.Errorf("issuers %v, %d audit entries; the root and intermediate before the collision must not stay", ids, auditCount(t, s))
	}
}

func testRotationInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	if _, err := s.RecordRotation(ctx, nil, auditFor("rotate", "x", t0)); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("empty rotation: %v, want ErrInvalidQuery", err)
	}
	gen := generation("2", t0)
	gen[1].State = store.IssuerActive
	if _, err := s.RecordRotation(ctx, gen, auditFor("rotate", "x", t0)); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("rotation with an active issuer: %v, want ErrInvalidQuery", err)
	}
	gen = generation("2", t0)
	gen[2].ParentID = "no-such-root"
	if _, err := s.RecordRotation(ctx, gen, auditFor("rotate", "x", t0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotation under an unknown parent: %v, want ErrNotFound", err)
	}
	if ids := issuerIDs(t, s); len(ids) != 1 || auditCount(t, s) != 0 {
		t.Errorf("issuers %v after refused rotations; want only root-1", ids)
	}
}

func testRotationConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Distinct IDs: only the prepared check can stop the others.
			g := string(rune('a' + i))
			_, errs[i] = s.RecordRotation(ctx, generation(g, t0), auditFor("rotate", "int-"+g, t0))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("a losing RecordRotation: %v, want ErrConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent rotations recorded; want exactly one (%v)", won, n, errs)
	}
	if ids := issuerIDs(t, s); len(ids) != 4 || auditCount(t, s) != 1 {
		t.Errorf("issuers %v, %d audit entries; want root-1 and one generation, one entry", ids, auditCount(t, s))
	}
}

func testAbandon(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	if _, err := s.RecordRotation(ctx, generation("2", t0), auditFor("rotate", "int-2", t0)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	e, err := s.AbandonIssuers(ctx, []string{"xc-2", "int-2", "root-2"}, at, auditFor("abandon", "int-2", at))
	if err != nil {
		t.Fatalf("AbandonIssuers: %v", err)
	}
	if e.Seq != 2 || e.Action != "abandon" {
		t.Errorf("audit entry = %+v; want the second, abandon", e)
	}
	for _, id := range []string{"root-2", "int-2", "xc-2"} {
		got, err := s.GetIssuer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != store.IssuerRetired || !got.UpdatedAt.Equal(us(at)) {
			t.Errorf("%s after abandon = %s at %v; want retired at %v", id, got.State, got.UpdatedAt, us(at))
		}
	}
	// Nothing is prepared any more, so the next rotation is recorded.
	if _, err := s.RecordRotation(ctx, generation("3", at), auditFor("rotate", "int-3", at)); err != nil {
		t.Errorf("RecordRotation after abandon: %v", err)
	}
}

func testAbandonNotPrepared(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root-1")
	if _, err := s.RecordRotation(ctx, generation("2", t0), auditFor("rotate", "int-2", t0)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	_, err := s.AbandonIssuers(ctx, []string{"int-2", "root-1"}, at, auditFor("abandon", "int-2", at))
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("abandoning the active root: %v, want ErrConflict", err)
	}
	_, err = s.AbandonIssuers(ctx, []string{"int-2", "nope"}, at, auditFor("abandon", "int-2", at))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("abandoning an unknown issuer: %v, want ErrNotFound", err)
	}
	if _, err := s.AbandonIssuers(ctx, nil, at, auditFor("abandon", "", at)); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("abandoning nothing: %v, want ErrInvalidQuery", err)
	}
	ids := issuerIDs(t, s)
	if ids["int-2"] != store.IssuerPrepared || ids["root-1"] != store.IssuerActive || auditCount(t, s) != 1 {
		t.Errorf("issuers %v, %d audit entries after refused abandons; want nothing changed", ids, auditCount(t, s))
	}
}
