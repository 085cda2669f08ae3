package policy

import (
	"crypto/x509"
	"fmt"
	"net/url"

	steppolicy "github.com/smallstep/certificates/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// maxSPIFFEIDBytes is the SPIFFE spec's limit on an ID's length.
const maxSPIFFEIDBytes = 2048

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
	sid, err := parseSPIFFEID(id)
	if err != nil {
		return err
	}
	if sid.TrustDomain() != g.td {
		return fmt.Errorf("SPIFFE ID %q is outside trust domain %q", id, g.td.Name())
	}
	u, err := url.Parse(sid.String())
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

// parseSPIFFEID accepts exactly the SPIFFE ID syntax (scheme spiffe, lower-case
// trust domain, path segments of [a-zA-Z0-9._-], no empty or dot segments, no
// query, fragment, port or user info) with a non-empty path.
func parseSPIFFEID(id string) (spiffeid.ID, error) {
	if len(id) > maxSPIFFEIDBytes {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID longer than %d bytes", maxSPIFFEIDBytes)
	}
	sid, err := spiffeid.FromString(id)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID %q: %w", id, err)
	}
	if sid.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID %q has no path", id)
	}
	return sid, nil
}
