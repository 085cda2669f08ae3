package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/policy"
)

func leafFor(t *testing.T, id string, dns []string) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xabc), URIs: []*url.URL{u}, DNSNames: dns, NotBefore: t0, NotAfter: t0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDecideRenewal(t *testing.T) {
	f := newFixture(t)
	cur := leafFor(t, "spiffe://example.org/prod/payments", []string{"payments.prod.internal", "api.prod.internal"})
	d, err := f.d.DecideRenewal(context.Background(), cur, "payments-main", newCSR(t, csrOpts{}), 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.SPIFFEID != "spiffe://example.org/prod/payments" || !slices.Equal(d.DNSNames, cur.DNSNames) || d.TTL != 30*time.Minute {
		t.Errorf("renewal decision %q %v %v", d.SPIFFEID, d.DNSNames, d.TTL)
	}
	var p RenewalProvenance
	if err := json.Unmarshal(d.Provenance, &p); err != nil || p.RenewedFrom != "abc" || p.PolicyRule != "payments-main" {
		t.Errorf("provenance %s (%v)", d.Provenance, err)
	}

	tests := []struct {
		name   string
		cert   *x509.Certificate
		rule   string
		csr    []byte
		ttl    time.Duration
		reason string
		check  string
	}{
		{"a rule removed from the policy stops renewal", cur, "gone", newCSR(t, csrOpts{}), 0, ReasonPolicyDenied, policy.CheckRuleRemoved},
		{"an identity outside the trust domain cannot renew", leafFor(t, "spiffe://other.org/x", nil), "payments-main", newCSR(t, csrOpts{}), 0, ReasonPolicyDenied, policy.CheckNameGuard},
		{"a CSR asking for more names than the certificate had is refused", cur, "payments-main", newCSR(t, csrOpts{dns: []string{"x.prod.internal"}}), 0, ReasonPolicyDenied, policy.CheckNames},
		{"a ttl above the rule's max_ttl is refused", cur, "payments-main", newCSR(t, csrOpts{}), 2 * time.Hour, ReasonTTLTooLong, ""},
		{"a bad CSR is refused", cur, "payments-main", []byte("x"), 0, ReasonCSRMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.d.DecideRenewal(context.Background(), tc.cert, tc.rule, tc.csr, tc.ttl)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason || e.Check != tc.check {
				t.Fatalf("DecideRenewal = %v (check %q), want %s/%s", err, func() string {
					if e != nil {
						return e.Check
					}
					return ""
				}(), tc.reason, tc.check)
			}
		})
	}
}
