package policy

import (
	"errors"
	"testing"
	"time"
)

func TestJWTSectionIsOptional(t *testing.T) {
	p, err := Parse([]byte(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.DecideJWT("spiffe://example.org/any", []string{"anything", "else"}, 0)
	if err != nil {
		t.Fatalf("without a jwt section: %v", err)
	}
	if d.TTL != 5*time.Minute || d.MaxTTL != 5*time.Minute || p.JWTMaxTTL() != 5*time.Minute {
		t.Errorf("defaults %+v", d)
	}
	if _, err := p.DecideJWT("spiffe://example.org/any", []string{"x"}, 6*time.Minute); !errors.Is(err, ErrJWTTTLTooLong) {
		t.Errorf("6m without a jwt section: %v, want ErrJWTTTLTooLong", err)
	}
}

const jwtPolicyYAML = basePolicy + `
jwt:
  ttl: 2m
  max_ttl: 15m
  audiences:
    - spiffe_id: spiffe://example.org/prod/*
      allow: [https://api.example.org, vault]
    - spiffe_id: spiffe://example.org/ops/admin
      allow: ["*"]
    - spiffe_id: spiffe://example.org/*
      allow: [metrics]
`

func TestDecideJWT(t *testing.T) {
	p, err := Parse([]byte(jwtPolicyYAML))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		id      string
		aud     []string
		ttl     time.Duration
		wantTTL time.Duration
		deny    bool
		tooLong bool
	}{
		{"a prod workload may ask for the API and vault", "spiffe://example.org/prod/payments", []string{"https://api.example.org", "vault"}, 0, 2 * time.Minute, false, false},
		{"a prod workload may ask for a longer lifetime up to max_ttl", "spiffe://example.org/prod/payments", []string{"vault"}, 15 * time.Minute, 15 * time.Minute, false, false},
		{"a lifetime above max_ttl is refused", "spiffe://example.org/prod/payments", []string{"vault"}, 16 * time.Minute, 0, false, true},
		{"a prod workload may not ask for another audience", "spiffe://example.org/prod/payments", []string{"vault", "billing"}, 0, 0, true, false},
		{"every identity gets the catch-all entry's audience", "spiffe://example.org/dev/x", []string{"metrics"}, 0, 2 * time.Minute, false, false},
		{"the prefix does not match a sibling path", "spiffe://example.org/production/x", []string{"vault"}, 0, 0, true, false},
		{"the exact entry allows any audience", "spiffe://example.org/ops/admin", []string{"whatever"}, 0, 2 * time.Minute, false, false},
		{"the exact entry does not match a child", "spiffe://example.org/ops/admin/x", []string{"whatever"}, 0, 0, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := p.DecideJWT(tc.id, tc.aud, tc.ttl)
			var de *DenyError
			switch {
			case tc.deny:
				if !errors.As(err, &de) || de.Check != CheckJWTAudience {
					t.Fatalf("err = %v, want a jwt_audience denial", err)
				}
			case tc.tooLong:
				if !errors.Is(err, ErrJWTTTLTooLong) {
					t.Fatalf("err = %v, want ErrJWTTTLTooLong", err)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case d.TTL != tc.wantTTL || d.PolicyVersion != p.Version():
				t.Errorf("decision %+v, want TTL %s", d, tc.wantTTL)
			}
		})
	}
}

func TestJWTSectionIsValidated(t *testing.T) {
	cases := []struct {
		name, section string
	}{
		{"max_ttl above 1h is refused", "jwt: {max_ttl: 2h}"},
		{"ttl above max_ttl is refused", "jwt: {max_ttl: 5m, ttl: 10m}"},
		{"a zero ttl is refused", "jwt: {ttl: 0s}"},
		{"an unknown field is refused", "jwt: {lifetime: 5m}"},
		{"an entry without allow is refused", "jwt: {audiences: [{spiffe_id: 'spiffe://example.org/a'}]}"},
		{"an empty audience is refused", "jwt: {audiences: [{spiffe_id: 'spiffe://example.org/a', allow: ['']}]}"},
		{"a SPIFFE ID of another trust domain is refused", "jwt: {audiences: [{spiffe_id: 'spiffe://other.org/a', allow: [x]}]}"},
		{"a pattern that is not a SPIFFE ID is refused", "jwt: {audiences: [{spiffe_id: 'prod/*', allow: [x]}]}"},
		{"a wildcard inside the path is refused", "jwt: {audiences: [{spiffe_id: 'spiffe://example.org/*/x', allow: [x]}]}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(basePolicy + tc.section + "\n")); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}
