package issuer

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestOfflineRootFlow(t *testing.T) {
	d, _, s := fakeDeps()
	ctx := context.Background()
	cfg := testConfig()
	csrPEM, id, err := NewIntermediateCSR(ctx, d, cfg)
	if err != nil {
		t.Fatalf("NewIntermediateCSR: %v", err)
	}
	prepared, err := s.GetIssuer(ctx, id)
	if err != nil || prepared.State != store.IssuerPrepared || prepared.CertDER != nil || prepared.KeyURI == "" {
		t.Fatalf("prepared issuer = %+v, %v", prepared, err)
	}
	if _, err := Load(ctx, d, cfg); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Load before import: %v, want ErrNotInitialized", err)
	}

	root := newOfflineRoot(t, t0)
	got, err := ImportIntermediate(ctx, d, cfg, root.sign(t, csrPEM, t0, nil))
	if err != nil {
		t.Fatalf("ImportIntermediate: %v", err)
	}
	if got.ID != id || got.State != store.IssuerActive || got.CertDER == nil {
		t.Fatalf("imported issuer = %+v", got)
	}
	if acts := s.auditActions(); len(acts) != 1 || acts[0] != "import" {
		t.Errorf("audit = %v, want [import]", acts)
	}

	iss, err := Load(ctx, d, cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	leaf, err := iss.Issue(ctx, Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/offline"})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	anchors, err := iss.TrustAnchors(ctx)
	if err != nil || len(anchors) != 1 || !anchors[0].Equal(root.cert) {
		t.Fatalf("TrustAnchors = %v, %v; want the offline root", anchors, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	verifyLeaf(t, pool, leaf.Certificate, leaf.Chain, t0)

	// Importing the same chain again finds nothing prepared.
	if _, err := ImportIntermediate(ctx, d, cfg, root.sign(t, csrPEM, t0, nil)); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("second import: %v, want ErrInvalidRequest", err)
	}
}

func TestImportRefusesBadChains(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	tests := []struct {
		name  string
		chain func(t *testing.T, csrPEM []byte) []byte
	}{
		{"a non-CA certificate is refused", func(t *testing.T, csr []byte) []byte {
			return newOfflineRoot(t, t0).sign(t, csr, t0, func(c *x509.Certificate) {
				c.IsCA, c.KeyUsage, c.MaxPathLenZero, c.PermittedURIDomains = false, x509.KeyUsageDigitalSignature, false, nil
			})
		}},
		{"an intermediate without pathlen 0 is refused", func(t *testing.T, csr []byte) []byte {
			return newOfflineRoot(t, t0).sign(t, csr, t0, func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = -1, false })
		}},
		{"a chain without its root is refused", func(t *testing.T, csr []byte) []byte {
			full := newOfflineRoot(t, t0).sign(t, csr, t0, nil)
			b, _ := pem.Decode(full)
			return pem.EncodeToMemory(b)
		}},
		{"a chain to a different root is refused", func(t *testing.T, csr []byte) []byte {
			full := newOfflineRoot(t, t0).sign(t, csr, t0, nil)
			b, _ := pem.Decode(full)
			other := newOfflineRoot(t, t0)
			return append(pem.EncodeToMemory(b), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.cert.Raw})...)
		}},
		{"an expired intermediate is refused", func(t *testing.T, csr []byte) []byte {
			return newOfflineRoot(t, t0).sign(t, csr, t0, func(c *x509.Certificate) { c.NotAfter = t0.Add(-time.Second) })
		}},
		{"a certificate for another key is refused", func(t *testing.T, _ []byte) []byte {
			d2, _, _ := fakeDeps()
			otherCSR, _, err := NewIntermediateCSR(ctx, d2, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return newOfflineRoot(t, t0).sign(t, otherCSR, t0, nil)
		}},
		{"garbage is refused", func(*testing.T, []byte) []byte { return []byte("not pem") }},
		{"a private key block is refused", func(*testing.T, []byte) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, s := fakeDeps()
			csrPEM, id, err := NewIntermediateCSR(ctx, d, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ImportIntermediate(ctx, d, cfg, tt.chain(t, csrPEM)); !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			if is, _ := s.GetIssuer(ctx, id); is.State != store.IssuerPrepared || is.CertDER != nil {
				t.Errorf("prepared issuer changed: %+v", is)
			}
		})
	}
}
