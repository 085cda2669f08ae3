package policy

import (
	"errors"
	"strings"
	"testing"
)

const reservedBase = `
trust_domain: example.org
token_issuers:
  - name: github
    issuer: https://token.actions.githubusercontent.com
    audience: https://ca.example.org
rules:
  - name: r
    issuer: github
    when: "true"
    max_ttl: 1h
`

func TestAPolicyGrantingTheCAsSPIFFEIDsIsRefusedAtLoad(t *testing.T) {
	tests := []struct {
		name, spiffeID string
		refused        bool
	}{
		{"the CA's server identity is refused", "spiffe://example.org/ca/server", true},
		{"a template under /ca/ is refused", "spiffe://example.org/ca/{{claims.repository}}", true},
		{"a literal prefix reaching into /ca/ is refused", "spiffe://example.org/ca/x{{claims.sub}}", true},
		{"exactly /ca is refused", "spiffe://example.org/ca", true},
		{"a path that merely starts with ca is allowed", "spiffe://example.org/cache/{{claims.sub}}", false},
		{"ca deeper in the path is allowed", "spiffe://example.org/ci/ca/{{claims.sub}}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(reservedBase + "    spiffe_id: '" + tt.spiffeID + "'\n"))
			if tt.refused != (err != nil) {
				t.Fatalf("Parse: %v, want refused=%v", err, tt.refused)
			}
			if tt.refused && (!errors.Is(err, ErrReservedName) || !strings.Contains(err.Error(), "/ca/")) {
				t.Errorf("error %q does not say the name is the CA's", err)
			}
		})
	}
}

func TestAPolicyGrantingTheCAsHostNamesIsRefused(t *testing.T) {
	hosts := []string{"ca.example.org", "localhost"}
	tests := []struct {
		name, dnsNames string
		refused        bool
	}{
		{"the CA's API host name is refused", "[ca.example.org]", true},
		{"the host name in another case is refused", "[other.internal, CA.Example.ORG]", true},
		{"a sub-domain of the CA's host is allowed", "[api.ca.example.org]", false},
		{"a template is left to issuance", "['{{claims.sub}}.example.org']", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte("permitted_dns_domains: [example.org, '*.example.org', '*.ca.example.org', '*.internal']\n" + reservedBase + "    spiffe_id: spiffe://example.org/w\n    dns_names: " + tt.dnsNames + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckReservedDNSNames(hosts)
			if tt.refused != (err != nil) {
				t.Fatalf("CheckReservedDNSNames: %v, want refused=%v", err, tt.refused)
			}
			if tt.refused && (!errors.Is(err, ErrReservedName) || !strings.Contains(err.Error(), `rule "r"`)) {
				t.Errorf("error %q does not name the rule", err)
			}
		})
	}
}
