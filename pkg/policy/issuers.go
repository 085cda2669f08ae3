package policy

import (
	"fmt"
	"net/url"
	"time"
)

// TokenIssuer is one issuer whose JWTs the CA accepts, for enrollment or for
// operators. Exactly one key source applies: JWKSFile, else JWKSURL, else OIDC
// discovery at Issuer + "/.well-known/openid-configuration".
type TokenIssuer struct {
	Name     string // the policy's label for the issuer; rules and roles refer to it
	Issuer   string // the exact `iss` claim value (an https URL)
	Audience string // the `aud` value a token must contain
	JWKSURL  string // static JWKS location, or ""
	JWKSFile string // JWKS on disk for air-gapped sites, or ""
	// Leeway is the clock skew tolerated on exp, nbf and iat; zero means the
	// verifier's default.
	Leeway time.Duration
	// MaxTokenAge is how old (by iat) a token may be; zero means the
	// verifier's default.
	MaxTokenAge time.Duration
	// RequireJTI refuses this issuer's tokens that carry no jti
	// (token_malformed). Without it such tokens are replay-checked on what
	// the issuer signed.
	RequireJTI bool
}

// maxLeeway and maxTokenAge bound per-issuer settings so that a typo cannot
// turn time checks off.
const (
	maxLeeway      = 5 * time.Minute
	maxTokenAgeCap = 48 * time.Hour
)

func compileIssuer(f issuerFile) (TokenIssuer, error) {
	is := TokenIssuer{Name: f.Name, Issuer: f.Issuer, Audience: f.Audience, JWKSURL: f.JWKSURL, JWKSFile: f.JWKSFile, RequireJTI: f.RequireJTI}
	if !validName(f.Name) {
		return is, fmt.Errorf("token issuer %q: name must be 1-64 characters of [a-zA-Z0-9._-]", f.Name)
	}
	if err := httpsURL(f.Issuer); err != nil {
		return is, fmt.Errorf("token issuer %q: issuer: %w", f.Name, err)
	}
	if f.Audience == "" {
		return is, fmt.Errorf("token issuer %q: audience is required", f.Name)
	}
	if f.JWKSURL != "" && f.JWKSFile != "" {
		return is, fmt.Errorf("token issuer %q: jwks_url and jwks_file are exclusive", f.Name)
	}
	if f.JWKSURL != "" {
		if err := httpsURL(f.JWKSURL); err != nil {
			return is, fmt.Errorf("token issuer %q: jwks_url: %w", f.Name, err)
		}
	}
	var err error
	if is.Leeway, err = optDuration(f.Leeway, maxLeeway); err != nil {
		return is, fmt.Errorf("token issuer %q: leeway: %w", f.Name, err)
	}
	if is.MaxTokenAge, err = optDuration(f.MaxTokenAge, maxTokenAgeCap); err != nil {
		return is, fmt.Errorf("token issuer %q: max_token_age: %w", f.Name, err)
	}
	return is, nil
}

// httpsURL accepts absolute https URLs without user info, query or fragment.
func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute https URL", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not carry user info, query or fragment", s)
	}
	return nil
}

// optDuration parses an optional duration in (0, limit].
func optDuration(s string, limit time.Duration) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 || d > limit {
		return 0, fmt.Errorf("%s is outside (0, %s]", s, limit)
	}
	return d, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
