package issuer

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestTheCAsOwnNamesAreRefusedToWorkloads(t *testing.T) {
	cfg := testConfig()
	cfg.ReservedDNSNames = []string{"CA.Example.org", "localhost", ""}
	cfg.ReservedIPs = []net.IP{net.ParseIP("192.0.2.10")}
	u := newUnitCA(t, cfg)
	workload := func(mod func(*Request)) Request {
		r := Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/ci/payments", Action: "issue"}
		mod(&r)
		return r
	}
	tests := []struct {
		name  string
		req   Request
		check string
	}{
		{"the CA's server SPIFFE ID is refused to a workload", workload(func(r *Request) { r.SPIFFEID = "spiffe://example.org/ca/server" }), CheckReservedSPIFFEID},
		{"any SPIFFE ID under /ca/ is refused to a workload", workload(func(r *Request) { r.SPIFFEID = "spiffe://example.org/ca/x/y" }), CheckReservedSPIFFEID},
		{"the CA's API host name is refused, whatever its case", workload(func(r *Request) { r.DNSNames = []string{"ok.internal", "ca.EXAMPLE.org"} }), CheckReservedDNSName},
		{"localhost from the server certificate is refused", workload(func(r *Request) { r.DNSNames = []string{"localhost"} }), CheckReservedDNSName},
		{"a reserved IP address is refused", workload(func(r *Request) { r.IPAddresses = []net.IP{net.ParseIP("192.0.2.10")} }), CheckReservedIP},
		{"a loopback IP address is refused", workload(func(r *Request) { r.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")} }), CheckReservedIP},
		{"a renewal is refused like an enrollment", workload(func(r *Request) {
			r.DNSNames, r.RenewedFrom, r.Action = []string{"ca.example.org"}, "abcdef", "renew"
		}), CheckReservedDNSName},
		{"a CA server request must name the CA's server identity", workload(func(r *Request) {
			r.CAServer, r.DNSNames = true, []string{"ca.example.org"}
		}), CheckServerIdentity},
		{"the authorization-policy identity is refused to a workload", workload(func(r *Request) { r.SPIFFEID = AuthzPolicySPIFFEID("example.org") }), CheckReservedSPIFFEID},
		{"an authorization-policy request must name only its identity", workload(func(r *Request) {
			r.CAAuthzPolicy = true
		}), CheckAuthzPolicyIdentity},
		{"an authorization-policy request may not carry DNS names", workload(func(r *Request) {
			r.CAAuthzPolicy, r.SPIFFEID, r.DNSNames = true, AuthzPolicySPIFFEID("example.org"), []string{"x.internal"}
		}), CheckAuthzPolicyIdentity},
		{"an authorization-policy request cannot also be the CA server", workload(func(r *Request) {
			r.CAAuthzPolicy, r.CAServer, r.SPIFFEID = true, true, AuthzPolicySPIFFEID("example.org")
		}), CheckAuthzPolicyIdentity},
		{"an authorization-policy request cannot take the server identity", workload(func(r *Request) {
			r.CAAuthzPolicy, r.SPIFFEID = true, ServerSPIFFEID("example.org")
		}), CheckAuthzPolicyIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(u.store.certs)
			got, err := u.iss.Issue(context.Background(), tt.req)
			var re *ReservedNameError
			if got != nil || !errors.Is(err, ErrReservedName) || !errors.Is(err, ErrInvalidRequest) || !errors.As(err, &re) {
				t.Fatalf("Issue = %v, %v; want a *ReservedNameError", got, err)
			}
			if re.Check != tt.check {
				t.Errorf("Check = %q, want %q", re.Check, tt.check)
			}
			if len(u.store.certs) != before {
				t.Errorf("a refused request recorded a certificate")
			}
		})
	}
}

func TestTheCAServerCertificateMayCarryTheReservedNames(t *testing.T) {
	cfg := testConfig()
	cfg.ReservedDNSNames = []string{"ca.example.org", "localhost"}
	u := newUnitCA(t, cfg)
	got, err := u.iss.Issue(context.Background(), Request{
		PublicKey: newP256(t).Public(), SPIFFEID: ServerSPIFFEID("example.org"), CAServer: true,
		DNSNames: []string{"ca.example.org", "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if len(got.Certificate.URIs) != 1 || got.Certificate.URIs[0].String() != "spiffe://example.org/ca/server" ||
		len(got.Certificate.DNSNames) != 2 || got.Certificate.DNSNames[0] != "ca.example.org" {
		t.Errorf("URIs %v, DNS names %v", got.Certificate.URIs, got.Certificate.DNSNames)
	}
}

func TestOtherNamesAreStillIssuedToWorkloads(t *testing.T) {
	cfg := testConfig()
	cfg.ReservedDNSNames = []string{"ca.example.org"}
	u := newUnitCA(t, cfg)
	got, err := u.iss.Issue(context.Background(), Request{
		PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/cache/ca/x",
		DNSNames: []string{"api.ca.example.org", "example.org"},
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if got.Certificate.URIs[0].String() != "spiffe://example.org/cache/ca/x" || len(got.Certificate.DNSNames) != 2 {
		t.Errorf("URIs %v, DNS names %v", got.Certificate.URIs, got.Certificate.DNSNames)
	}
}

func TestTheAuthzPolicySigningCertificateMayCarryItsCAIdentity(t *testing.T) {
	u := newUnitCA(t, testConfig())
	got, err := u.iss.Issue(context.Background(), Request{
		PublicKey: newP256(t).Public(), SPIFFEID: AuthzPolicySPIFFEID("example.org"), CAAuthzPolicy: true,
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if len(got.Certificate.URIs) != 1 || got.Certificate.URIs[0].String() != "spiffe://example.org/ca/authz-policy" {
		t.Errorf("URIs %v", got.Certificate.URIs)
	}
}
