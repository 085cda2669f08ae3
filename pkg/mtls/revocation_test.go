package mtls_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// revocationCA is a test CA whose CRL and OCSP responder are served on
// loopback.
type revocationCA struct {
	ca       *testca.CA
	crl      atomic.Pointer[[]byte]
	crlHits  atomic.Int64
	ocspHits atomic.Int64
	revoked  atomic.Pointer[map[string]bool]
	clk      *clock.Fake
}

func newRevocationCA(t testing.TB) *revocationCA {
	t.Helper()
	r := &revocationCA{clk: clock.NewFake(t0)}
	empty := map[string]bool{}
	r.revoked.Store(&empty)
	mux := http.NewServeMux()
	mux.HandleFunc("/crl", func(w http.ResponseWriter, _ *http.Request) {
		r.crlHits.Add(1)
		b := r.crl.Load()
		if b == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(*b)
	})
	mux.HandleFunc("/ocsp", func(w http.ResponseWriter, req *http.Request) {
		r.ocspHits.Add(1)
		body, _ := io.ReadAll(req.Body)
		oreq, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		now := r.clk.Now()
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: oreq.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
		if (*r.revoked.Load())[oreq.SerialNumber.Text(16)] {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, now.Add(-time.Minute), ocsp.KeyCompromise
		}
		resp, err := ocsp.CreateResponse(r.ca.Intermediate, r.ca.Intermediate, tmpl, r.ca.IntermediateKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ca, err := testca.New(testca.Options{Now: t0, CRLURL: srv.URL + "/crl", OCSPURL: srv.URL + "/ocsp"})
	if err != nil {
		t.Fatal(err)
	}
	r.ca = ca
	r.publish(t, time.Hour)
	return r
}

func (r *revocationCA) publish(t testing.TB, validity time.Duration) {
	t.Helper()
	der, err := r.ca.CRL(r.clk.Now(), validity)
	if err != nil {
		t.Fatal(err)
	}
	r.crl.Store(&der)
}

func (r *revocationCA) revoke(c *testca.Credential) {
	r.ca.Revoke(c.Leaf().SerialNumber, r.clk.Now().Add(-time.Minute))
	m := map[string]bool{}
	for k, v := range *r.revoked.Load() {
		m[k] = v
	}
	m[c.Leaf().SerialNumber.Text(16)] = true
	r.revoked.Store(&m)
}

func (r *revocationCA) issue(t testing.TB) *testca.Credential {
	t.Helper()
	c, err := r.ca.Issue(testca.Leaf{SPIFFEID: "spiffe://example.org/svc"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *revocationCA) checker(t testing.TB, cfg mtls.RevocationConfig) *mtls.RevocationChecker {
	t.Helper()
	cfg.Clock = r.clk
	c, err := mtls.NewRevocationChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCRLIsCachedUntilNextUpdate(t *testing.T) {
	r := newRevocationCA(t)
	a, b := r.issue(t), r.issue(t)
	r.revoke(a)
	r.publish(t, time.Hour)
	chk := r.checker(t, mtls.RevocationConfig{CRL: true})
	ctx := context.Background()
	if res := chk.Check(ctx, a.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusRevoked || res.Source != "crl" || res.ReasonCode != 1 {
		t.Fatalf("revoked certificate: %+v", res)
	}
	if res := chk.Check(ctx, b.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusGood {
		t.Fatalf("good certificate: %+v", res)
	}
	if n := r.crlHits.Load(); n != 1 {
		t.Errorf("CRL fetched %d times for two checks, want 1", n)
	}
	r.revoke(b)
	r.clk.Advance(59 * time.Minute)
	r.publish(t, time.Hour)
	if res := chk.Check(ctx, b.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusGood {
		t.Errorf("before nextUpdate the cached CRL answers: %+v", res)
	}
	r.clk.Advance(time.Minute)
	if res := chk.Check(ctx, b.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusRevoked {
		t.Errorf("at nextUpdate the new CRL answers: %+v", res)
	}
	if n := r.crlHits.Load(); n != 2 {
		t.Errorf("CRL fetched %d times, want 2", n)
	}
}

func TestUnverifiableRevocationStatus(t *testing.T) {
	r := newRevocationCA(t)
	cred := r.issue(t)
	other, err := testca.New(testca.Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.CRL(t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		setup   func()
		wantErr error
	}{
		{"a CRL signed by another CA is invalid", func() { r.crl.Store(&forged) }, mtls.ErrRevocationInvalid},
		{"an unreachable CRL is a fetch failure", func() { r.crl.Store(nil) }, mtls.ErrRevocationFetch},
		{"a stale CRL is invalid", func() { r.publish(t, time.Hour); r.clk.Advance(2 * time.Hour) }, mtls.ErrRevocationInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			res := r.checker(t, mtls.RevocationConfig{CRL: true}).Check(context.Background(), cred.Leaf(), r.ca.Intermediate)
			if res.Status != mtls.StatusUnknown || !errors.Is(res.Err, tt.wantErr) {
				t.Errorf("Check = %+v, want unknown with %v", res, tt.wantErr)
			}
			for _, failOpen := range []bool{false, true} {
				v, err := mtls.NewVerifier(mtls.VerifierConfig{
					Bundles: bundleOf(r.ca), Authorize: mtls.AuthorizeAny(), Clock: r.clk,
					Revocation: r.checker(t, mtls.RevocationConfig{CRL: true, FailOpen: failOpen}),
				})
				if err != nil {
					t.Fatal(err)
				}
				_, err = v.Verify(context.Background(), cred.Chain, mtls.PeerIsClient)
				got, _ := mtls.Classify(err)
				switch {
				case failOpen && err != nil:
					t.Errorf("fail-open rejected: %v", err)
				case !failOpen && got.Reason != mtls.ReasonRevocationUnknown:
					t.Errorf("fail-closed: %v, want revocation_unknown", err)
				}
			}
		})
	}
}

func TestOCSP(t *testing.T) {
	r := newRevocationCA(t)
	good, bad := r.issue(t), r.issue(t)
	r.revoke(bad)
	chk := r.checker(t, mtls.RevocationConfig{OCSP: true})
	ctx := context.Background()
	if res := chk.Check(ctx, good.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusGood || res.Source != "ocsp" {
		t.Errorf("good: %+v", res)
	}
	if res := chk.Check(ctx, bad.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusRevoked || res.ReasonCode != ocsp.KeyCompromise {
		t.Errorf("revoked: %+v", res)
	}
	chk.Check(ctx, good.Leaf(), r.ca.Intermediate)
	if n := r.ocspHits.Load(); n != 2 {
		t.Errorf("OCSP asked %d times for three checks of two certificates, want 2 (cached)", n)
	}
	t.Run("with CRL first, OCSP answers when the CRL is down", func(t *testing.T) {
		r.crl.Store(nil)
		chk := r.checker(t, mtls.RevocationConfig{CRL: true, OCSP: true})
		if res := chk.Check(ctx, bad.Leaf(), r.ca.Intermediate); res.Status != mtls.StatusRevoked || res.Source != "ocsp" {
			t.Errorf("Check = %+v", res)
		}
	})
}

func TestACertificateWithoutRevocationPointersIsNotChecked(t *testing.T) {
	ca, err := testca.New(testca.Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(testca.Leaf{SPIFFEID: "spiffe://example.org/x"})
	if err != nil {
		t.Fatal(err)
	}
	chk, _ := mtls.NewRevocationChecker(mtls.RevocationConfig{CRL: true, OCSP: true})
	if res := chk.Check(context.Background(), c.Leaf(), ca.Intermediate); res.Status != mtls.StatusNotChecked {
		t.Errorf("Check = %+v", res)
	}
}

func bundleOf(cas ...*testca.CA) *spiffebundle.Bundle {
	var roots []*x509.Certificate
	for _, c := range cas {
		roots = append(roots, c.Root)
	}
	return spiffebundle.FromX509Authorities(cas[0].TrustDomain, roots)
}
