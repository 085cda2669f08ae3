package bundle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"

	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/issuer"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestBundleJSONIsASPIFFEBundle(t *testing.T) {
	a, b := selfSigned(t, "a", t0, true), selfSigned(t, "b", t0.Add(time.Hour), true)
	k1, k2 := jwtKey(t, "kid-1"), jwtKey(t, "kid-2")
	c, err := bundle.NewContent([]*x509.Certificate{b, a}, []bundle.JWTAuthority{k2, k1})
	if err != nil {
		t.Fatal(err)
	}
	js, err := bundle.RenderJSON(c, 42, 90*time.Second+time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := spiffebundle.Parse(td, js)
	if err != nil {
		t.Fatalf("spiffebundle.Parse: %v\n%s", err, js)
	}
	if seq, ok := sb.SequenceNumber(); !ok || seq != 42 {
		t.Errorf("spiffe_sequence = %d, %v", seq, ok)
	}
	if hint, ok := sb.RefreshHint(); !ok || hint != 91*time.Second {
		t.Errorf("spiffe_refresh_hint = %v, %v; want 91s (rounded up)", hint, ok)
	}
	if got := sb.X509Authorities(); len(got) != 2 || !got[0].Equal(a) || !got[1].Equal(b) {
		t.Errorf("x509 authorities differ")
	}
	for _, k := range []bundle.JWTAuthority{k1, k2} {
		pub, ok := sb.FindJWTAuthority(k.KeyID)
		want, _ := k.PublicKey()
		if !ok || !pub.(*ecdsa.PublicKey).Equal(want) {
			t.Errorf("JWT authority %s missing or different", k.KeyID)
		}
	}
	// The raw document: x509-svid keys carry exactly one x5c, jwt-svid keys a kid.
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range doc.Keys {
		switch k["use"] {
		case "x509-svid":
			if x5c, _ := k["x5c"].([]any); len(x5c) != 1 || k["kty"] != "EC" {
				t.Errorf("x509-svid key %v", k)
			}
		case "jwt-svid":
			if k["kid"] == nil || k["x5c"] != nil {
				t.Errorf("jwt-svid key %v", k)
			}
		default:
			t.Errorf("key with use %v", k["use"])
		}
	}
	again, _ := bundle.RenderJSON(c, 42, 90*time.Second+time.Millisecond)
	if string(again) != string(js) {
		t.Errorf("rendering is not deterministic")
	}
	if pemBody := bundle.RenderPEM(c); len(pemBody) == 0 {
		t.Errorf("empty PEM")
	}
}

// TestPublishedBundleVerifiesIssuedSVIDs issues a real X.509-SVID and checks
// it against bundle.json as a SPIFFE relying party would.
func TestPublishedBundleVerifiesIssuedSVIDs(t *testing.T) {
	ctx := context.Background()
	st := testkit.SQLite(t)
	clk := clock.NewFake(time.Now())
	iss := cafixture.New(t, testkit.SoftwareKeys(t), st, clk, nil).Issuer
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	got, err := iss.Issue(ctx, issuer.Request{PublicKey: leafKey.Public(), SPIFFEID: "spiffe://example.org/ci/payments", Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, st, clk, nil)
	v := mustPublish(t, p, bundle.PublishOptions{}).Version
	pub, err := bundle.Render(v, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := spiffebundle.Parse(td, pub.JSON)
	if err != nil {
		t.Fatalf("spiffebundle.Parse: %v", err)
	}
	chain := []*x509.Certificate{got.Certificate}
	for _, der := range got.Chain {
		c, _ := x509.ParseCertificate(der)
		chain = append(chain, c)
	}
	id, _, err := x509svid.Verify(chain, sb, x509svid.WithTime(clk.Now()))
	if err != nil || id.String() != "spiffe://example.org/ci/payments" {
		t.Fatalf("x509svid.Verify = %v, %v", id, err)
	}
	// Another trust domain's bundle must not vouch for it.
	other, _ := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("other.org"), pub.JSON)
	if _, _, err := x509svid.Verify(chain, other, x509svid.WithTime(clk.Now())); err == nil {
		t.Errorf("an SVID of example.org verified against other.org's bundle")
	}
}
