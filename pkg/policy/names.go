package policy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	steppolicy "github.com/smallstep/certificates/policy"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
		if err := checkDNSName(n); err != nil {
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

// checkDNSName accepts lower-case LDH host names of at least two labels, no
// wildcards, at most 253 bytes.
func checkDNSName(n string) error {
	if n == "" || len(n) > 253 {
		return errors.New("DNS name empty or longer than 253 bytes")
	}
	labels := strings.Split(n, ".")
	if len(labels) < 2 {
		return fmt.Errorf("DNS name %q must have at least two labels", n)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("DNS name %q has an invalid label", n)
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("DNS name %q: character %q not allowed (names are lower-case LDH)", n, c)
			}
		}
	}
	return nil
}
