package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// JWT-SVID lifetimes.
const (
	// MaxJWTTTL is the longest jwt.max_ttl a policy may set; the signer
	// refuses longer lifetimes.
	MaxJWTTTL = time.Hour
	// DefaultJWTTTL is jwt.ttl and jwt.max_ttl when the policy sets none.
	DefaultJWTTTL = 5 * time.Minute
)

// CheckJWTAudience names a JWT-SVID denial: an audience the identity may not
// ask for (DenyError.Check).
const CheckJWTAudience = "jwt_audience"

// ErrJWTTTLTooLong means a JWT-SVID request asks for more than jwt.max_ttl.
var ErrJWTTTLTooLong = errors.New("policy: JWT-SVID lifetime exceeds jwt.max_ttl")

// jwtFile is the optional top-level jwt section:
//
//	jwt:
//	  ttl: 5m          # default lifetime, <= max_ttl (default: min(5m, max_ttl))
//	  max_ttl: 15m     # <= 1h (default 5m)
//	  audiences:       # optional; without entries any identity may ask for any audience
//	    - spiffe_id: spiffe://example.org/prod/*     # exact ID, or a path prefix ending in /*
//	      allow: [https://api.example.org, vault]    # exact audiences, or "*" for any
type jwtFile struct {
	TTL       string            `yaml:"ttl"`
	MaxTTL    string            `yaml:"max_ttl"`
	Audiences []jwtAudienceFile `yaml:"audiences"`
}

type jwtAudienceFile struct {
	SPIFFEID string   `yaml:"spiffe_id"`
	Allow    []string `yaml:"allow"`
}

// jwtPolicy is the compiled jwt section.
type jwtPolicy struct {
	ttl, maxTTL time.Duration
	rules       []jwtAudienceRule // nil: any audience
}

type jwtAudienceRule struct {
	id     string // exact SPIFFE ID, or prefix ("spiffe://td/path/") when prefix
	prefix bool
	any    bool
	allow  []string
}

func (r jwtAudienceRule) matches(id string) bool {
	if r.prefix {
		return strings.HasPrefix(id, r.id)
	}
	return id == r.id
}

func (p *Policy) compileJWT(f *jwtFile) (jwtPolicy, error) {
	jp := jwtPolicy{ttl: DefaultJWTTTL, maxTTL: DefaultJWTTTL}
	if f == nil {
		return jp, nil
	}
	if f.MaxTTL != "" {
		d, err := optDuration(f.MaxTTL, MaxJWTTTL)
		if err != nil {
			return jp, fmt.Errorf("jwt.max_ttl: %w", err)
		}
		jp.maxTTL = d
	}
	jp.ttl = min(DefaultJWTTTL, jp.maxTTL)
	if f.TTL != "" {
		d, err := optDuration(f.TTL, jp.maxTTL)
		if err != nil {
			return jp, fmt.Errorf("jwt.ttl (at most max_ttl %s): %w", jp.maxTTL, err)
		}
		jp.ttl = d
	}
	for i, a := range f.Audiences {
		r, err := p.compileJWTAudience(a)
		if err != nil {
			return jp, fmt.Errorf("jwt.audiences entry %d: %w", i+1, err)
		}
		jp.rules = append(jp.rules, r)
	}
	return jp, nil
}

func (p *Policy) compileJWTAudience(a jwtAudienceFile) (jwtAudienceRule, error) {
	var r jwtAudienceRule
	if len(a.Allow) == 0 {
		return r, errors.New("allow must list at least one audience (or \"*\")")
	}
	for _, aud := range a.Allow {
		switch {
		case aud == "*":
			r.any = true
		case aud == "" || len(aud) > 512 || strings.TrimSpace(aud) != aud:
			return r, fmt.Errorf("audience %q must be 1 to 512 bytes without surrounding spaces", aud)
		default:
			r.allow = append(r.allow, aud)
		}
	}
	if base, ok := strings.CutSuffix(a.SPIFFEID, "/*"); ok {
		r.prefix = true
		r.id = base + "/"
		if base == "spiffe://"+p.trustDomain.Name() {
			return r, nil
		}
		a.SPIFFEID = base
	} else {
		r.id = a.SPIFFEID
	}
	td, err := parseSPIFFEID(a.SPIFFEID)
	if err != nil {
		return r, fmt.Errorf("spiffe_id: %w", err)
	}
	if td != p.trustDomain.Name() {
		return r, fmt.Errorf("spiffe_id %q is outside trust domain %q", a.SPIFFEID, p.trustDomain.Name())
	}
	return r, nil
}

// JWTDecision is what the policy grants a JWT-SVID request.
type JWTDecision struct {
	TTL           time.Duration // the lifetime to sign with
	MaxTTL        time.Duration
	PolicyVersion string
}

// DecideJWT applies the jwt section to a request of spiffeID for audiences
// with lifetime ttl (0: the default). Every audience must be allowed by an
// audiences entry matching spiffeID (any audience when there are no
// entries); otherwise a *DenyError with Check CheckJWTAudience. A ttl above
// max_ttl is ErrJWTTTLTooLong.
func (p *Policy) DecideJWT(spiffeID string, audiences []string, ttl time.Duration) (JWTDecision, error) {
	jp := p.jwt
	d := JWTDecision{TTL: jp.ttl, MaxTTL: jp.maxTTL, PolicyVersion: p.version}
	if ttl > jp.maxTTL {
		return d, fmt.Errorf("%w: %s > %s", ErrJWTTTLTooLong, ttl, jp.maxTTL)
	}
	if ttl > 0 {
		d.TTL = ttl
	}
	if jp.rules == nil {
		return d, nil
	}
	for _, aud := range audiences {
		allowed := false
		for _, r := range jp.rules {
			if r.matches(spiffeID) && (r.any || slices.Contains(r.allow, aud)) {
				allowed = true
				break
			}
		}
		if !allowed {
			return d, &DenyError{Check: CheckJWTAudience,
				Detail: fmt.Sprintf("%s may not ask for a JWT-SVID for audience %q", spiffeID, clipDetail(aud))}
		}
	}
	return d, nil
}

// JWTMaxTTL is the jwt section's max_ttl (DefaultJWTTTL without one).
func (p *Policy) JWTMaxTTL() time.Duration { return p.jwt.maxTTL }

func clipDetail(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}
