package revoke

import (
	"crypto"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// After retention pruned an expired certificate and its pre-signed
// response, OCSP answers unknown for its serial (RFC 6960 allows it after
// expiry) and the CRL has no entry for it.
func TestPrunedSerialAnswersUnknown(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t, b, shortConfig())
			p := f.publisher()
			rv := f.revoker(p)
			leaf := f.leaf("pruned", time.Hour)
			f.refresh(p)
			serial := leaf.Serial
			if _, _, err := rv.Revoke(f.ctx, serial, "keyCompromise", "op", "req-1"); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			f.clk.Advance(3 * time.Hour)
			if n, err := f.st.PruneOCSPResponses(f.ctx, f.clk.Now().Add(-time.Hour), 100); err != nil || n != 1 {
				t.Fatalf("PruneOCSPResponses = %d, %v; want 1", n, err)
			}
			if n, err := f.st.PruneExpiredCertificates(f.ctx, f.clk.Now().Add(-time.Hour), 100); err != nil || n != 1 {
				t.Fatalf("PruneExpiredCertificates = %d, %v; want 1", n, err)
			}
			resp, err := f.responder().Respond(f.ctx, request(t, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1))
			if err != nil {
				t.Fatalf("Respond: %v", err)
			}
			parsed, err := ocsp.ParseResponseForCert(resp.DER, nil, f.inter)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if resp.Status != StatusUnknown || parsed.Status != ocsp.Unknown {
				t.Errorf("pruned serial answered %s, want unknown", resp.Status)
			}
			f.refresh(p)
			for _, e := range f.storedCRL().RevokedCertificateEntries {
				if e.SerialNumber.Cmp(leaf.Certificate.SerialNumber) == 0 {
					t.Errorf("the CRL still lists the pruned, expired serial %s", serial)
				}
			}
		})
	}
}
