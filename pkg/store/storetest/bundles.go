package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunBundles runs the conformance tests of the trust-bundle methods
// (bundle versions and MaxLeafNotAfter). open is as for Run.
func RunBundles(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"bundle versions round-trip byte for byte with their audit entry", testBundleRoundTrip},
		{"an empty store has no bundle", testBundleEmpty},
		{"appending after a stale sequence is a conflict and records nothing", testBundleStale},
		{"rollbacks must name a stored version", testBundleRollbackRef},
		{"bundle versions list newest first in pages", testBundleList},
		{"bundle sequences stay contiguous under concurrent publishers", testBundleConcurrent},
		{"latest leaf expiry covers every leaf of one issuer", testMaxLeafNotAfter},
	}
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

func bundleVersion(content string, at time.Time) store.BundleVersion {
	return store.BundleVersion{
		CreatedAt:    at,
		Content:      []byte(content),
		Reason:       "issuers changed",
		Actor:        "system",
		SourceDigest: "sha256:abc",
	}
}

func testBundleRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	in := bundleVersion(`{"x509_authorities": ["AQID"],  "jwt_authorities":[]}`, t0)
	got, e, err := s.AppendBundleVersion(ctx, 0, in, auditFor("publish", "bundle", t0))
	if err != nil {
		t.Fatalf("AppendBundleVersion: %v", err)
	}
	want := in
	want.Sequence = 1
	want.CreatedAt = us(t0)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("returned version\n got %+v\nwant %+v", got, want)
	}
	if e.Seq != 1 || e.Action != "publish" || !bytesEq(store.AuditHash(nil, e), e.Hash) {
		t.Errorf("audit entry = %+v", e)
	}
	for name, read := range map[string]func() (store.BundleVersion, error){
		"LatestBundleVersion": func() (store.BundleVersion, error) { return s.LatestBundleVersion(ctx) },
		"GetBundleVersion(1)": func() (store.BundleVersion, error) { return s.GetBundleVersion(ctx, 1) },
	} {
		v, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(v, want) {
			t.Errorf("%s\n got %+v\nwant %+v", name, v, want)
		}
	}
	rb := bundleVersion(string(in.Content), t0.Add(time.Hour))
	rb.Reason, rb.Actor, rb.RolledBackFrom = "rollback", "admin@example.org", 1
	got, _, err = s.AppendBundleVersion(ctx, 1, rb, auditFor("rollback", "bundle", t0.Add(time.Hour)))
	if err != nil {
		t.Fatalf("AppendBundleVersion(rollback): %v", err)
	}
	if got.Sequence != 2 || got.RolledBackFrom != 1 {
		t.Errorf("rollback version = %+v", got)
	}
	if v, err := s.GetBundleVersion(ctx, 2); err != nil || v.RolledBackFrom != 1 || v.Actor != "admin@example.org" {
		t.Errorf("GetBundleVersion(2) = %+v, %v", v, err)
	}
	if n, err := s.LatestBundleSequence(ctx); err != nil || n != 2 {
		t.Errorf("LatestBundleSequence = %d, %v; want 2", n, err)
	}
	verifyChain(t, allAudit(t, s))
}

func testBundleEmpty(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.LatestBundleVersion(ctx)
	wantErr(t, "LatestBundleVersion on an empty store", err, store.ErrNotFound)
	_, err = s.GetBundleVersion(ctx, 1)
	wantErr(t, "GetBundleVersion(1) on an empty store", err, store.ErrNotFound)
	if n, err := s.LatestBundleSequence(ctx); err != nil || n != 0 {
		t.Errorf("LatestBundleSequence = %d, %v; want 0", n, err)
	}
	if list, err := s.ListBundleVersions(ctx, 0, 0); err != nil || len(list) != 0 {
		t.Errorf("ListBundleVersions = %v, %v; want none", list, err)
	}
}

func testBundleStale(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, _, err := s.AppendBundleVersion(ctx, 0, bundleVersion(`{"a":1}`, t0), auditFor("publish", "bundle", t0)); err != nil {
		t.Fatal(err)
	}
	for _, prev := range []int64{0, 2, -1} {
		_, _, err := s.AppendBundleVersion(ctx, prev, bundleVersion(`{"a":2}`, t0), auditFor("publish", "bundle", t0))
		wantErr(t, fmt.Sprintf("AppendBundleVersion after stale sequence %d", prev), err, store.ErrConflict)
	}
	if n, _ := s.LatestBundleSequence(ctx); n != 1 {
		t.Errorf("latest sequence %d after refused appends, want 1", n)
	}
	if got := allAudit(t, s); len(got) != 1 {
		t.Errorf("%d audit entries after refused appends, want 1", len(got))
	}
}

func testBundleRollbackRef(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, _, err := s.AppendBundleVersion(ctx, 0, bundleVersion(`{"a":1}`, t0), auditFor("publish", "bundle", t0)); err != nil {
		t.Fatal(err)
	}
	rb := bundleVersion(`{"a":1}`, t0)
	rb.RolledBackFrom = 7
	_, _, err := s.AppendBundleVersion(ctx, 1, rb, auditFor("rollback", "bundle", t0))
	wantErr(t, "rollback from an unknown version", err, store.ErrNotFound)
	if got := allAudit(t, s); len(got) != 1 {
		t.Errorf("%d audit entries after a refused rollback, want 1", len(got))
	}
}

func testBundleList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i := int64(0); i < 5; i++ {
		if _, _, err := s.AppendBundleVersion(ctx, i, bundleVersion(fmt.Sprintf(`{"n":%d}`, i+1), t0.Add(time.Duration(i)*time.Minute)), auditFor("publish", "bundle", t0)); err != nil {
			t.Fatal(err)
		}
	}
	var seen []int64
	before := int64(0)
	for {
		page, err := s.ListBundleVersions(ctx, before, 2)
		if err != nil {
			t.Fatalf("ListBundleVersions(%d, 2): %v", before, err)
		}
		for _, v := range page {
			seen = append(seen, v.Sequence)
			if want := fmt.Sprintf(`{"n":%d}`, v.Sequence); string(v.Content) != want {
				t.Errorf("version %d content %s, want %s", v.Sequence, v.Content, want)
			}
		}
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1].Sequence
	}
	if !reflect.DeepEqual(seen, []int64{5, 4, 3, 2, 1}) {
		t.Errorf("listed sequences %v, want 5..1", seen)
	}
}

func testBundleConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, each = 4, 6
	var mu sync.Mutex
	var all []int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for i := 0; i < each; {
				prev, err := s.LatestBundleSequence(ctx)
				if err != nil {
					t.Errorf("LatestBundleSequence: %v", err)
					return
				}
				v, _, err := s.AppendBundleVersion(ctx, prev, bundleVersion(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i), t0), auditFor("publish", "bundle", t0))
				if errors.Is(err, store.ErrConflict) {
					continue // someone else published after prev: retry
				}
				if err != nil {
					t.Errorf("AppendBundleVersion: %v", err)
					return
				}
				if v.Sequence <= last {
					t.Errorf("one publisher got sequence %d after %d", v.Sequence, last)
				}
				last = v.Sequence
				i++
				mu.Lock()
				all = append(all, v.Sequence)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, n := range all {
		if n != int64(i+1) {
			t.Fatalf("sequences published: %v; want each of 1..%d exactly once", all, workers*each)
		}
	}
	verifyChain(t, allAudit(t, s))
}

func testMaxLeafNotAfter(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	mustIssuer(t, s, "b")
	if got, err := s.MaxLeafNotAfter(ctx, "a"); err != nil || !got.IsZero() {
		t.Fatalf("MaxLeafNotAfter of an issuer without leaves = %v, %v; want zero", got, err)
	}
	short := leaf("a", "spiffe://example.org/x", t0, time.Hour)
	long := leaf("a", "spiffe://example.org/y", t0, 5*time.Hour)
	other := leaf("b", "spiffe://example.org/z", t0, 9*time.Hour)
	for _, c := range []store.Certificate{short, long, other} {
		mustRecord(t, s, c)
	}
	if _, _, err := s.RevokeCertificate(ctx, long.Serial, t0.Add(time.Minute), "superseded", auditFor("revoke", long.Serial, t0)); err != nil {
		t.Fatal(err)
	}
	got, err := s.MaxLeafNotAfter(ctx, "a")
	if err != nil || !got.Equal(us(long.NotAfter)) || got.Location() != time.UTC {
		t.Errorf("MaxLeafNotAfter(a) = %v, %v; want %v in UTC (revoked leaves count)", got, err, us(long.NotAfter))
	}
}
