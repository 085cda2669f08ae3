package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func fakeDeps() (Deps, *memKeys, *memStore) {
	k, s := newMemKeys(), newMemStore()
	return Deps{Keys: k, Store: s, Clock: clock.NewFake(t0), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, k, s
}

func TestInitCreatesARootAndAConstrainedIntermediate(t *testing.T) {
	d, _, s := fakeDeps()
	cfg := testConfig()
	cfg.Organization = "Acme"
	res, err := Init(context.Background(), d, cfg)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !res.Created || res.Root.ID != "root-1" || res.Intermediate.ID != "int-1" {
		t.Fatalf("Init = %+v", res)
	}
	root, err := x509.ParseCertificate(res.Root.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(res.Intermediate.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Errorf("intermediate is not signed by the root: %v", err)
	}
	bcCritical := func(c *x509.Certificate) bool {
		for _, e := range c.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 19}) {
				return e.Critical
			}
		}
		return false
	}
	if !root.IsCA || !bcCritical(root) || root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(root.SubjectKeyId) != 20 {
		t.Errorf("root: CA=%v bc critical=%v KU=%v SKI=%x", root.IsCA, bcCritical(root), root.KeyUsage, root.SubjectKeyId)
	}
	if root.Subject.Organization[0] != "Acme" || root.Subject.CommonName != "example.org Root CA 1" {
		t.Errorf("root subject = %v", root.Subject)
	}
	if !inter.IsCA || !bcCritical(inter) || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Errorf("intermediate: CA=%v pathlen=%d zero=%v", inter.IsCA, inter.MaxPathLen, inter.MaxPathLenZero)
	}
	if len(inter.PermittedURIDomains) != 1 || inter.PermittedURIDomains[0] != "example.org" || !inter.PermittedDNSDomainsCritical {
		t.Errorf("name constraints: URIs %v critical %v", inter.PermittedURIDomains, inter.PermittedDNSDomainsCritical)
	}
	if !inter.NotAfter.Equal(t0.Add(DefaultIntermediateLifetime)) || !root.NotAfter.Equal(t0.Add(DefaultRootLifetime)) {
		t.Errorf("lifetimes: root until %v, intermediate until %v", root.NotAfter, inter.NotAfter)
	}
	if res.Root.State != store.IssuerActive || res.Intermediate.State != store.IssuerActive || res.Intermediate.ParentID != "root-1" || res.Root.KeyURI == "" || res.Intermediate.KeyURI == "" {
		t.Errorf("records: %+v / %+v", res.Root, res.Intermediate)
	}
	if acts := s.auditActions(); len(acts) != 1 || acts[0] != "init" {
		t.Errorf("audit actions = %v, want [init]", acts)
	}
}

func TestInitIsIdempotent(t *testing.T) {
	d, k, s := fakeDeps()
	first, err := Init(context.Background(), d, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	keysAfterFirst := len(k.keys)
	second, err := Init(context.Background(), d, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if second.Created || second.Intermediate.ID != first.Intermediate.ID || second.Root.ID != first.Root.ID {
		t.Errorf("second Init = %+v, want the first hierarchy, not created", second)
	}
	if len(k.keys) != keysAfterFirst || len(s.issuers) != 2 || len(s.audit) != 1 {
		t.Errorf("second Init generated keys or records: keys %d issuers %d audit %d", len(k.keys), len(s.issuers), len(s.audit))
	}
}

func TestConcurrentInitsAgreeOnOneHierarchy(t *testing.T) {
	d, _, s := fakeDeps()
	// Let every initialiser list the (empty) store before any of them inserts,
	// so that they all race for the same IDs.
	var listed sync.WaitGroup
	listed.Add(4)
	var firstInsert sync.Once
	s.beforeInsert = func(store.Issuer) { firstInsert.Do(listed.Wait) }
	var lists atomic.Int32
	s.afterList = func() {
		if lists.Add(1) <= 4 {
			listed.Done()
		}
	}
	var wg sync.WaitGroup
	results := make([]InitResult, 4)
	errs := make([]error, 4)
	for n := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[n], errs[n] = Init(context.Background(), d, testConfig())
		}()
	}
	wg.Wait()
	created := 0
	for n := range results {
		if errs[n] != nil {
			t.Fatalf("Init %d: %v", n, errs[n])
		}
		if results[n].Intermediate.ID != results[0].Intermediate.ID {
			t.Errorf("Init %d returned %q, Init 0 %q", n, results[n].Intermediate.ID, results[0].Intermediate.ID)
		}
		if results[n].Created {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d Inits report creating the hierarchy, want 1", created)
	}
	active := 0
	for _, is := range s.issuers {
		if is.Kind == store.KindIntermediate && is.State == store.IssuerActive {
			active++
		}
	}
	if active != 1 {
		t.Errorf("%d active intermediates after concurrent Init, want 1", active)
	}
}

func TestInitFinishesAHalfCreatedHierarchy(t *testing.T) {
	d, _, s := fakeDeps()
	// The first Init "crashes" after recording its root.
	crash := errors.New("crash")
	s.beforeInsert = func(is store.Issuer) {
		if is.Kind == store.KindIntermediate {
			panic(crash)
		}
	}
	func() {
		defer func() {
			if r := recover(); r != crash {
				t.Fatalf("unexpected panic %v", r)
			}
		}()
		_, _ = Init(context.Background(), d, testConfig())
	}()
	s.beforeInsert = nil
	if len(s.issuers) != 1 {
		t.Fatalf("setup: %d issuers after the crash, want the root only", len(s.issuers))
	}
	res, err := Init(context.Background(), d, testConfig())
	if err != nil {
		t.Fatalf("Init after crash: %v", err)
	}
	if !res.Created || res.Root.ID != "root-1" || res.Intermediate.ParentID != "root-1" || len(s.issuers) != 2 {
		t.Errorf("Init after crash = %+v, issuers %d; want int-1 under the existing root-1", res, len(s.issuers))
	}
	if _, err := Load(context.Background(), d, testConfig()); err != nil {
		t.Errorf("Load: %v", err)
	}
}

func TestInitWithEachCAKeyType(t *testing.T) {
	for _, kt := range []hsm.KeyType{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA3072} {
		t.Run(string(kt)+" CA keys issue a verifiable leaf", func(t *testing.T) {
			cfg := testConfig()
			cfg.KeyType = kt
			u := newUnitCA(t, cfg)
			got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/kt"})
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			verifyLeaf(t, u.roots(t), got.Certificate, got.Chain, t0)
		})
	}
}

func TestLoadWithoutHierarchyIsNotInitialized(t *testing.T) {
	d, _, _ := fakeDeps()
	if _, err := Load(context.Background(), d, testConfig()); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("err = %v, want ErrNotInitialized", err)
	}
}

func TestLoadWithAMissingKeyPropagatesTheKeyStoreError(t *testing.T) {
	d, k, _ := fakeDeps()
	if _, err := Init(context.Background(), d, testConfig()); err != nil {
		t.Fatal(err)
	}
	k.keys = map[string]crypto.Signer{}
	if _, err := Load(context.Background(), d, testConfig()); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("err = %v, want hsm.ErrKeyNotFound", err)
	}
}

func TestChainAndTrustAnchors(t *testing.T) {
	u := newUnitCA(t, Config{})
	chain := u.iss.Chain()
	if len(chain) != 1 || string(chain[0]) != string(u.iss.cert.Raw) {
		t.Errorf("Chain has %d certificates, want the intermediate only", len(chain))
	}
	chain[0] = nil
	if u.iss.Chain()[0] == nil {
		t.Error("Chain exposes the issuer's own slice")
	}
	anchors, err := u.iss.TrustAnchors(context.Background())
	if err != nil || len(anchors) != 1 || !anchors[0].IsCA || anchors[0].Subject.CommonName != "example.org Root CA 1" {
		t.Errorf("TrustAnchors = %v, %v", anchors, err)
	}
}
