package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Validate checks every field and the relations between them. The first
// problem found is returned as a *FieldError naming the YAML field
// ("api_addr: ..."), which wraps ErrInvalid.
func (c *Config) Validate() error {
	checks := []func() error{
		c.validatePaths,
		c.validateDatabase,
		c.validatePKCS11,
		c.validateListeners,
		c.validateIssuer,
		c.validateServer,
		c.validateLog,
		c.validateEnroll,
		c.validateAudit,
		c.validateRetention,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validatePaths() error {
	if c.DataDir == "" {
		return fieldErr("data_dir", "must not be empty")
	}
	if c.PKCS11.Module == "" && c.KeysDir == "" {
		return fieldErr("keys_dir", "must not be empty when no PKCS#11 module is configured")
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		return fieldErr("trust_domain", "%q is not a valid SPIFFE trust domain: %w", c.TrustDomain, err)
	}
	return nil
}

func (c *Config) validateDatabase() error {
	switch c.DatabaseDriver() {
	case "postgres":
		if _, err := url.Parse(c.DatabaseURL); err != nil {
			// url.Parse errors echo the URL, which may carry a password.
			return fieldErr("database_url", "not a valid postgres:// URL")
		}
	case "sqlite":
		if strings.TrimPrefix(c.DatabaseURL, "sqlite:") == "" {
			return fieldErr("database_url", "sqlite: needs a file path")
		}
	default:
		return fieldErr("database_url", "must start with postgres://, postgresql:// or sqlite:")
	}
	return nil
}

func (c *Config) validatePKCS11() error {
	p := c.PKCS11
	if p.Module == "" {
		if p.Token != "" || p.PIN != "" || p.PINFile != "" {
			return fieldErr("pkcs11.module", "must be set when a token or PIN is configured")
		}
		return nil
	}
	if p.Token == "" {
		return fieldErr("pkcs11.token", "must be set when pkcs11.module is (CA_PKCS11_TOKEN)")
	}
	if p.PIN == "" {
		return fieldErr("pkcs11.pin", "must be set when pkcs11.module is (CA_PKCS11_PIN or pkcs11.pin_file)")
	}
	return nil
}

func (c *Config) validateListeners() error {
	addrs := []struct {
		field, addr string
	}{{"api_addr", c.APIAddr}, {"public_addr", c.PublicAddr}}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fieldErr(a.field, "%q is not host:port: %w", a.addr, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fieldErr(a.field, "%q has an invalid port", a.addr)
		}
		if c.DevelopmentMode() && !c.AllowNonLoopbackDev && !isLoopbackHost(host) {
			return fieldErr(a.field, "%q is not a loopback address; a development setup (software keys, SQLite) only listens on loopback unless allow_non_loopback_dev is true", a.addr)
		}
	}
	if c.APIAddr == c.PublicAddr {
		return fieldErr("public_addr", "must differ from api_addr")
	}
	urls := []struct {
		field, raw, scheme string
	}{{"api_url", c.APIURL, "https"}, {"public_url", c.PublicURL, ""}}
	for _, u := range urls {
		if u.raw == "" {
			return fieldErr(u.field, "must be set when the listen address has no specific host (CA_%s)", strings.ToUpper(u.field))
		}
		parsed, err := url.Parse(u.raw)
		if err != nil {
			return fieldErr(u.field, "%q is not a URL", u.raw)
		}
		if parsed.Scheme != "http" && parsed.Scheme != "https" {
			return fieldErr(u.field, "%q must be an http:// or https:// URL", u.raw)
		}
		if u.scheme != "" && parsed.Scheme != u.scheme {
			return fieldErr(u.field, "%q must be an %s:// URL", u.raw, u.scheme)
		}
		if parsed.Hostname() == "" {
			return fieldErr(u.field, "%q has no host", u.raw)
		}
	}
	return nil
}

var validKeyTypes = []string{"ecdsa-p256", "ecdsa-p384", "rsa-3072"}

func validKeyType(field, kt string, empty bool) error {
	if kt == "" && empty {
		return nil
	}
	for _, v := range validKeyTypes {
		if kt == v {
			return nil
		}
	}
	return fieldErr(field, "%q is not one of %s", kt, strings.Join(validKeyTypes, ", "))
}

func (c *Config) validateIssuer() error {
	is := c.Issuer
	if err := validKeyType("issuer.key_type", is.KeyType, false); err != nil {
		return err
	}
	// "" follows issuer.key_type (JWTKeyType, OCSPKeyType).
	if err := validKeyType("jwt.key_type", c.JWT.KeyType, true); err != nil {
		return err
	}
	if err := validKeyType("ocsp.key_type", c.OCSP.KeyType, true); err != nil {
		return err
	}
	switch {
	case is.RootLifetime <= 0:
		return fieldErr("issuer.root_lifetime", "must be positive")
	case is.IntermediateLifetime <= 0:
		return fieldErr("issuer.intermediate_lifetime", "must be positive")
	case is.IntermediateLifetime > is.RootLifetime:
		return fieldErr("issuer.intermediate_lifetime", "must not exceed issuer.root_lifetime")
	case is.Backdate < 0:
		return fieldErr("issuer.backdate", "must not be negative")
	case is.DefaultTTL <= 0:
		return fieldErr("issuer.default_ttl", "must be positive")
	case is.MaxTTL <= 0:
		return fieldErr("issuer.max_ttl", "must be positive")
	case is.DefaultTTL > is.MaxTTL:
		return fieldErr("issuer.default_ttl", "must not exceed issuer.max_ttl")
	case is.MaxTTL >= is.IntermediateLifetime:
		return fieldErr("issuer.max_ttl", "must be shorter than issuer.intermediate_lifetime")
	}
	return nil
}

func (c *Config) validateServer() error {
	s := c.Server
	switch {
	case s.BodyLimit <= 0:
		return fieldErr("server.body_limit", "must be positive")
	case s.ShutdownGrace <= 0:
		return fieldErr("server.shutdown_grace", "must be positive")
	case s.CertLifetime <= 0:
		return fieldErr("server.cert_lifetime", "must be positive")
	case s.CertLifetime > c.Issuer.MaxTTL:
		return fieldErr("server.cert_lifetime", "must not exceed issuer.max_ttl")
	case s.ReadyTimeout <= 0:
		return fieldErr("server.ready_timeout", "must be positive")
	case s.RequestTimeout <= 0:
		return fieldErr("server.request_timeout", "must be positive")
	case s.ReadyTimeout > s.RequestTimeout:
		return fieldErr("server.ready_timeout", "must not exceed server.request_timeout")
	case s.MaxInFlightEnrollments < 1 || s.MaxInFlightEnrollments > 100000:
		return fieldErr("server.max_in_flight_enrollments", "must be 1 to 100000")
	case s.GCPercent < 50 || s.GCPercent > 10000:
		return fieldErr("server.gc_percent", "must be 50 to 10000")
	case s.MemoryLimitMiB < 0 || (s.MemoryLimitMiB > 0 && s.MemoryLimitMiB < 64):
		return fieldErr("server.memory_limit_mib", "must be 0 (derived) or at least 64")
	}
	return nil
}

func (c *Config) validateLog() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.ArtifactSample < 1 {
		return fieldErr("log.artifact_sample", "%d is not a positive number (1 logs every request)", c.Log.ArtifactSample)
	}
	switch c.Log.ArtifactRequests {
	case "debug", "info":
		return nil
	}
	return fieldErr("log.artifact_requests", "%q is not one of info, debug", c.Log.ArtifactRequests)
}

func (c *Config) validateEnroll() error {
	if c.Enroll.JWKSMinRefreshInterval <= 0 {
		return fieldErr("enroll.jwks_min_refresh_interval", "must be positive")
	}
	return nil
}

func (c *Config) validateAudit() error {
	if d := c.Audit.CheckpointInterval; d < time.Second || d > time.Hour {
		return fieldErr("audit.checkpoint_interval", "%s is outside 1s..1h", d)
	}
	if c.Retention.Audit < 0 {
		return fieldErr("retention.audit", "%s is negative", c.Retention.Audit)
	}
	return nil
}
