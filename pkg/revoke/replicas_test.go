package revoke

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// leaderWatch counts how many holders of publisher leadership exist at once
// across every store wrapped with the same counter. It counts up after the
// lock is taken and down before it is released, so it never over-counts.
type leaderWatch struct {
	store.Store
	active, maxSeen *atomic.Int64
}

func (w leaderWatch) TryLeadership(ctx context.Context, name string) (func(), bool, error) {
	release, ok, err := w.Store.TryLeadership(ctx, name)
	if !ok || err != nil {
		return release, ok, err
	}
	n := w.active.Add(1)
	for {
		m := w.maxSeen.Load()
		if n <= m || w.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { w.active.Add(-1); release() }, true, nil
}

func (w leaderWatch) TryLease(ctx context.Context, name string) (context.Context, func(), bool, error) {
	lease, release, ok, err := w.Store.TryLease(ctx, name)
	if !ok || err != nil {
		return lease, release, ok, err
	}
	n := w.active.Add(1)
	for {
		m := w.maxSeen.Load()
		if n <= m || w.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	return lease, func() { w.active.Add(-1); release() }, true, nil
}

// replicas are two "ca serve" processes on one Postgres database and one
// key directory (standing in for one HSM).
type replicas struct {
	f       *fixture
	url     string
	a, b    store.Store
	pa, pb  *Publisher
	active  atomic.Int64
	maxSeen atomic.Int64
}

func newReplicas(t *testing.T) *replicas {
	url := testkit.PostgresURL(t)
	open := func() store.Store {
		s, err := storeopen.Open(context.Background(), url)
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	dir := t.TempDir()
	keys := func() *hsm.SoftwareStore {
		ks, err := hsm.OpenSoftware(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ks.Close() })
		return ks
	}
	r := &replicas{url: url, a: open(), b: open()}
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	r.f = newFixtureOn(t, keys(), r.a, clk, shortConfig())
	mk := func(st store.Store) *Publisher {
		p, err := NewPublisher(Deps{Store: leaderWatch{st, &r.active, &r.maxSeen}, Keys: keys(), Clock: clk}, shortConfig())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	r.pa, r.pb = mk(r.a), mk(r.b)
	return r
}

func TestTwoReplicasPublishStrictlyIncreasingCRLsWithOneLeader(t *testing.T) {
	r := newReplicas(t)
	f := r.f
	rv := f.revoker(nil)
	var serials []string
	for i := range 12 {
		serials = append(serials, f.leaf("r"+string(rune('a'+i)), 2*time.Hour).Serial)
	}

	var mu sync.Mutex
	published := make([][]int64, 2) // per replica, in publish order
	var wg sync.WaitGroup
	for i, p := range []*Publisher{r.pa, r.pb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				rep, err := p.RefreshOnce(f.ctx)
				if err != nil {
					t.Errorf("replica %d: RefreshOnce: %v", i, err)
					return
				}
				mu.Lock()
				for _, c := range rep.CRLs {
					published[i] = append(published[i], c.Number)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, s := range serials {
			if _, _, err := rv.Revoke(f.ctx, s, "keyCompromise", "op", "req"); err != nil {
				t.Errorf("Revoke: %v", err)
			}
			time.Sleep(5 * time.Millisecond) // spread revocations over the ticks; nothing waits on it
		}
	}()
	wg.Wait()
	// One more tick picks up a revocation that landed after the last one.
	if _, err := r.pa.RefreshOnce(f.ctx); err != nil {
		t.Fatal(err)
	}

	if m := r.maxSeen.Load(); m != 1 {
		t.Errorf("at most %d replicas held leadership at once, want exactly 1", m)
	}
	var all []int64
	for i, nums := range published {
		if !slices.IsSorted(nums) || len(slices.Compact(slices.Clone(nums))) != len(nums) {
			t.Errorf("replica %d published CRL numbers %v, not strictly increasing", i, nums)
		}
		all = append(all, nums...)
	}
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Errorf("a CRL number was published twice: %v", all)
	}
	stored, err := r.b.GetCRL(f.ctx, f.interID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Number < all[len(all)-1] || stored.Entries != len(serials) {
		t.Errorf("stored CRL %d with %d entries; want the highest number (%d or later) with all %d revocations", stored.Number, stored.Entries, all[len(all)-1], len(serials))
	}
	t.Logf("published %d CRLs: replica A %v, replica B %v", len(all), published[0], published[1])
}

func TestLeadershipFailsOverWhenTheLeaderReleasesOrDies(t *testing.T) {
	r := newReplicas(t)
	f := r.f
	ctx := f.ctx

	// Replica A is mid-tick (holds leadership): B does nothing.
	release, ok, err := r.a.TryLeadership(ctx, leadershipName)
	if err != nil || !ok {
		t.Fatalf("A TryLeadership = %v, %v", ok, err)
	}
	rep, err := r.pb.RefreshOnce(ctx)
	if err != nil || rep.Leader || len(rep.CRLs) != 0 {
		t.Fatalf("B while A leads = %+v, %v; want not leader, nothing published", rep, err)
	}
	release()
	rep, err = r.pb.RefreshOnce(ctx)
	if err != nil || !rep.Leader || len(rep.CRLs) != 1 {
		t.Fatalf("B after A released = %+v, %v; want leader and a CRL", rep, err)
	}

	// A leads again and its database session dies (crash, network cut):
	// Postgres drops the session lock and B takes over on its next tick.
	release, ok, err = r.a.TryLeadership(ctx, leadershipName)
	if err != nil || !ok {
		t.Fatalf("A TryLeadership again = %v, %v", ok, err)
	}
	if rep, _ := r.pb.RefreshOnce(ctx); rep.Leader {
		t.Fatal("B led while A held the lock")
	}
	admin, err := pgx.Connect(ctx, r.url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	err = admin.QueryRow(ctx, `
		SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 2 AND classid::bigint = $1`,
		int64(postgres.LeadershipLockClass)).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating the leader's session: %d killed, %v", killed, err)
	}
	// Termination is asynchronous: poll instead of sleeping a fixed time.
	testkit.Eventually(t, 30*time.Second, "B leader after A's session died", func() error {
		rep2, err := r.pb.RefreshOnce(ctx)
		if err == nil && !rep2.Leader {
			err = errors.New("B is not the leader")
		}
		return err
	})
	release() // the dead connection: must not panic or hang
	again, ok, err := r.a.TryLeadership(ctx, leadershipName)
	if err != nil || !ok {
		t.Fatalf("A after failover and release = %v, %v; want the lock free again", ok, err)
	}
	_ = again // left held on purpose: closing the store must release it, not hang
}

// Even without the leader lock (a leader whose session died mid-tick while
// another took over), CRL numbers stay distinct and the stored CRL only
// moves forward: numbers come from the database and PutCRL is conditional.
func TestConcurrentRegenerationWithoutTheLockNeverGoesBackwards(t *testing.T) {
	r := newReplicas(t)
	f := r.f
	cas, err := r.pa.cas.list(f.ctx, true)
	if err != nil || len(cas) != 1 {
		t.Fatalf("CAs: %v, %v", cas, err)
	}
	var mu sync.Mutex
	var numbers []int64
	var wg sync.WaitGroup
	var hours atomic.Int64
	for i := range 8 {
		p := []*Publisher{r.pa, r.pb}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				later := f.clk.Now().Add(time.Duration(hours.Add(1)) * time.Hour) // always due
				seq, err := r.b.RevocationSeq(f.ctx, f.interID)
				if err != nil {
					t.Errorf("RevocationSeq: %v", err)
					return
				}
				crl, err := p.refreshCRL(f.ctx, cas[0], later, seq)
				if err != nil {
					t.Errorf("refreshCRL: %v", err)
					return
				}
				if crl != nil {
					mu.Lock()
					numbers = append(numbers, crl.Number)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(numbers)
	if len(slices.Compact(slices.Clone(numbers))) != len(numbers) {
		t.Errorf("duplicate CRL numbers stored: %v", numbers)
	}
	stored, err := r.b.CRLInfo(f.ctx, f.interID)
	if err != nil || stored.Number != numbers[len(numbers)-1] {
		t.Errorf("stored CRL %d, %v; want the highest stored number %d", stored.Number, err, numbers[len(numbers)-1])
	}
	t.Logf("40 concurrent regenerations stored %d CRLs (the rest lost to a higher number)", len(numbers))
}
