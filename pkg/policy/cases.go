package policy

// The offline test runner behind `ca policy test FILE`: a YAML file of cases
// (issuer + claims in, expected identity, denial or roles out) run against a
// policy without any network, token or database, so policy changes can be
// tested in CI before they are deployed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/workload-ca/workload-ca/internal/casefile"
)

// TestCase is one offline check of a policy. Exactly one of Issuer (with
// Claims) or ClientSPIFFEID says who asks.
type TestCase struct {
	Name           string         `yaml:"name"`
	Issuer         string         `yaml:"issuer"`           // token issuer name as in the policy
	Claims         map[string]any `yaml:"claims"`           // the token's claims
	ClientSPIFFEID string         `yaml:"client_spiffe_id"` // for role checks of a client certificate
	Expect         Expectation    `yaml:"expect"`
}

// Expectation is what a case expects. Enrollment is checked when any of
// Denied, Rule, SPIFFEID, DNSNames or Check is set; roles when Roles is set
// (an empty list expects no roles).
type Expectation struct {
	Denied   *bool    `yaml:"denied"`
	Check    string   `yaml:"check"` // with denied: the DenyError check, e.g. no_rule_matched
	Rule     string   `yaml:"rule"`
	SPIFFEID string   `yaml:"spiffe_id"`
	DNSNames []string `yaml:"dns_names"`
	Roles    []Role   `yaml:"roles"`
}

// Result is the outcome of one TestCase. Failures are human-readable lines,
// empty when Passed.
type Result struct {
	Name     string
	Passed   bool
	Failures []string
}

// String renders the result as one or more lines: "PASS name" or "FAIL name"
// followed by indented failures.
func (r Result) String() string {
	return casefile.Line(r.Name, r.Passed, r.Failures)
}

// ParseTestCases decodes a test-cases file strictly. Claims are normalised
// through JSON so that they have the same types as the claims of a real token
// (numbers become float64).
func ParseTestCases(data []byte) ([]TestCase, error) {
	cases, err := casefile.Decode(data, "policy test cases", func(c *TestCase) *string { return &c.Name })
	if err != nil {
		return nil, err
	}
	for i := range cases {
		c := &cases[i]
		if (c.Issuer == "") == (c.ClientSPIFFEID == "") {
			return nil, fmt.Errorf("policy test cases: %s: exactly one of issuer or client_spiffe_id is required", c.Name)
		}
		if c.Claims != nil {
			raw, err := json.Marshal(c.Claims)
			if err != nil {
				return nil, fmt.Errorf("policy test cases: %s: claims: %w", c.Name, err)
			}
			c.Claims = nil
			if err := json.Unmarshal(raw, &c.Claims); err != nil {
				return nil, fmt.Errorf("policy test cases: %s: claims: %w", c.Name, err)
			}
		}
	}
	return cases, nil
}

// RunTests runs every case against p and returns one Result per case, in
// order. It never stops early.
func RunTests(p *Policy, cases []TestCase) []Result {
	out := make([]Result, 0, len(cases))
	for _, c := range cases {
		out = append(out, runCase(p, c))
	}
	return out
}

func runCase(p *Policy, c TestCase) Result {
	res := Result{Name: c.Name}
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	e := c.Expect
	checksEnroll := e.Denied != nil || e.Rule != "" || e.SPIFFEID != "" || e.DNSNames != nil || e.Check != ""
	if !checksEnroll && e.Roles == nil {
		fail("the case expects nothing: set expect.denied, rule, spiffe_id, dns_names or roles")
	}
	if checksEnroll && c.Issuer != "" {
		m, err := p.Evaluate(context.Background(), c.Issuer, c.Claims)
		var de *DenyError
		wantDenied := e.Denied != nil && *e.Denied
		switch {
		case err != nil && !errors.As(err, &de):
			fail("evaluation error: %v", err)
		case err != nil && !wantDenied:
			fail("expected a match, got a denial: %v", err)
		case err != nil:
			if e.Check != "" && de.Check != e.Check {
				fail("denied by check %q, expected %q (%s)", de.Check, e.Check, de.Detail)
			}
			if e.Rule != "" && de.Rule != e.Rule {
				fail("denied by rule %q, expected rule %q", de.Rule, e.Rule)
			}
		case wantDenied:
			fail("expected a denial, got a match by rule %q with spiffe_id %s", m.Rule, m.SPIFFEID)
		default:
			if e.Rule != "" && m.Rule != e.Rule {
				fail("matched rule %q, expected %q", m.Rule, e.Rule)
			}
			if e.SPIFFEID != "" && m.SPIFFEID != e.SPIFFEID {
				fail("spiffe_id is %s, expected %s", m.SPIFFEID, e.SPIFFEID)
			}
			if e.DNSNames != nil && !slices.Equal(m.DNSNames, e.DNSNames) {
				fail("dns_names are %v, expected %v", m.DNSNames, e.DNSNames)
			}
		}
	} else if checksEnroll {
		fail("enrollment expectations need issuer and claims")
	}
	if e.Roles != nil {
		var got []Role
		if c.Issuer != "" {
			got = p.Roles(c.Issuer, c.Claims)
		} else {
			got = p.RolesForSPIFFEID(c.ClientSPIFFEID)
		}
		want := slices.Clone(e.Roles)
		want = expandRoles(roleSet(want))
		if !slices.Equal(got, want) {
			fail("roles are %v, expected %v", got, want)
		}
	}
	res.Passed = len(res.Failures) == 0
	return res
}

func roleSet(rs []Role) map[Role]bool {
	m := map[Role]bool{}
	for _, r := range rs {
		m[r] = true
	}
	return m
}
