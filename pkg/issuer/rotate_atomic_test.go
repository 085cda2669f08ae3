package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// replica is one `ca serve` as production wires it: its own database pool
// and its own PKCS#11 session to the shared token.
type replica struct {
	keys *hsm.PKCS11Store
	st   store.Store
	pub  *bundle.Publisher
}

// sharedCA initialises a CA on one Postgres database and one SoftHSM token
// and returns n replicas on them.
func sharedCA(t *testing.T, n int) []replica {
	t.Helper()
	ctx := context.Background()
	tok := testkit.SoftHSM(t)
	url := testkit.PostgresURL(t)
	var out []replica
	for range n {
		keys, err := hsm.OpenPKCS11(tok, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("OpenPKCS11: %v", err)
		}
		t.Cleanup(func() { _ = keys.Close() })
		st, err := storeopen.Open(ctx, url)
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		pub, err := bundle.NewPublisher(bundle.Deps{Store: st, Clock: clock.Real{}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, replica{keys: keys, st: st, pub: pub})
	}
	if _, err := Init(ctx, realDeps(out[0].keys, out[0].st), integrationConfig()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if _, err := out[0].pub.Publish(ctx, bundle.PublishOptions{Reason: "init"}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r replica) rotator(t *testing.T, keys KeyStore, st RotationStore) *Rotator {
	t.Helper()
	if keys == nil {
		keys = r.keys
	}
	if st == nil {
		st = r.st
	}
	rot, err := NewRotator(RotatorDeps{Keys: keys, Store: st, Bundles: r.pub, Clock: clock.Real{}}, integrationConfig(),
		RotationConfig{Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return rot
}

// objectOf is the object (CKA_LABEL) a pkcs11: URI names.
func objectOf(uri string) string {
	_, rest, _ := strings.Cut(uri, "object=")
	obj, _, _ := strings.Cut(rest, ";")
	return obj
}

// orphanKeys lists the keys on the token that no recorded issuer names.
func orphanKeys(t *testing.T, r replica) []string {
	t.Helper()
	labels, err := r.keys.KeyLabels(context.Background())
	if err != nil {
		t.Fatalf("KeyLabels: %v", err)
	}
	list, err := r.st.ListIssuers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, is := range list {
		if is.KeyURI != "" && is.State != store.IssuerRetired {
			named[objectOf(is.KeyURI)] = true
		}
	}
	var orphans []string
	for _, l := range labels {
		if !named[l] {
			orphans = append(orphans, l)
		}
	}
	return orphans
}

func auditActions(t *testing.T, st store.Store) []string {
	t.Helper()
	entries, err := st.AuditEntries(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Action+":"+e.Target)
	}
	return out
}

func preparedIDs(t *testing.T, st store.Store) []string {
	t.Helper()
	var out []string
	for id, s := range rootIDs(t, st) {
		if s == store.IssuerPrepared {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// gate holds every caller of wait until want callers have either waited or
// left, so that concurrent rotations really overlap.
type gate struct {
	mu   sync.Mutex
	n    int
	want int
	open chan struct{}
}

func newGate(want int) *gate { return &gate{want: want, open: make(chan struct{})} }

func (g *gate) count() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	if g.n == g.want {
		close(g.open)
	}
}

func (g *gate) wait() { g.count(); <-g.open }

// gatedStore makes each Rotate wait at its first read of the issuers.
type gatedStore struct {
	store.Store
	g *gate
}

func (s gatedStore) ListIssuers(ctx context.Context) ([]store.Issuer, error) {
	s.g.wait()
	return s.Store.ListIssuers(ctx)
}

func TestConcurrentRootRotationsOnTwoReplicasPrepareOneGeneration(t *testing.T) {
	ctx := context.Background()
	reps := sharedCA(t, 2)
	before := auditActions(t, reps[0].st)
	const n = 3
	g := newGate(n)
	errs := make([]error, n)
	results := make([]RotateResult, n)
	var wg sync.WaitGroup
	for i := range n {
		rep := reps[i%2]
		rot := rep.rotator(t, nil, gatedStore{rep.st, g})
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = rot.Rotate(ctx, RotateOptions{Root: true, Actor: fmt.Sprintf("admin-%d", i)})
			g.count() // a refused rotation no longer holds the others back
		}()
	}
	wg.Wait()

	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case err == nil:
			t.Errorf("rotations %d and %d both succeeded", won, i)
		case !errors.Is(err, ErrRotationInProgress):
			t.Errorf("rotation %d: %v; want a clean ErrRotationInProgress", i, err)
		}
	}
	if won < 0 {
		t.Fatalf("no rotation succeeded: %v", errs)
	}
	res := results[won]
	want := []string{res.Root.ID, res.CrossCertificate.ID, res.Intermediate.ID}
	slices.Sort(want)
	if got := preparedIDs(t, reps[1].st); !slices.Equal(got, want) {
		t.Errorf("prepared issuers %v; want exactly one generation %v", got, want)
	}
	after := auditActions(t, reps[0].st)[len(before):]
	rotates := slices.DeleteFunc(slices.Clone(after), func(a string) bool { return !strings.HasPrefix(a, "rotate:") })
	if len(rotates) != 1 {
		t.Errorf("audit entries after the rotations %v; want exactly one rotate", after)
	}
	if o := orphanKeys(t, reps[0]); len(o) != 0 {
		t.Errorf("keys on the token that no issuer names: %v", o)
	}
	// The one prepared root is published.
	latest, err := reps[1].st.LatestBundleVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bundle.ParseContent(latest.Content)
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasAnchor(res.Root.CertDER) || len(c.X509Authorities) != 2 {
		t.Errorf("bundle after rotation has %d anchors, new root included: %v", len(c.X509Authorities), c.HasAnchor(res.Root.CertDER))
	}
	// A later rotation on either replica is refused cleanly while it is
	// prepared, and leaves nothing behind.
	if _, err := reps[1].rotator(t, nil, nil).Rotate(ctx, RotateOptions{Root: true}); !errors.Is(err, ErrRotationInProgress) {
		t.Errorf("rotation while prepared: %v, want ErrRotationInProgress", err)
	}
	if o := orphanKeys(t, reps[1]); len(o) != 0 {
		t.Errorf("a refused rotation left keys %v", o)
	}
}

// failingKeys fails Generate for names with a prefix, like a token that
// fills up or goes away between the root and the intermediate.
type failingKeys struct {
	KeyStore
	prefix string
}

func (k failingKeys) Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error) {
	if strings.HasPrefix(name, k.prefix) {
		return hsm.Key{}, fmt.Errorf("injected failure generating %s: %w", name, hsm.ErrUnavailable)
	}
	return k.KeyStore.Generate(ctx, name, kt)
}

// failingInsertStore fails every way of recording an issuer, like a
// database that goes away after the keys exist.
type failingInsertStore struct {
	store.Store
}

func (failingInsertStore) InsertIssuer(context.Context, store.Issuer) error {
	return fmt.Errorf("injected insert failure: %w", store.ErrUnavailable)
}

func (failingInsertStore) RecordRotation(context.Context, []store.Issuer, store.AuditEntry) (store.AuditEntry, error) {
	return store.AuditEntry{}, fmt.Errorf("injected commit failure: %w", store.ErrUnavailable)
}

func TestFailedRotationLeavesNothingBehind(t *testing.T) {
	cases := []struct {
		name string
		keys func(r replica) KeyStore
		st   func(r replica) RotationStore
	}{
		{"a failure between the root and the intermediate key",
			func(r replica) KeyStore { return failingKeys{r.keys, "int-"} }, nil},
		{"a failure recording the issuers after every key exists",
			nil, func(r replica) RotationStore { return failingInsertStore{r.st} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rep := sharedCA(t, 1)[0]
			states := rootIDs(t, rep.st)
			actions := auditActions(t, rep.st)
			labels, _ := rep.keys.KeyLabels(ctx)
			var keys KeyStore
			var st RotationStore
			if tc.keys != nil {
				keys = tc.keys(rep)
			}
			if tc.st != nil {
				st = tc.st(rep)
			}
			if _, err := rep.rotator(t, keys, st).Rotate(ctx, RotateOptions{Root: true}); !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, hsm.ErrUnavailable) {
				t.Fatalf("Rotate with an injected failure: %v", err)
			}
			if got := rootIDs(t, rep.st); len(got) != len(states) {
				t.Errorf("issuers after the failed rotation %v; want unchanged %v", got, states)
			}
			if got := auditActions(t, rep.st); !slices.Equal(got, actions) {
				t.Errorf("audit after the failed rotation %v; want unchanged %v", got, actions)
			}
			if got, _ := rep.keys.KeyLabels(ctx); !slices.Equal(got, labels) {
				t.Errorf("token keys after the failed rotation %v; want unchanged %v", got, labels)
			}
			// Nothing blocks the next rotation.
			res, err := rep.rotator(t, nil, nil).Rotate(ctx, RotateOptions{Root: true, Actor: "admin"})
			if err != nil {
				t.Fatalf("Rotate after the failure: %v", err)
			}
			if res.Root == nil || len(preparedIDs(t, rep.st)) != 3 {
				t.Errorf("rotation after the failure prepared %v", preparedIDs(t, rep.st))
			}
		})
	}
}
