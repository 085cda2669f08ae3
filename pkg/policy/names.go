package policy

import (
	"crypto/x509"
	"fmt"
	"net/url"

	steppolicy "github.com/smallstep/certificates/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// nameGuard is the hard limit under every rule: whatever a rule or a claim
// produces, an issued SPIFFE ID must be in the trust domain and every DNS name
// inside permitted_dns_domains. It is smallstep's X.509 name-policy engine with
// the trust domain as the only permitted URI domain; because some constraint
// is always set, a DNS name with no permitted DNS domain configured is refused.
type nameGuard struct {
	td     spiffeid.TrustDomain
	engine *steppolicy.NamePolicyEngine
}

func newNameGuard(td spiffeid.TrustDomain, dnsDomains []string) (*nameGuard, error) {
	opts := []steppolicy.NamePolicyOption{steppolicy.WithPermittedURIDomains(td.Name())}
	if len(dnsDomains) > 0 {
		opts = append(opts, steppolicy.WithPermittedDNSDomains(dnsDomains...))
	}
	engine, err := steppolicy.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("permitted_dns_domains: %w", err)
	}
	return &nameGuard{td: td, engine: engine}, nil
}

// check enforces the guard on one identity.
func (g *nameGuard) check(id string, dnsNames []string) error {
	td, err := parseSPIFFEID(id)
	if err != nil {
		return err
	}
	if td != g.td.Name() {
		return fmt.Errorf("SPIFFE ID %q is outside trust domain %q", id, g.td.Name())
	}
	u, err := url.Parse(id)
	if err != nil {
		return fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	for _, n := range dnsNames {
		if err := names.CheckWorkloadDNSName(n); err != nil {
			return err
		}
	}
	cert := &x509.Certificate{URIs: []*url.URL{u}, DNSNames: dnsNames}
	if err := g.engine.IsX509CertificateAllowed(cert); err != nil {
		return fmt.Errorf("name guard: %w", err)
	}
	return nil
}

// parseSPIFFEID checks id is a SPIFFE ID with a path (names.SplitSPIFFEID,
// the rule the issuer applies too) and returns its trust domain.
func parseSPIFFEID(id string) (td string, err error) {
	td, path, err := names.SplitSPIFFEID(id)
	if err != nil {
		return "", fmt.Errorf("%q: %w", id, err)
	}
	if path == "" {
		return "", fmt.Errorf("SPIFFE ID %q has no path", id)
	}
	return td, nil
}
