package policy

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Policy is a parsed, validated and compiled policy file. It is immutable and
// safe for concurrent use; a reload builds a new one (see Holder).
type Policy struct {
	version     string
	trustDomain spiffeid.TrustDomain
	dnsDomains  []string
	issuers     []TokenIssuer
	rules       []*rule
	roles       []*roleRule
	guard       *nameGuard
	jwt         jwtPolicy
	onReuse     OnReuse
}

// Version is the hex SHA-256 of the policy file's bytes; it is recorded with
// every decision.
func (p *Policy) Version() string { return p.version }

// TrustDomain is the SPIFFE trust domain every issued ID belongs to.
func (p *Policy) TrustDomain() string { return p.trustDomain.Name() }

// TokenIssuers returns a copy of the configured token issuers, in file order.
func (p *Policy) TokenIssuers() []TokenIssuer { return append([]TokenIssuer(nil), p.issuers...) }

// IssuerByName returns the token issuer with that policy name.
func (p *Policy) IssuerByName(name string) (TokenIssuer, bool) {
	for _, is := range p.issuers {
		if is.Name == name {
			return is, true
		}
	}
	return TokenIssuer{}, false
}

// IssuerByURL returns the token issuer whose `iss` value is exactly iss.
// Issuer URLs are unique within a policy.
func (p *Policy) IssuerByURL(iss string) (TokenIssuer, bool) {
	for _, is := range p.issuers {
		if is.Issuer == iss {
			return is, true
		}
	}
	return TokenIssuer{}, false
}

// CheckNames applies the hard name guard (trust domain and
// permitted_dns_domains) to an identity; renewal uses it to re-check an
// identity against the current policy. It returns a *DenyError with Check
// "name_guard".
func (p *Policy) CheckNames(spiffeID string, dnsNames []string) error {
	if err := p.guard.check(spiffeID, dnsNames); err != nil {
		return &DenyError{Check: CheckNameGuard, Detail: err.Error(), Err: err}
	}
	return nil
}

func compile(f *file, version string) (*Policy, error) {
	if f.TrustDomain == "" {
		return nil, errors.New("trust_domain is required")
	}
	td, err := spiffeid.TrustDomainFromString(f.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust_domain: %w", err)
	}
	if td.Name() != f.TrustDomain {
		return nil, fmt.Errorf("trust_domain %q must be a bare lower-case name", f.TrustDomain)
	}
	p := &Policy{version: version, trustDomain: td, dnsDomains: f.PermittedDNSDomains}
	if p.guard, err = newNameGuard(td, f.PermittedDNSDomains); err != nil {
		return nil, err
	}

	names, urls := map[string]bool{}, map[string]bool{}
	for _, fi := range f.TokenIssuers {
		is, err := compileIssuer(fi)
		if err != nil {
			return nil, err
		}
		if names[is.Name] {
			return nil, fmt.Errorf("token issuer %q is defined twice", is.Name)
		}
		if urls[is.Issuer] {
			return nil, fmt.Errorf("token issuer %q: issuer URL %q is used by another token issuer", is.Name, is.Issuer)
		}
		names[is.Name], urls[is.Issuer] = true, true
		p.issuers = append(p.issuers, is)
	}

	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ruleNames := map[string]bool{}
	for i, fr := range f.Rules {
		r, err := compileRule(env, p, fr)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%q): %w", i+1, fr.Name, err)
		}
		if ruleNames[r.name] {
			return nil, fmt.Errorf("rule %q is defined twice", r.name)
		}
		ruleNames[r.name] = true
		p.rules = append(p.rules, r)
	}
	if p.jwt, err = p.compileJWT(f.JWT); err != nil {
		return nil, err
	}
	if p.onReuse, err = compileRenewal(f.Renewal); err != nil {
		return nil, err
	}
	for i, fr := range f.Roles {
		r, err := compileRole(env, p, fr)
		if err != nil {
			return nil, fmt.Errorf("role entry %d (%s): %w", i+1, fr.Role, err)
		}
		p.roles = append(p.roles, r)
	}
	return p, nil
}
