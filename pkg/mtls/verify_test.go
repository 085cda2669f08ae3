package mtls_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

func TestVerifyClassification(t *testing.T) {
	ca, err := testca.New(testca.Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	other, err := testca.New(testca.Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *testca.CA, l testca.Leaf) []*x509.Certificate {
		if l.SPIFFEID == "" {
			l.SPIFFEID = "spiffe://example.org/svc/a"
		}
		c, err := ca.Issue(l)
		if err != nil {
			t.Fatal(err)
		}
		return c.Chain
	}
	noID := issue(ca, testca.Leaf{})
	noID[0] = &x509.Certificate{Raw: noID[0].Raw, Subject: noID[0].Subject, SerialNumber: noID[0].SerialNumber}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	tests := []struct {
		name      string
		chain     []*x509.Certificate
		authorize mtls.Authorizer
		want      mtls.Reason
	}{
		{"a certificate 30 s ahead of our clock is within the skew tolerance", issue(ca, testca.Leaf{NotBefore: t0.Add(30 * time.Second)}), nil, ""},
		{"a certificate 2 min ahead of our clock is not_yet_valid", issue(ca, testca.Leaf{NotBefore: t0.Add(2 * time.Minute)}), nil, mtls.ReasonNotYetValid},
		{"a certificate that expired a second ago is expired", issue(ca, testca.Leaf{NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(-time.Second)}), nil, mtls.ReasonExpired},
		{"an expired certificate from an unknown CA is unknown_ca first", issue(other, testca.Leaf{NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(-time.Second)}), nil, mtls.ReasonUnknownCA},
		{"a leaf sent without its intermediate is unknown_ca", issue(ca, testca.Leaf{})[:1], nil, mtls.ReasonUnknownCA},
		{"a certificate without a SPIFFE ID is identity_not_authorized", noID, nil, mtls.ReasonIdentityNotAuthorized},
		{"a member of another trust domain refused by AuthorizeMemberOf is wrong_trust_domain", issue(ca, testca.Leaf{}),
			mtls.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString("prod.example.org")), mtls.ReasonWrongTrustDomain},
		{"an ID refused by a predicate is identity_not_authorized", issue(ca, testca.Leaf{}),
			mtls.AuthorizeIf(func(id spiffeid.ID) bool { return strings.HasPrefix(id.Path(), "/ops/") }), mtls.ReasonIdentityNotAuthorized},
		{"an ID accepted by a predicate is accepted", issue(ca, testca.Leaf{}),
			mtls.AuthorizeIf(func(id spiffeid.ID) bool { return strings.HasPrefix(id.Path(), "/svc/") }), ""},
		{"a trust-domain member is accepted by AuthorizeMemberOf", issue(ca, testca.Leaf{}), mtls.AuthorizeMemberOf(td), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.authorize == nil {
				tt.authorize = mtls.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/svc/a"))
			}
			v, err := mtls.NewVerifier(mtls.VerifierConfig{Bundles: bundleOf(ca), Authorize: tt.authorize, Clock: clock.NewFake(t0)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(context.Background(), tt.chain, mtls.PeerIsClient)
			if tt.want == "" {
				if err != nil || got.ID.String() != tt.chain[0].URIs[0].String() {
					t.Fatalf("Verify = %v, %v; want accepted", got, err)
				}
				return
			}
			re, ok := errors.AsType[*mtls.RejectError](err)
			if !ok || re.Reason != tt.want {
				t.Fatalf("Verify error = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestNewVerifierNeedsBundlesAndAnAuthorizer(t *testing.T) {
	ca, _ := testca.New(testca.Options{Now: t0})
	if _, err := mtls.NewVerifier(mtls.VerifierConfig{Bundles: bundleOf(ca)}); !errors.Is(err, mtls.ErrConfig) {
		t.Errorf("without authorizer: %v", err)
	}
	if _, err := mtls.NewVerifier(mtls.VerifierConfig{Authorize: mtls.AuthorizeAny()}); !errors.Is(err, mtls.ErrConfig) {
		t.Errorf("without bundles: %v", err)
	}
}
