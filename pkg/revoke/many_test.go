package revoke

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// renewal issues a renewal of prev through the real issuer.
func (f *fixture) renewal(prev *issuer.Issued, name string) *issuer.Issued {
	f.t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	got, err := f.iss.Issue(f.ctx, issuer.Request{
		PublicKey: k.Public(), SPIFFEID: "spiffe://example.org/test/" + name, TTL: 2 * time.Hour,
		PolicyRule: "test", PolicyVersion: "v1", Actor: "test", RequestID: "req-" + name, RenewedFrom: prev.Serial,
	})
	if err != nil {
		f.t.Fatalf("Issue(renewal of %s): %v", prev.Serial, err)
	}
	return got
}

// A lineage revocation on replica A shows on replica B the way a single
// revocation does: B's publisher sees the revocation counter move and
// publishes a CRL with every revoked descendant, and the revoked OCSP
// responses are stored at once.
func TestRevokeManyReachesTheCRLAndOCSPOfAnotherReplica(t *testing.T) {
	r := newReplicas(t)
	f := r.f
	first := f.leaf("lineage", 2*time.Hour)
	r1 := f.renewal(first, "lineage")
	r2 := f.renewal(r1, "lineage")
	unrelated := f.leaf("other", 2*time.Hour)
	if _, err := r.pb.RefreshOnce(f.ctx); err != nil { // B publishes the CRL before the revocation
		t.Fatal(err)
	}

	rv := f.revoker(r.pa)
	got, err := rv.RevokeMany(f.ctx, store.RevokeScope{Serial: r1.Serial, Descendants: true}, "keyCompromise", "op", "req-many")
	if err != nil {
		t.Fatalf("RevokeMany: %v", err)
	}
	want := []string{r1.Serial, r2.Serial}
	slices.Sort(want)
	var gotSerials []string
	for _, c := range got {
		gotSerials = append(gotSerials, c.Serial)
	}
	if !slices.Equal(gotSerials, want) {
		t.Fatalf("revoked %v, want %v (the certificate and its descendant, not its predecessor)", gotSerials, want)
	}
	for _, sn := range want {
		resp, err := r.b.GetOCSPResponse(f.ctx, sn)
		if err != nil || !resp.Revoked {
			t.Errorf("stored OCSP response of %s: revoked %v, %v; want revoked at once", sn, resp.Revoked, err)
			continue
		}
		parsed, err := ocsp.ParseResponse(resp.DER, f.inter)
		if err != nil || parsed.Status != ocsp.Revoked || parsed.RevocationReason != ocsp.KeyCompromise {
			t.Errorf("OCSP response of %s: %+v, %v", sn, parsed, err)
		}
	}
	rep, err := r.pb.RefreshOnce(f.ctx)
	if err != nil || len(rep.CRLs) != 1 {
		t.Fatalf("B's tick after the revocation: %+v, %v; want a new CRL", rep, err)
	}
	var onCRL []string
	for _, e := range f.storedCRL().RevokedCertificateEntries {
		onCRL = append(onCRL, e.SerialNumber.Text(16))
	}
	slices.Sort(onCRL)
	if !slices.Equal(onCRL, want) {
		t.Errorf("CRL lists %v, want %v", onCRL, want)
	}
	for _, sn := range []string{first.Serial, unrelated.Serial} {
		if st, err := r.b.CertificateStatus(f.ctx, sn); err != nil || st.Revoked {
			t.Errorf("%s revoked %v (%v); it is outside the scope", sn, st.Revoked, err)
		}
	}

	// Again: nothing left to revoke, nothing changes.
	got, err = rv.RevokeMany(f.ctx, store.RevokeScope{Serial: r1.Serial, Descendants: true}, "superseded", "op", "req-again")
	if err != nil || len(got) != 0 {
		t.Errorf("RevokeMany again: %d revoked, %v; want none", len(got), err)
	}
	if _, err := rv.RevokeMany(f.ctx, store.RevokeScope{Serial: r1.Serial}, "nope", "op", "req"); !errors.Is(err, ErrInvalidReason) {
		t.Errorf("bad reason: %v", err)
	}
	if _, err := rv.RevokeMany(f.ctx, store.RevokeScope{Serial: "xyz"}, "keyCompromise", "op", "req"); !errors.Is(err, ErrInvalidSerial) {
		t.Errorf("bad serial: %v", err)
	}
}
