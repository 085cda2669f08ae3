package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func mustLoad(t testing.TB) *Policy {
	t.Helper()
	p, err := LoadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	return p
}

const basePolicy = `
trust_domain: example.org
permitted_dns_domains: ["*.prod.internal"]
token_issuers:
  - name: github
    issuer: https://token.actions.githubusercontent.com
    audience: https://ca.example.org
`

func TestLoadFileComputesVersionAndResolvesJWKSFile(t *testing.T) {
	p := mustLoad(t)
	if len(p.Version()) != 64 {
		t.Errorf("Version() = %q, want 64 hex characters", p.Version())
	}
	k8s, ok := p.IssuerByName("k8s")
	if !ok || k8s.JWKSFile != "testdata/k8s-jwks.json" {
		t.Errorf("k8s jwks_file = %q, want testdata/k8s-jwks.json", k8s.JWKSFile)
	}
	if gl, _ := p.IssuerByName("gitlab"); gl.Leeway.Seconds() != 10 {
		t.Errorf("gitlab leeway = %v, want 10s", gl.Leeway)
	}
	if _, ok := p.IssuerByURL("https://login.example.org"); !ok {
		t.Error("IssuerByURL did not find corp-idp")
	}
	data, _ := os.ReadFile("testdata/policy.yaml")
	p2, err := Parse(append(data, '\n'))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Version() == p.Version() {
		t.Error("a changed file kept the same version")
	}
}

func TestParseRefusesInvalidPolicies(t *testing.T) {
	rule := func(extra string) string {
		return basePolicy + "rules:\n  - name: r\n    issuer: github\n    when: 'true'\n    max_ttl: 1h\n" + extra
	}
	tests := []struct {
		name string
		yaml string
		want string // substring of the error, for the reader; the sentinel is always ErrInvalid
	}{
		{"an unknown top-level field is refused", basePolicy + "rulez: []\n", "rulez"},
		{"an unknown rule field is refused", rule("    spiffe_id: spiffe://example.org/a\n    colour: red\n"), "colour"},
		{"a missing trust domain is refused", "token_issuers: []\n", "trust_domain"},
		{"an upper-case trust domain is refused", "trust_domain: Example.org\n", "trust_domain"},
		{"a trust domain with a path is refused", "trust_domain: spiffe://example.org/x\n", "trust_domain"},
		{"a rule naming an unknown issuer is refused", basePolicy + "rules:\n  - {name: r, issuer: gitlab, when: 'true', spiffe_id: 'spiffe://example.org/a', max_ttl: 1h}\n", "not a configured token issuer"},
		{"a role naming an unknown issuer is refused", basePolicy + "roles:\n  - {role: admin, issuer: nope, when: 'true'}\n", "not a configured token issuer"},
		{"an unknown role is refused", basePolicy + "roles:\n  - {role: root, client_spiffe_id: 'spiffe://example.org/x'}\n", "not one of"},
		{"a role for every token of an issuer is refused", basePolicy + "roles:\n  - {role: admin, issuer: github}\n", "when is required"},
		{"a condition that does not compile is refused", basePolicy + "rules:\n  - {name: r, issuer: github, when: 'claims.x ==', spiffe_id: 'spiffe://example.org/a', max_ttl: 1h}\n", "compile"},
		{"a condition that is not bool is refused", basePolicy + "rules:\n  - {name: r, issuer: github, when: 'claims.x', spiffe_id: 'spiffe://example.org/a', max_ttl: 1h}\n", "want bool"},
		{"a max_ttl that does not parse is refused", basePolicy + "rules:\n  - {name: r, issuer: github, when: 'true', spiffe_id: 'spiffe://example.org/a', max_ttl: 1 hour}\n", "max_ttl"},
		{"a missing max_ttl is refused", basePolicy + "rules:\n  - {name: r, issuer: github, when: 'true', spiffe_id: 'spiffe://example.org/a'}\n", "max_ttl is required"},
		{"a ttl above max_ttl is refused", rule("    spiffe_id: spiffe://example.org/a\n    ttl: 2h\n"), "ttl"},
		{"a spiffe_id in another trust domain is refused", rule("    spiffe_id: spiffe://evil.org/a\n"), "must start with"},
		{"a placeholder in the trust domain is refused", rule("    spiffe_id: spiffe://{{claims.td}}/a\n"), "must start with"},
		{"a template with a function call is refused", rule("    spiffe_id: spiffe://example.org/{{claims.x | upper}}\n"), "placeholder"},
		{"a template over something other than claims is refused", rule("    spiffe_id: spiffe://example.org/{{env.HOME}}\n"), "placeholder"},
		{"an unterminated placeholder is refused", rule("    spiffe_id: spiffe://example.org/{{claims.x\n"), "unterminated"},
		{"a literal spiffe_id with a query is refused", rule("    spiffe_id: spiffe://example.org/a?b\n"), "spiffe_id"},
		{"a DNS name outside permitted_dns_domains is refused", rule("    spiffe_id: spiffe://example.org/a\n    dns_names: [evil.com]\n"), "not allowed"},
		{"a single-label DNS name is refused (pkg/names: workload names have two labels)", rule("    spiffe_id: spiffe://example.org/a\n    dns_names: [orders]\n"), "two labels"},
		{"an IP literal as a DNS name is refused", rule("    spiffe_id: spiffe://example.org/a\n    dns_names: ['10.0.0.1']\n"), "IP address"},
		{"a DNS name two labels below a wildcard domain is refused", rule("    spiffe_id: spiffe://example.org/a\n    dns_names: ['a.b.c.prod.internal']\n"), "not allowed"},
		{"an unknown key type is refused", rule("    spiffe_id: spiffe://example.org/a\n    key_types: [rsa-1024]\n"), "key type"},
		{"two issuers with one name are refused", basePolicy + "  - {name: github, issuer: 'https://x.example.org', audience: a}\n", "twice"},
		{"two issuers with one URL are refused", basePolicy + "  - {name: gh2, issuer: 'https://token.actions.githubusercontent.com', audience: a}\n", "used by another"},
		{"a plain-http issuer is refused", "trust_domain: example.org\ntoken_issuers:\n  - {name: a, issuer: 'http://a.example.org', audience: a}\n", "https"},
		{"jwks_url together with jwks_file is refused", "trust_domain: example.org\ntoken_issuers:\n  - {name: a, issuer: 'https://a.example.org', audience: a, jwks_url: 'https://a.example.org/k', jwks_file: k.json}\n", "exclusive"},
		{"a leeway of an hour is refused", "trust_domain: example.org\ntoken_issuers:\n  - {name: a, issuer: 'https://a.example.org', audience: a, leeway: 1h}\n", "leeway"},
		{"two YAML documents are refused", basePolicy + "---\ntrust_domain: other.org\n", "more than one"},
		{"an empty file is refused", "", "empty"},
		{"a reauthenticate_after above 365 days is refused", rule("    spiffe_id: spiffe://example.org/a\n    reauthenticate_after: 8761h\n"), "reauthenticate_after"},
		{"a reauthenticate_after that does not parse is refused", rule("    spiffe_id: spiffe://example.org/a\n    reauthenticate_after: 30 days\n"), "reauthenticate_after"},
		{"an unknown on_reuse is refused", basePolicy + "renewal:\n  on_reuse: ignore\n", "on_reuse"},
		{"an unknown renewal field is refused", basePolicy + "renewal:\n  on_reuse: deny\n  grace: 1h\n", "grace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse() error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse() error = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseRefusesOversizedFile(t *testing.T) {
	big := []byte(basePolicy + "#" + strings.Repeat("x", MaxFileBytes) + "\n")
	if _, err := Parse(big); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse(oversized) = %v, want ErrInvalid", err)
	}
}
