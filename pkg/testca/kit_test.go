package testca_test

import (
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/testca"
)

func TestKitCredentialsHaveTheirDefects(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	k, err := testca.NewKit(testca.KitOptions{Now: now, CRLURL: "http://127.0.0.1:1/crl/x.crl"})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(k.CRL)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(k.CA.Intermediate); err != nil {
		t.Fatalf("CRL not signed by the test intermediate: %v", err)
	}
	leaf := func(name string) *x509.Certificate { return k.Credential(name).Leaf() }
	tests := []struct {
		name string
		ok   bool
	}{
		{"the good control is valid now and has both EKUs", leaf(testca.Good).NotBefore.Before(now) && now.Before(leaf(testca.Good).NotAfter) &&
			slices.Contains(leaf(testca.Good).ExtKeyUsage, x509.ExtKeyUsageClientAuth) && slices.Contains(leaf(testca.Good).ExtKeyUsage, x509.ExtKeyUsageServerAuth)},
		{"expired is past its notAfter", leaf(testca.Expired).NotAfter.Before(now)},
		{"not-yet-valid starts years ahead", leaf(testca.NotYetValid).NotBefore.After(now.Add(365 * 24 * time.Hour))},
		{"wrong-ca is signed by the other CA", leaf(testca.WrongCA).CheckSignatureFrom(k.Other.Intermediate) == nil},
		{"wrong-trust-domain names another trust domain", leaf(testca.WrongTrustDom).URIs[0].Host != k.CA.TrustDomain.Name()},
		{"wrong-spiffe-id is not the authorized ID", leaf(testca.WrongID).URIs[0].String() != k.AuthorizedID},
		{"revoked is on the CRL", len(crl.RevokedCertificateEntries) == 1 && crl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf(testca.Revoked).SerialNumber) == 0},
		{"no-client-auth-eku lacks clientAuth", !slices.Contains(leaf(testca.NoClientAuthEKU).ExtKeyUsage, x509.ExtKeyUsageClientAuth)},
		{"no-server-auth-eku lacks serverAuth", !slices.Contains(leaf(testca.NoServerAuthEKU).ExtKeyUsage, x509.ExtKeyUsageServerAuth)},
		{"every test CA leaf carries the CRL URL", slices.Equal(leaf(testca.Good).CRLDistributionPoints, []string{"http://127.0.0.1:1/crl/x.crl"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Fail()
			}
		})
	}
}
