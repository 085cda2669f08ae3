package revoke

import (
	"crypto"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestRevokeIdentityRevokesEveryCertificateAndPublishesThem(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t, b, shortConfig())
			p := f.publisher()
			rv := f.revoker(p)
			held := []string{f.leaf("held", 2*time.Hour).Serial, f.leaf("held", 2*time.Hour).Serial}
			other := f.leaf("other", 2*time.Hour)
			f.refresh(p)
			rs := f.followingResponder(f.st, p)
			const id = "spiffe://example.org/test/held"

			if _, err := rv.RevokeIdentity(f.ctx, id, "certificateHold", "op", "req"); !errors.Is(err, ErrInvalidReason) {
				t.Fatalf("a refused reason: %v", err)
			}
			certs, err := rv.RevokeIdentity(f.ctx, id, "keyCompromise", "op", "req")
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 2 {
				t.Fatalf("revoked %d certificates, want 2", len(certs))
			}
			for _, c := range certs {
				if c.Serial != held[0] && c.Serial != held[1] {
					t.Errorf("revoked %s of %s", c.Serial, c.SPIFFEID)
				}
				// Answered revoked as soon as RevokeIdentity returns, from the
				// response it signed and stored.
				x, err := x509.ParseCertificate(c.DER)
				if err != nil {
					t.Fatal(err)
				}
				if s := f.status(rs, request(t, f.inter, x.SerialNumber, crypto.SHA1)); s != StatusRevoked {
					t.Errorf("OCSP for %s right after RevokeIdentity: %s, want revoked", c.Serial, s)
				}
				stored, err := f.st.GetOCSPResponse(f.ctx, c.Serial)
				if err != nil || !stored.Revoked {
					t.Errorf("stored OCSP response of %s = %+v, %v; want revoked", c.Serial, stored.Revoked, err)
				}
			}
			if s := f.status(rs, request(t, f.inter, other.Certificate.SerialNumber, crypto.SHA1)); s != StatusGood {
				t.Errorf("OCSP for the other identity: %s", s)
			}
			f.refresh(p)
			listed := map[string]int{}
			for _, e := range f.storedCRL().RevokedCertificateEntries {
				listed[e.SerialNumber.Text(16)] = e.ReasonCode
			}
			for _, sn := range held {
				if code, ok := listed[sn]; !ok || code != 1 {
					t.Errorf("CRL entry of %s: listed %v, reason %d; want keyCompromise (1)", sn, ok, code)
				}
			}
			if _, ok := listed[other.Serial]; ok {
				t.Error("the CRL lists the other identity's certificate")
			}
			// Nothing left: no error, nothing revoked.
			if again, err := rv.RevokeIdentity(f.ctx, id, "keyCompromise", "op", "req"); err != nil || len(again) != 0 {
				t.Errorf("again: %d, %v", len(again), err)
			}
			entries, _ := f.st.AuditEntries(f.ctx, 0, 1000)
			n := 0
			for _, e := range entries {
				if e.Action == "revoke" && (e.Target == held[0] || e.Target == held[1]) {
					n++
				}
			}
			if n != 2 {
				t.Errorf("%d revoke entries for the identity's certificates, want 2", n)
			}
		})
	}
}
