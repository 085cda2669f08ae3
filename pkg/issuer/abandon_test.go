package issuer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func latestContent(t *testing.T, st store.Store) bundle.Content {
	t.Helper()
	v, err := st.LatestBundleVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := bundle.ParseContent(v.Content)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAbandonThenRotate(t *testing.T) {
	ctx := context.Background()
	rep := sharedCA(t, 1)[0]
	rot := rep.rotator(t, nil, nil)

	if _, err := rot.Abandon(ctx, AbandonOptions{Actor: "admin"}); !errors.Is(err, ErrNothingPrepared) {
		t.Errorf("Abandon with nothing prepared: %v, want ErrNothingPrepared", err)
	}
	res, err := rot.Rotate(ctx, RotateOptions{Root: true, Actor: "admin"})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if !latestContent(t, rep.st).HasAnchor(res.Root.CertDER) {
		t.Fatal("the prepared root is not published")
	}
	if _, err := rot.Abandon(ctx, AbandonOptions{ID: "int-1", Actor: "admin"}); !errors.Is(err, ErrNothingPrepared) {
		t.Errorf("Abandon of the active intermediate: %v, want ErrNothingPrepared", err)
	}

	got, err := rot.Abandon(ctx, AbandonOptions{ID: res.Root.ID, Actor: "admin@example.org", RequestID: "req-abandon"})
	if err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	wantIDs := []string{res.Root.ID, res.Intermediate.ID, res.CrossCertificate.ID}
	if !sameSet(got.Abandoned, wantIDs) || len(got.KeysDeleted) != 2 || len(got.KeysLeft) != 0 {
		t.Errorf("Abandon = %+v; want %v abandoned and both new keys deleted", got, wantIDs)
	}
	wantStates(t, rep.st, map[string]store.IssuerState{
		res.Root.ID: store.IssuerRetired, res.Intermediate.ID: store.IssuerRetired, res.CrossCertificate.ID: store.IssuerRetired,
		"root-1": store.IssuerActive, "int-1": store.IssuerActive,
	})
	for _, uri := range []string{res.Root.KeyURI, res.Intermediate.KeyURI} {
		if _, err := rep.keys.Find(ctx, uri); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Errorf("key %s after abandon: %v, want ErrKeyNotFound", uri, err)
		}
	}
	if o := orphanKeys(t, rep); len(o) != 0 {
		t.Errorf("keys no issuer names after abandon: %v", o)
	}
	c := latestContent(t, rep.st)
	if c.HasAnchor(res.Root.CertDER) || len(c.X509Authorities) != 1 || got.Bundle.Sequence == res.Bundle.Sequence {
		t.Errorf("bundle %d after abandon has %d anchors, abandoned root included: %v", got.Bundle.Sequence, len(c.X509Authorities), c.HasAnchor(res.Root.CertDER))
	}
	entries, err := rep.st.AuditEntries(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var abandon *store.AuditEntry
	for i := range entries {
		if entries[i].Action == "abandon" {
			abandon = &entries[i]
		}
	}
	if abandon == nil || abandon.Actor != "admin@example.org" || abandon.RequestID != "req-abandon" || abandon.Target != res.Root.ID {
		t.Fatalf("abandon audit entry = %+v", abandon)
	}
	var details struct {
		Abandoned []string `json:"abandoned"`
		Keys      []string `json:"keys"`
	}
	if err := json.Unmarshal(abandon.Details, &details); err != nil || !sameSet(details.Abandoned, wantIDs) || len(details.Keys) != 2 {
		t.Errorf("abandon details %s (%v)", abandon.Details, err)
	}

	// The next rotation is not blocked and gets a fresh generation.
	next, err := rot.Rotate(ctx, RotateOptions{Root: true, Actor: "admin"})
	if err != nil {
		t.Fatalf("Rotate after abandon: %v", err)
	}
	if next.Root.ID == res.Root.ID || next.Intermediate.ID == res.Intermediate.ID {
		t.Errorf("rotation after abandon reused IDs %s, %s", next.Root.ID, next.Intermediate.ID)
	}
	if _, err := rot.Activate(ctx, ActivateOptions{Force: true, Actor: "admin"}); err != nil {
		t.Errorf("Activate after abandon and rotate: %v", err)
	}
	wantStates(t, rep.st, map[string]store.IssuerState{next.Intermediate.ID: store.IssuerActive, next.Root.ID: store.IssuerActive})
}

// The state the unserialised rotation left behind: a prepared root without
// its intermediate, with its key on the token and no audit entry. Abandon
// clears it so rotation can go on.
func TestAbandonClearsAHalfRecordedRotation(t *testing.T) {
	ctx := context.Background()
	rep := sharedCA(t, 1)[0]
	rot := rep.rotator(t, nil, nil)
	now := time.Now()
	rec, cert, _, err := rot.newRoot(ctx, 2, now, new([]string))
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.st.InsertIssuer(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := rot.Rotate(ctx, RotateOptions{}); !errors.Is(err, ErrRotationInProgress) {
		t.Fatalf("Rotate with a stray prepared root: %v, want ErrRotationInProgress", err)
	}
	got, err := rot.Abandon(ctx, AbandonOptions{Actor: "admin"})
	if err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	if !slices.Equal(got.Abandoned, []string{"root-2"}) || !slices.Equal(got.KeysDeleted, []string{rec.KeyURI}) {
		t.Errorf("Abandon = %+v; want root-2 and its key", got)
	}
	if _, err := rep.keys.Find(ctx, rec.KeyURI); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("stray root key after abandon: %v", err)
	}
	if latestContent(t, rep.st).HasAnchor(cert.Raw) {
		t.Error("the abandoned root is still published")
	}
	res, err := rot.Rotate(ctx, RotateOptions{Actor: "admin"})
	if err != nil {
		t.Fatalf("Rotate after abandon: %v", err)
	}
	if c, _ := x509.ParseCertificate(res.Intermediate.CertDER); c == nil || res.Intermediate.ParentID != "root-1" {
		t.Errorf("rotation after abandon = %+v", res.Intermediate)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// A prepared intermediate that the publisher already gave a delegated OCSP
// responder (every non-retired intermediate gets one) loses that key with
// it: abandoning leaves no key on the token that nothing uses.
func TestAbandonDeletesThePreparedIntermediatesOCSPResponderKey(t *testing.T) {
	ctx := context.Background()
	rep := sharedCA(t, 1)[0]
	rot := rep.rotator(t, nil, nil)
	res, err := rot.Rotate(ctx, RotateOptions{Actor: "admin"})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	k, err := rep.keys.Generate(ctx, "ocsp-"+res.Intermediate.ID+"-test", hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := rep.st.InsertOCSPResponder(ctx, store.OCSPResponder{Serial: "0a0b", IssuerID: res.Intermediate.ID, KeyURI: k.URI,
		CertDER: res.Intermediate.CertDER, NotBefore: now, NotAfter: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	got, err := rot.Abandon(ctx, AbandonOptions{Actor: "admin"})
	if err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	if !slices.Contains(got.KeysDeleted, k.URI) {
		t.Errorf("Abandon deleted %v; want the responder key %s among them", got.KeysDeleted, k.URI)
	}
	if _, err := rep.keys.Find(ctx, k.URI); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("responder key after abandon: %v, want ErrKeyNotFound", err)
	}
}
