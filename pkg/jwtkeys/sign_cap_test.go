package jwtkeys_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
)

// TestTokensExpireNoLaterThanTheAuthorisingCertificate signs on SoftHSM and
// records in Postgres: a request whose certificate ends before the asked
// lifetime gets a token that ends with the certificate (rounded down to the
// second), audited as capped; one that ends within the second is refused.
func TestTokensExpireNoLaterThanTheAuthorisingCertificate(t *testing.T) {
	f := newFixture(t, softhsmBackend, testConfig(hsm.ECDSAP256), time.Now().Truncate(time.Second))
	f.tick(t)
	now := f.clk.Now()
	notAfter := now.Add(90*time.Second + 400*time.Millisecond)
	tok, err := f.signer.Sign(ctxT(t), jwtkeys.Request{
		SPIFFEID: "spiffe://example.org/a", Audience: []string{"x"}, TTL: 5 * time.Minute, NotAfter: notAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := now.Add(90 * time.Second)
	if !tok.Expiry.Equal(want) {
		t.Errorf("Expiry %s, want %s (the certificate's notAfter, whole seconds)", tok.Expiry, want)
	}
	svid, err := jwtsvid.ParseAndValidate(tok.Token, f.spiffeBundle(t), []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	if !svid.Expiry.Equal(want) {
		t.Errorf("exp claim %s, want %s", svid.Expiry, want)
	}
	entries, err := f.st.AuditEntries(ctxT(t), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Capped    bool      `json:"capped_by_certificate"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(entries[len(entries)-1].Details, &d); err != nil || !d.Capped || !d.ExpiresAt.Equal(want) {
		t.Errorf("audit details %s: want capped_by_certificate and expires_at %s", entries[len(entries)-1].Details, want)
	}

	// A certificate that outlives the asked lifetime changes nothing.
	tok, err = f.signer.Sign(ctxT(t), jwtkeys.Request{
		SPIFFEID: "spiffe://example.org/a", Audience: []string{"x"}, TTL: time.Minute, NotAfter: now.Add(time.Hour),
	})
	if err != nil || !tok.Expiry.Equal(now.Add(time.Minute)) {
		t.Errorf("uncapped token: %v, expiry %v", err, tok)
	}

	// A certificate that ends within the second authorises nothing.
	_, err = f.signer.Sign(ctxT(t), jwtkeys.Request{
		SPIFFEID: "spiffe://example.org/a", Audience: []string{"x"}, TTL: time.Minute, NotAfter: now.Add(500 * time.Millisecond),
	})
	if !errors.Is(err, jwtkeys.ErrInvalidRequest) {
		t.Errorf("a certificate ending within the second: err = %v, want ErrInvalidRequest", err)
	}
}
