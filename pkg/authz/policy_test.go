package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const examplePolicy = `trust_domain: example.org
services:
  payments:
    identity: spiffe://example.org/prod/payments
    mode: enforce                  # observe | enforce
    endpoints:
      - name: refunds-write
        methods: [POST, PUT, PATCH, DELETE]
        paths: [/v1/refunds, /v1/refunds/*]
        allow: [spiffe://example.org/prod/orders]
      - name: refunds-read
        methods: [GET, HEAD]
        paths: [/v1/refunds/*]
        allow: [spiffe://example.org/prod/*]   # exact ID or path prefix /*
      - name: reports
        methods: [GET]
        paths: [/v1/reports/**]
        allow: [spiffe://example.org/prod/reporting]
        headers: [X-Tenant]
        when: request.time.getHours() >= 6 && source.path.startsWith("/prod/") && request.headers["x-tenant"] == "acme"
  reporting:
    identity: spiffe://example.org/prod/reporting
    mode: observe
    endpoints:
      - name: all
        methods: ["*"]
        paths: [/**]
        allow: [spiffe://example.org/prod/orders]
`

const (
	orders    = "spiffe://example.org/prod/orders"
	reporting = "spiffe://example.org/prod/reporting"
	payments  = "spiffe://example.org/prod/payments"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(src))
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

var noon = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func TestParsePolicyAcceptsTheIssueExample(t *testing.T) {
	p := mustParse(t, examplePolicy)
	sum := sha256.Sum256([]byte(examplePolicy))
	if p.Version() != hex.EncodeToString(sum[:]) {
		t.Errorf("Version = %s, want SHA-256 of the bytes", p.Version())
	}
	if p.TrustDomain() != "example.org" {
		t.Errorf("TrustDomain = %q", p.TrustDomain())
	}
	if got := p.Services(); !reflect.DeepEqual(got, []string{"payments", "reporting"}) {
		t.Errorf("Services = %v", got)
	}
	if n, ok := p.ServiceByIdentity(payments); !ok || n != "payments" {
		t.Errorf("ServiceByIdentity(payments) = %q, %v", n, ok)
	}
	if _, ok := p.ServiceByIdentity("spiffe://example.org/prod/nobody"); ok {
		t.Error("ServiceByIdentity found a service for an unknown identity")
	}
}

func TestDecideGivesEveryReason(t *testing.T) {
	p := mustParse(t, examplePolicy)
	acme := http.Header{"X-Tenant": []string{"acme"}}
	cases := []struct {
		name                 string
		r                    Request
		allowed              bool
		decision, reason, ep string
	}{
		{"orders may POST a refund", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds/1"}, true, "allow", ReasonAllowed, "refunds-write"},
		{"orders may POST the collection", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds"}, true, "allow", ReasonAllowed, "refunds-write"},
		{"reporting may read a refund through the prefix", Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/refunds/1"}, true, "allow", ReasonAllowed, "refunds-read"},
		{"reporting posting a refund has no write permission", Request{Source: reporting, Service: "payments", Method: "POST", Path: "/v1/refunds/1"}, false, "deny", ReasonNoWritePermission, "refunds-write"},
		{"staging posting a refund is not allowed", Request{Source: "spiffe://example.org/staging/orders", Service: "payments", Method: "POST", Path: "/v1/refunds/1"}, false, "deny", ReasonNotAllowed, "refunds-write"},
		{"the prefix does not match the prefix's own ID", Request{Source: "spiffe://example.org/prod", Service: "payments", Method: "GET", Path: "/v1/refunds/1"}, false, "deny", ReasonNotAllowed, "refunds-read"},
		{"an unknown path has no rule", Request{Source: orders, Service: "payments", Method: "GET", Path: "/v1/admin"}, false, "deny", ReasonNoRule, ""},
		{"a method no endpoint lists has no rule", Request{Source: orders, Service: "payments", Method: "OPTIONS", Path: "/v1/refunds/1"}, false, "deny", ReasonNoRule, ""},
		{"* matches exactly one segment", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds/1/2"}, false, "deny", ReasonNoRule, ""},
		{"no identity is unverified", Request{Source: "", Service: "payments", Method: "GET", Path: "/v1/refunds/1"}, false, "deny", ReasonIdentityUnverified, ""},
		{"a malformed identity is unverified", Request{Source: "spiffe://example.org/prod/../orders", Service: "payments", Method: "POST", Path: "/v1/refunds/1"}, false, "deny", ReasonIdentityUnverified, ""},
		{"a dot-dot path is invalid", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds/../admin"}, false, "deny", ReasonPathInvalid, ""},
		{"an encoded dot-dot path is invalid", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds/%2e%2e"}, false, "deny", ReasonPathInvalid, ""},
		{"a double slash is invalid", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1//refunds"}, false, "deny", ReasonPathInvalid, ""},
		{"percent-decoding happens once", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/re%66unds/1"}, true, "allow", ReasonAllowed, "refunds-write"},
		{"a trailing slash is dropped", Request{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds/"}, true, "allow", ReasonAllowed, "refunds-write"},
		{"an unknown service has no rule and is enforced", Request{Source: orders, Service: "nope", Method: "GET", Path: "/"}, false, "deny", ReasonNoRule, ""},
		{"a condition that holds allows", Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/reports/2026/12", Header: acme, Time: noon}, true, "allow", ReasonAllowed, "reports"},
		{"** matches the prefix itself", Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/reports", Header: acme, Time: noon}, true, "allow", ReasonAllowed, "reports"},
		{"a condition false at night denies", Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/reports/x", Header: acme, Time: noon.Add(-9 * time.Hour)}, false, "deny", ReasonConditionFalse, "reports"},
		{"a missing header makes the condition false", Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/reports/x", Time: noon}, false, "deny", ReasonConditionFalse, "reports"},
		{"observe mode lets a denial through as would_deny", Request{Source: payments, Service: "reporting", Method: "GET", Path: "/x"}, true, "would_deny", ReasonNotAllowed, "all"},
		{"observe mode reports unverified callers as would_deny", Request{Service: "reporting", Method: "GET", Path: "/x"}, true, "would_deny", ReasonIdentityUnverified, ""},
		{"observe mode allows what the policy allows", Request{Source: orders, Service: "reporting", Method: "DELETE", Path: "/a/b/c"}, true, "allow", ReasonAllowed, "all"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(c.r, nil)
			if d.Allowed != c.allowed || d.Decision != c.decision || d.Reason != c.reason || d.Endpoint != c.ep {
				t.Errorf("Decide = %+v, want allowed=%v %s %s endpoint=%q", d, c.allowed, c.decision, c.reason, c.ep)
			}
			if d.PolicyVersion != p.Version() {
				t.Errorf("PolicyVersion = %q", d.PolicyVersion)
			}
			wantMode := ModeEnforce
			if c.r.Service == "reporting" {
				wantMode = ModeObserve
			}
			if d.Mode != wantMode {
				t.Errorf("Mode = %q, want %q", d.Mode, wantMode)
			}
		})
	}
}

func TestDecideAppliesOnlyActiveMatchingOverrides(t *testing.T) {
	p := mustParse(t, examplePolicy)
	r := Request{Source: reporting, Service: "payments", Method: "POST", Path: "/v1/refunds/7", Time: noon}
	active := Override{ID: "ovr-1", Source: reporting, Service: "payments", Endpoint: "refunds-write", Until: noon.Add(time.Hour)}
	cases := []struct {
		name      string
		overrides []Override
		r         Request
		reason    string
		id        string
	}{
		{"an active override allows the call", []Override{active}, r, ReasonOverride, "ovr-1"},
		{"an expired override is ignored", []Override{{ID: "old", Source: reporting, Service: "payments", Endpoint: "refunds-write", Until: noon}}, r, ReasonNoWritePermission, ""},
		{"an override for another source is ignored", []Override{{ID: "x", Source: orders + "2", Service: "payments", Endpoint: "refunds-write", Until: noon.Add(time.Hour)}}, r, ReasonNoWritePermission, ""},
		{"an override for another endpoint is ignored", []Override{{ID: "x", Source: reporting, Service: "payments", Endpoint: "refunds-read", Until: noon.Add(time.Hour)}}, r, ReasonNoWritePermission, ""},
		{"an override for another service is ignored", []Override{{ID: "x", Source: reporting, Service: "reporting", Endpoint: "refunds-write", Until: noon.Add(time.Hour)}}, r, ReasonNoWritePermission, ""},
		{"an override does not widen the endpoint's paths", []Override{active}, Request{Source: reporting, Service: "payments", Method: "POST", Path: "/v1/admin", Time: noon}, ReasonNoRule, ""},
		{"an override does not widen the endpoint's methods", []Override{active}, Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/refunds", Time: noon}, ReasonNoRule, ""},
		{"an override needs the request time", []Override{active}, Request{Source: reporting, Service: "payments", Method: "POST", Path: "/v1/refunds/7"}, ReasonNoWritePermission, ""},
		{"an override needs a verified identity", []Override{active}, Request{Service: "payments", Method: "POST", Path: "/v1/refunds/7", Time: noon}, ReasonIdentityUnverified, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(c.r, c.overrides)
			if d.Reason != c.reason || d.OverrideID != c.id || d.Allowed != (c.reason == ReasonOverride) {
				t.Errorf("Decide = %+v, want reason %s override %q", d, c.reason, c.id)
			}
			if c.reason == ReasonOverride && (d.Decision != DecisionAllow || d.Endpoint != "refunds-write") {
				t.Errorf("override decision = %+v", d)
			}
		})
	}
}

func TestParsePolicyRefusesBadPoliciesWithTheLine(t *testing.T) {
	base := func(ep string) string {
		return "trust_domain: example.org\nservices:\n  payments:\n    identity: spiffe://example.org/prod/payments\n    mode: enforce\n    endpoints:\n" + ep
	}
	good := "      - name: w\n        methods: [POST]\n        paths: [/v1/x]\n        allow: [spiffe://example.org/prod/orders]\n"
	cases := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"an unknown top-level field", "trust_domain: example.org\nextra: 1\nservices: {}\n", 2, "field extra not found"},
		{"an unknown endpoint field", base(good + "        allowed: [x]\n"), 11, "field allowed not found"},
		{"a duplicate key", base(good + "        paths: [/y]\n"), 11, "already defined"},
		{"a second document", base(good) + "---\nx: 1\n", 11, "more than one YAML document"},
		{"an empty file", "", 0, "empty file"},
		{"a bad trust domain", "trust_domain: Example.org\nservices: {}\n", 1, "trust_domain"},
		{"an identity outside the trust domain", strings.Replace(base(good), "spiffe://example.org/prod/payments", "spiffe://other.org/p", 1), 4, "not in trust domain"},
		{"an identity under /ca/", strings.Replace(base(good), "/prod/payments", "/ca/authz-policy", 1), 4, "reserved"},
		{"a missing mode", strings.Replace(base(good), "    mode: enforce\n", "", 1), 3, "mode"},
		{"a bad mode", strings.Replace(base(good), "mode: enforce", "mode: audit", 1), 5, "mode"},
		{"a path with a partial wildcard", base(strings.Replace(good, "/v1/x", "/v1/x*", 1)), 9, "mixes *"},
		{"a path with ** in the middle", base(strings.Replace(good, "/v1/x", "/v1/**/x", 1)), 9, "last segment"},
		{"a path with ..", base(strings.Replace(good, "/v1/x", "/v1/../x", 1)), 9, "is empty, . or .."},
		{"a relative path", base(strings.Replace(good, "/v1/x", "v1/x", 1)), 9, "must start with /"},
		{"a lower-case method", base(strings.Replace(good, "[POST]", "[post]", 1)), 8, "upper-case"},
		{"an allow entry that is no SPIFFE ID", base(strings.Replace(good, "spiffe://example.org/prod/orders", "orders", 1)), 10, "not a SPIFFE ID"},
		{"a wildcard allow in the middle", base(strings.Replace(good, "prod/orders", "*/orders", 1)), 10, "not a SPIFFE ID"},
		{"a condition that does not compile", base(good + "        when: source.path.startsWith(\n"), 11, "does not compile"},
		{"a condition that is not bool", base(good + "        when: source.path\n"), 11, "want bool"},
		{"a condition over an unknown variable", base(good + "        when: claims.x == 1\n"), 11, "does not compile"},
		{"a credential header", base(good + "        headers: [Authorization]\n        when: 'true'\n"), 11, "credentials"},
		{"headers without a condition", base(good + "        headers: [X-A]\n"), 11, "only read by a when"},
		{"a duplicate endpoint name", base(good + good), 11, "name used twice"},
		{"an endpoint without allow", base("      - name: w\n        methods: [POST]\n        paths: [/v1/x]\n"), 7, "allow is empty"},
		{"a service without endpoints", base(""), 3, "no endpoints"},
		{"two services with one identity", base(good) + "  other:\n    identity: spiffe://example.org/prod/payments\n    mode: observe\n    endpoints:\n" + good, 4, "also the identity"},
		{"a bad service name", strings.Replace(base(good), "payments:", "Payments:", 1), 3, "name must be"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(c.src))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Line != c.line || !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("err = line %d %q, want line %d containing %q", pe.Line, pe.Msg, c.line, c.msg)
			}
		})
	}
}

func TestForServiceIsAStandalonePolicyOfThatServiceOnly(t *testing.T) {
	p := mustParse(t, examplePolicy)
	b, err := p.ForService("payments")
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParsePolicy(b)
	if err != nil {
		t.Fatalf("ForService bytes do not parse: %v\n%s", err, b)
	}
	if got := q.Services(); !reflect.DeepEqual(got, []string{"payments"}) {
		t.Errorf("Services = %v", got)
	}
	if strings.Contains(string(b), "reporting:") {
		t.Errorf("ForService leaks another service:\n%s", b)
	}
	if q.TrustDomain() != p.TrustDomain() {
		t.Errorf("trust domain %q", q.TrustDomain())
	}
	a, _ := p.Describe("payments")
	bb, _ := q.Describe("payments")
	if !reflect.DeepEqual(a, bb) {
		t.Errorf("Describe differs:\n%+v\n%+v", a, bb)
	}
	// Canonical: re-cutting the cut gives the same bytes.
	b2, err := q.ForService("payments")
	if err != nil || string(b2) != string(b) {
		t.Errorf("ForService is not canonical:\n%s\n---\n%s", b, b2)
	}
	// The cut decides the same as the whole.
	for _, r := range []Request{
		{Source: orders, Service: "payments", Method: "POST", Path: "/v1/refunds/1"},
		{Source: reporting, Service: "payments", Method: "POST", Path: "/v1/refunds/1"},
		{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/reports/a", Header: http.Header{"X-Tenant": {"acme"}}, Time: noon},
	} {
		d1, d2 := p.Decide(r, nil), q.Decide(r, nil)
		d2.PolicyVersion = d1.PolicyVersion
		if d1 != d2 {
			t.Errorf("cut decides %+v, whole %+v", d2, d1)
		}
	}
	if _, err := p.ForService("nope"); err == nil {
		t.Error("ForService of an unknown service succeeded")
	}
}

func TestConditionCostIsLimited(t *testing.T) {
	src := `trust_domain: example.org
services:
  s:
    identity: spiffe://example.org/s
    mode: enforce
    endpoints:
      - name: e
        methods: [GET]
        paths: [/**]
        allow: [spiffe://example.org/*]
        when: '[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))'
`
	p := mustParse(t, src)
	d := p.Decide(Request{Source: "spiffe://example.org/c", Service: "s", Method: "GET", Path: "/"}, nil)
	if d.Allowed || d.Reason != ReasonConditionFalse {
		t.Errorf("an over-budget condition decided %+v, want policy_condition_false", d)
	}
}

func TestNormalizePath(t *testing.T) {
	good := map[string]string{
		"/":             "/",
		"/a":            "/a",
		"/a/":           "/a",
		"/a%20b/c":      "/a b/c",
		"/%2541":        "/%41",
		"/v1/refunds/1": "/v1/refunds/1",
	}
	for in, want := range good {
		if got, err := NormalizePath(in); err != nil || got != want {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "//", "/a//b", "/a/../b", "/./a", "/a/.", "/%2e", "/%2E%2E/x", "/a%2fb", "/a%", "/a%4", "/a%zz",
		"/a\\b", "/a%5c..", "/a%00", "/a\x01", "/a//", "/" + strings.Repeat("a", MaxPathBytes)} {
		if got, err := NormalizePath(in); err == nil {
			t.Errorf("NormalizePath(%q) = %q, want an error", in, got)
		}
	}
}

func TestDecideWithManyEndpointsAndOverlappingPatterns(t *testing.T) {
	var b strings.Builder
	b.WriteString("trust_domain: example.org\nservices:\n  big:\n    identity: spiffe://example.org/big\n    mode: enforce\n    endpoints:\n")
	for i := 0; i < 200; i++ {
		b.WriteString("      - name: e" + itoa(i) + "\n        methods: [GET]\n        paths: [/r" + itoa(i) + "/*]\n        allow: [spiffe://example.org/c" + itoa(i) + "]\n")
	}
	b.WriteString("      - name: literal\n        methods: [PUT]\n        paths: [/r199/special]\n        allow: [spiffe://example.org/special]\n")
	p := mustParse(t, b.String())
	for _, c := range []struct {
		src, method, path, reason, ep string
	}{
		{"spiffe://example.org/c150", "GET", "/r150/x", ReasonAllowed, "e150"},
		{"spiffe://example.org/c199", "GET", "/r199/special", ReasonAllowed, "e199"},
		{"spiffe://example.org/special", "PUT", "/r199/special", ReasonAllowed, "literal"},
		{"spiffe://example.org/c1", "GET", "/r150/x", ReasonNotAllowed, "e150"},
		{"spiffe://example.org/special", "GET", "/r199/special", ReasonNotAllowed, "e199"},
	} {
		d := p.Decide(Request{Source: c.src, Service: "big", Method: c.method, Path: c.path}, nil)
		if d.Reason != c.reason || d.Endpoint != c.ep {
			t.Errorf("%s %s %s: %+v, want %s at %s", c.src, c.method, c.path, d, c.reason, c.ep)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
