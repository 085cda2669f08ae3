package issuer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// The narrow interfaces are satisfied by the real components.
var (
	_ KeyStore = (*hsm.PKCS11Store)(nil)
	_ KeyStore = (*hsm.SoftwareStore)(nil)
	_ Store    = store.Store(nil)
)

// backend is a real key store and a real store, as production wires them.
type backend struct {
	name string
	open func(t testing.TB) (KeyStore, store.Store)
}

var backends = []backend{
	{"SoftHSM and Postgres", func(t testing.TB) (KeyStore, store.Store) {
		return testkit.SoftHSMKeyStore(t), testkit.Postgres(t)
	}},
	{"software keys and SQLite", func(t testing.TB) (KeyStore, store.Store) {
		ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("OpenSoftware: %v", err)
		}
		t.Cleanup(func() { _ = ks.Close() })
		return ks, testkit.SQLite(t)
	}},
}

func realDeps(keys KeyStore, st Store) Deps {
	return Deps{Keys: keys, Store: st, Clock: clock.Real{}, Log: slog.New(slog.DiscardHandler)}
}

func integrationConfig() Config {
	return Config{TrustDomain: "example.org", PublicURL: "http://127.0.0.1:8080"}
}

func TestIntegrationIssueAgainstRealComponents(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			keys, st := b.open(t)
			d := realDeps(keys, st)
			cfg := integrationConfig()
			if _, err := Init(ctx, d, cfg); err != nil {
				t.Fatalf("Init: %v", err)
			}
			again, err := Init(ctx, d, cfg)
			if err != nil || again.Created {
				t.Fatalf("second Init = %+v, %v; want the existing hierarchy", again, err)
			}
			iss, err := Load(ctx, d, cfg)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			leafKey := newP256(t)
			got, err := iss.Issue(ctx, Request{
				PublicKey: leafKey.Public(), SPIFFEID: "spiffe://example.org/ci/acme/payments",
				DNSNames: []string{"payments.prod.internal"}, TTL: 15 * time.Minute,
				Provenance: json.RawMessage(`{"repository":"acme/payments"}`), PolicyRule: "any-repo-ci", PolicyVersion: "sha256:abc",
				Actor: "repo:acme/payments:ref:refs/heads/main", RequestID: "req-42",
			})
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			leaf := got.Certificate

			anchors, err := iss.TrustAnchors(ctx)
			if err != nil || len(anchors) != 1 {
				t.Fatalf("TrustAnchors = %d certificates, %v", len(anchors), err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(anchors[0])
			verifyLeaf(t, roots, leaf, got.Chain, time.Now())

			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/ci/acme/payments" {
				t.Errorf("URIs = %v", leaf.URIs)
			}
			if want := "http://127.0.0.1:8080/crl/" + got.IssuerID + ".crl"; len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != want {
				t.Errorf("CRL DP = %v, want %s", leaf.CRLDistributionPoints, want)
			}
			if len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != "http://127.0.0.1:8080/ocsp" {
				t.Errorf("AIA OCSP = %v", leaf.OCSPServer)
			}

			rec, err := st.GetCertificate(ctx, got.Serial)
			if err != nil {
				t.Fatalf("GetCertificate(%s): %v", got.Serial, err)
			}
			if string(rec.DER) != string(got.DER) || rec.SPIFFEID != "spiffe://example.org/ci/acme/payments" || rec.IssuerID != got.IssuerID || rec.PolicyRule != "any-repo-ci" {
				t.Errorf("stored record differs: %+v", rec)
			}
			entries, err := st.AuditEntries(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, e := range entries {
				actions = append(actions, e.Action+":"+e.Target)
			}
			if strings.Join(actions, ",") != "init:"+got.IssuerID+",issue:"+got.Serial {
				t.Errorf("audit log = %v", actions)
			}

			if err := lintDER(got.DER); err != nil {
				t.Errorf("zlint on the real certificate: %v", err)
			}

			der := append([]byte(nil), got.DER...)
			for _, c := range got.Chain {
				der = append(der, c...)
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
			if err != nil {
				t.Fatal(err)
			}
			svid, err := x509svid.ParseRaw(der, keyDER)
			if err != nil {
				t.Fatalf("x509svid.ParseRaw refuses the leaf: %v", err)
			}
			if svid.ID.String() != "spiffe://example.org/ci/acme/payments" {
				t.Errorf("SVID ID = %s", svid.ID)
			}
			bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("example.org"), anchors)
			if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
				t.Errorf("x509svid.Verify: %v", err)
			}
		})
	}
}

// failingRecorder is a real store whose RecordIssuance fails as if the
// database went away mid-commit.
type failingRecorder struct {
	store.Store
}

func (failingRecorder) RecordIssuance(context.Context, store.Certificate, store.AuditEntry) (store.AuditEntry, error) {
	return store.AuditEntry{}, fmt.Errorf("simulated commit failure: %w", store.ErrUnavailable)
}

func TestIntegrationStoreFailureReturnsNoCertificate(t *testing.T) {
	ctx := context.Background()
	keys := testkit.SoftHSMKeyStore(t)
	url := testkit.PostgresURL(t)
	st, err := storeopen.Open(ctx, url)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	cfg := integrationConfig()
	if _, err := Init(ctx, realDeps(keys, st), cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}

	t.Run("a failing commit returns no certificate", func(t *testing.T) {
		iss, err := Load(ctx, realDeps(keys, failingRecorder{st}), cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := iss.Issue(ctx, Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
		if got != nil || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("got %v, err %v; want no certificate and store.ErrUnavailable", got, err)
		}
	})
	t.Run("a closed Postgres store returns no certificate", func(t *testing.T) {
		iss, err := Load(ctx, realDeps(keys, st), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := iss.Issue(ctx, Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
		if got != nil || err == nil {
			t.Fatalf("got %v, err %v; want no certificate and an error", got, err)
		}
		// A pool closed by its owner is not a connection failure, so the store
		// need not call it ErrUnavailable; what matters is that nothing is returned.
		t.Logf("closed store: %v", err)
	})
}

func TestIntegrationOfflineRootFlow(t *testing.T) {
	ctx := context.Background()
	keys, st := testkit.SoftHSMKeyStore(t), testkit.Postgres(t)
	d := realDeps(keys, st)
	cfg := integrationConfig()
	csrPEM, id, err := NewIntermediateCSR(ctx, d, cfg)
	if err != nil {
		t.Fatalf("NewIntermediateCSR: %v", err)
	}
	root := newOfflineRoot(t, time.Now())
	imported, err := ImportIntermediate(ctx, d, cfg, root.sign(t, csrPEM, time.Now(), nil))
	if err != nil {
		t.Fatalf("ImportIntermediate: %v", err)
	}
	if imported.ID != id || imported.State != store.IssuerActive {
		t.Fatalf("imported = %+v", imported)
	}
	iss, err := Load(ctx, d, cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	got, err := iss.Issue(ctx, Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/offline"})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	anchors, err := iss.TrustAnchors(ctx)
	if err != nil || len(anchors) != 1 || !anchors[0].Equal(root.cert) {
		t.Fatalf("TrustAnchors = %v, %v; want exactly the offline root", anchors, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	verifyLeaf(t, pool, got.Certificate, got.Chain, time.Now())
	// The hierarchy is complete, so Init leaves it alone.
	res, err := Init(ctx, d, cfg)
	if err != nil || res.Created || res.Intermediate.ID != id || !res.Root.NotAfter.Equal(root.cert.NotAfter) {
		t.Errorf("Init after import = %+v, %v", res, err)
	}
}

func TestIntegrationConcurrentInitOnOnePostgres(t *testing.T) {
	ctx := context.Background()
	keys, st := testkit.SoftHSMKeyStore(t), testkit.Postgres(t)
	const n = 3
	var wg sync.WaitGroup
	res := make([]InitResult, n)
	errs := make([]error, n)
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[k], errs[k] = Init(ctx, realDeps(keys, st), integrationConfig())
		}()
	}
	wg.Wait()
	for k := range n {
		if errs[k] != nil {
			t.Fatalf("Init %d: %v", k, errs[k])
		}
		if res[k].Intermediate.ID != res[0].Intermediate.ID {
			t.Errorf("Init %d chose %q, Init 0 %q", k, res[k].Intermediate.ID, res[0].Intermediate.ID)
		}
	}
	issuers, err := st.ListIssuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, is := range issuers {
		if is.Kind == store.KindIntermediate && is.State == store.IssuerActive {
			active++
		}
	}
	if active != 1 {
		t.Errorf("%d active intermediates, want 1", active)
	}
}
