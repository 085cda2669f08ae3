package authz

// The offline test runner behind `ca authz test POLICY --cases CASES`: a YAML
// file of calls (source, service, method, path, optional headers, time and
// overrides) with the decision each must get, run against a policy without
// any network, so a policy change can be tested in CI before it is deployed.

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/internal/casefile"
)

// TestCase is one offline call and what it must get.
type TestCase struct {
	Name    string            `yaml:"name"`
	Source  string            `yaml:"source"` // "" = no verified identity
	Service string            `yaml:"service"`
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"`
	Headers map[string]string `yaml:"headers"`
	// Time is request.time (RFC 3339); default 1970-01-01T00:00:00Z.
	Time      time.Time   `yaml:"time"`
	Overrides []Override  `yaml:"overrides"`
	Expect    Expectation `yaml:"expect"`
}

// Expectation is what a case expects; at least one field is set, unset ones
// are not checked.
type Expectation struct {
	Decision string `yaml:"decision"` // allow | deny | would_deny
	Reason   string `yaml:"reason"`
	Endpoint string `yaml:"endpoint"`
	Override string `yaml:"override"`
}

// CaseResult is the outcome of one TestCase; Failures are human-readable
// lines, empty when Passed.
type CaseResult struct {
	Name     string
	Passed   bool
	Decision Decision
	Failures []string
}

// String renders "PASS name" or "FAIL name" with indented failures.
func (r CaseResult) String() string {
	return casefile.Line(r.Name, r.Passed, r.Failures)
}

// ParseTestCases decodes a test-cases file strictly (unknown fields are
// errors) and checks every case names a method, a path and an expectation.
func ParseTestCases(data []byte) ([]TestCase, error) {
	cases, err := casefile.Decode(data, "authz test cases", func(c *TestCase) *string { return &c.Name })
	if err != nil {
		return nil, err
	}
	for i := range cases {
		c := &cases[i]
		if c.Service == "" || c.Method == "" || c.Path == "" {
			return nil, fmt.Errorf("authz test cases: %s: service, method and path are required", c.Name)
		}
		if c.Expect == (Expectation{}) {
			return nil, fmt.Errorf("authz test cases: %s: expect names nothing to check", c.Name)
		}
		switch c.Expect.Decision {
		case "", DecisionAllow, DecisionDeny, DecisionWouldDeny:
		default:
			return nil, fmt.Errorf("authz test cases: %s: expect.decision %q is not allow, deny or would_deny", c.Name, c.Expect.Decision)
		}
		if c.Expect.Reason != "" && !isReason(c.Expect.Reason) {
			return nil, fmt.Errorf("authz test cases: %s: expect.reason %q is not one of %s", c.Name, c.Expect.Reason, strings.Join(Reasons, ", "))
		}
	}
	return cases, nil
}

func isReason(s string) bool {
	for _, r := range Reasons {
		if r == s {
			return true
		}
	}
	return false
}

// RunTests decides every case against p and compares.
func RunTests(p *Policy, cases []TestCase) []CaseResult {
	out := make([]CaseResult, 0, len(cases))
	for _, c := range cases {
		var hdr http.Header
		if len(c.Headers) > 0 {
			hdr = http.Header{}
			for k, v := range c.Headers {
				hdr.Set(k, v)
			}
		}
		t := c.Time
		if t.IsZero() {
			t = time.Unix(0, 0).UTC()
		}
		d := p.Decide(Request{Source: c.Source, Service: c.Service, Method: c.Method, Path: c.Path, Header: hdr, Time: t}, c.Overrides)
		res := CaseResult{Name: c.Name, Decision: d}
		check := func(field, want, got string) {
			if want != "" && want != got {
				res.Failures = append(res.Failures, fmt.Sprintf("%s: got %q, want %q", field, got, want))
			}
		}
		check("decision", c.Expect.Decision, d.Decision)
		check("reason", c.Expect.Reason, d.Reason)
		check("endpoint", c.Expect.Endpoint, d.Endpoint)
		check("override", c.Expect.Override, d.OverrideID)
		res.Passed = len(res.Failures) == 0
		out = append(out, res)
	}
	return out
}
