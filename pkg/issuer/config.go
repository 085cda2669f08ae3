package issuer

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// ErrInvalidConfig is what every *ConfigError matches with errors.Is.
var ErrInvalidConfig = errors.New("issuer: invalid configuration")

// ConfigError is returned by Config.Validate: Field names the offending
// Config field, Problem says what is wrong with it.
type ConfigError struct {
	Field, Problem string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("issuer: invalid configuration: %s: %s", e.Field, e.Problem)
}

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Defaults applied by Config.Validate to zero fields.
const (
	DefaultRootLifetime         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateLifetime = 365 * 24 * time.Hour
	DefaultBackdate             = 5 * time.Minute
	DefaultLeafTTL              = time.Hour
	DefaultMaxLeafTTL           = 24 * time.Hour
)

// Config is the issuer's typed configuration, validated once at start.
type Config struct {
	// TrustDomain is the SPIFFE trust domain, e.g. example.org. Leaves must carry
	// a SPIFFE ID in it, and intermediates are name-constrained to it.
	TrustDomain string
	// PublicURL is the base URL of the public listener, e.g.
	// http://127.0.0.1:8080. Leaves carry the CRL distribution point
	// {PublicURL}/crl/{issuerID}.crl and the AIA OCSP URL {PublicURL}/ocsp.
	PublicURL string
	// KeyType is the key type of new root and intermediate keys (default
	// ecdsa-p256).
	KeyType hsm.KeyType
	// TimeOrderedSerials makes leaf serials start with the issuance time
	// (newSerial): set for the embedded SQLite store, where serial-keyed
	// indexes then append; Postgres keeps fully random serials (alternated
	// production runs did not show them cheaper there).
	TimeOrderedSerials bool
	// RootLifetime is the validity of a new root (default 10 years).
	RootLifetime time.Duration
	// IntermediateLifetime is the validity of a new intermediate (default 1
	// year); it must not exceed RootLifetime.
	IntermediateLifetime time.Duration
	// Backdate is subtracted from now for notBefore, to absorb clock skew
	// (default 5m: a peer whose clock is minutes behind still accepts a
	// fresh certificate).
	Backdate time.Duration
	// DefaultTTL is a leaf's lifetime when the request names none (default 1h).
	DefaultTTL time.Duration
	// MaxTTL is the hard cap on a leaf's lifetime (default 24h); longer requests
	// are shortened to it.
	MaxTTL time.Duration
	// Organization is the optional subject O of CA certificates.
	Organization string
	// ReservedDNSNames are the CA's own host names (its API and public URLs,
	// listen addresses and server certificate names). No leaf but the CA's
	// server certificate (Request.CAServer) may carry them; matching is
	// case-insensitive. ReservedIPs are the same for IP addresses (loopback
	// and unspecified addresses are always refused to workloads).
	ReservedDNSNames []string
	ReservedIPs      []net.IP
}

// Validate fills defaults into zero fields and checks every field. The error
// is a *ConfigError naming the offending field (and matches ErrInvalidConfig). PublicURL is
// normalised to have no trailing slash.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	if err := validTrustDomain(c.TrustDomain); err != nil {
		return bad("TrustDomain", "%v", err)
	}
	u, err := url.Parse(c.PublicURL)
	switch {
	case c.PublicURL == "":
		return bad("PublicURL", "required")
	case err != nil:
		return bad("PublicURL", "not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("PublicURL", "scheme must be http or https")
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return bad("PublicURL", "must be a plain http(s)://host[:port][/path] base URL")
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	normalizeReserved(c)

	if c.KeyType == "" {
		c.KeyType = hsm.ECDSAP256
	}
	if !c.KeyType.Valid() {
		return bad("KeyType", "unsupported key type %q", c.KeyType)
	}
	defaults := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RootLifetime", &c.RootLifetime, DefaultRootLifetime},
		{"IntermediateLifetime", &c.IntermediateLifetime, DefaultIntermediateLifetime},
		{"Backdate", &c.Backdate, DefaultBackdate},
		{"DefaultTTL", &c.DefaultTTL, DefaultLeafTTL},
		{"MaxTTL", &c.MaxTTL, DefaultMaxLeafTTL},
	}
	for _, d := range defaults {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return bad(d.name, "must not be negative")
		}
	}
	switch {
	case c.Backdate > time.Hour:
		return bad("Backdate", "must be at most 1h")
	case c.IntermediateLifetime > c.RootLifetime:
		return bad("IntermediateLifetime", "must not exceed RootLifetime")
	case c.DefaultTTL > c.MaxTTL:
		return bad("DefaultTTL", "must not exceed MaxTTL")
	case c.MaxTTL >= c.IntermediateLifetime:
		return bad("MaxTTL", "must be shorter than IntermediateLifetime")
	}
	if strings.ContainsAny(c.Organization, "\x00\r\n") {
		return bad("Organization", "contains control characters")
	}
	return nil
}

// validTrustDomain checks a trust domain name as SPIFFE defines it: lowercase
// letters, digits, '.', '-' and '_', nothing else.
func validTrustDomain(td string) error {
	if td == "" {
		return errors.New("required")
	}
	if len(td) > 255 {
		return errors.New("longer than 255 bytes")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("character %q not allowed in a trust domain", c)
		}
	}
	return nil
}
