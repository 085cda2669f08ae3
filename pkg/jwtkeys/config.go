package jwtkeys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// Defaults of Config.
const (
	DefaultKeyType     = hsm.ECDSAP256
	DefaultRotateEvery = 24 * time.Hour
	// DefaultPublishLead is twice the bundle's default refresh hint: a
	// relying party that refreshes on the hint has fetched the new key at
	// least once before it signs.
	DefaultPublishLead = 2 * bundle.DefaultRefreshHint
	// DefaultMaxTTL is the longest lifetime any JWT-SVID may have; policy
	// may only lower it.
	DefaultMaxTTL  = time.Hour
	DefaultGrace   = time.Minute
	DefaultRecheck = 10 * time.Second
)

// Config tunes key rotation and signing. Zero fields take the defaults.
type Config struct {
	// KeyType of new signing keys: ecdsa-p256 (ES256), ecdsa-p384 (ES384) or
	// rsa-3072 (RS256).
	KeyType hsm.KeyType
	// RotateEvery is how long a key signs before its successor takes over.
	RotateEvery time.Duration
	// PublishLead is how long a prepared key must have been published in
	// the bundle before it signs; at least the bundle's refresh hint.
	PublishLead time.Duration
	// MaxTTL is the longest token lifetime the signer accepts; a retiring
	// key stays published this long (plus Grace) after it stopped signing.
	MaxTTL time.Duration
	// Grace covers replicas that still sign with a key for up to Recheck
	// after another replica rotated; at least Recheck.
	Grace time.Duration
	// Recheck is how often a Signer re-reads which key is active.
	Recheck time.Duration
}

// ConfigError names a Config field that is out of range.
type ConfigError struct {
	Field, Problem string
}

func (e *ConfigError) Error() string { return "jwtkeys: config " + e.Field + ": " + e.Problem }

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.KeyType == "" {
		c.KeyType = DefaultKeyType
	}
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.RotateEvery, DefaultRotateEvery}, {&c.PublishLead, DefaultPublishLead}, {&c.MaxTTL, DefaultMaxTTL},
		{&c.Grace, DefaultGrace}, {&c.Recheck, DefaultRecheck}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return c, c.Validate()
}

// Validate checks the ranges: a supported key type, positive durations,
// RotateEvery longer than PublishLead, Grace at least Recheck.
func (c Config) Validate() error {
	if _, err := algForKeyType(c.KeyType); err != nil {
		return &ConfigError{Field: "KeyType", Problem: err.Error()}
	}
	for name, d := range map[string]time.Duration{
		"RotateEvery": c.RotateEvery, "PublishLead": c.PublishLead, "MaxTTL": c.MaxTTL, "Grace": c.Grace, "Recheck": c.Recheck,
	} {
		if d <= 0 {
			return &ConfigError{Field: name, Problem: "must be positive"}
		}
	}
	if c.RotateEvery <= c.PublishLead {
		return &ConfigError{Field: "RotateEvery", Problem: fmt.Sprintf("%s must be longer than PublishLead %s", c.RotateEvery, c.PublishLead)}
	}
	if c.Grace < c.Recheck {
		return &ConfigError{Field: "Grace", Problem: fmt.Sprintf("%s must be at least Recheck %s", c.Grace, c.Recheck)}
	}
	return nil
}

// KeyStore is what this package needs from a key store; *hsm.PKCS11Store
// and *hsm.SoftwareStore satisfy it.
type KeyStore interface {
	Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error)
	Find(ctx context.Context, uri string) (hsm.Key, error)
}

// Errors of this package, tested with errors.Is. Key store and store errors
// are wrapped with %w, so hsm.ErrUnavailable and store.ErrUnavailable stay
// recognisable through them.
var (
	// ErrNoActiveKey means no JWT signing key is active yet: the first
	// Manager.Tick creates one.
	ErrNoActiveKey = errors.New("jwtkeys: no active JWT signing key")
	// ErrInvalidRequest means a sign request was refused before anything
	// was signed (no audience, a SPIFFE ID that does not parse, a
	// non-positive lifetime); the wrapping error says why.
	ErrInvalidRequest = errors.New("jwtkeys: invalid request")
	// ErrTTLTooLong means the requested lifetime exceeds Config.MaxTTL.
	ErrTTLTooLong = errors.New("jwtkeys: token lifetime exceeds the maximum")
	// ErrRotationInProgress means a prepared key already waits to sign.
	ErrRotationInProgress = errors.New("jwtkeys: a prepared key already waits for activation")
	// ErrKeyMismatch means the key store returned a key whose public half
	// is not the recorded one; nothing is signed with it.
	ErrKeyMismatch = errors.New("jwtkeys: key store key does not match its record")
)
