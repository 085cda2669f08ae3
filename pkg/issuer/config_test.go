package issuer

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

func TestConfigValidateFillsDefaults(t *testing.T) {
	c := Config{TrustDomain: "example.org", PublicURL: "https://ca.example.org/"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{
		TrustDomain: "example.org", PublicURL: "https://ca.example.org", KeyType: hsm.ECDSAP256,
		RootLifetime: DefaultRootLifetime, IntermediateLifetime: DefaultIntermediateLifetime,
		Backdate: 5 * time.Minute, DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Validate gave %+v, want %+v", c, want)
	}
}

func TestConfigValidateNamesTheBadField(t *testing.T) {
	ok := Config{TrustDomain: "example.org", PublicURL: "http://127.0.0.1:8080"}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"a missing trust domain is refused", with(func(c *Config) { c.TrustDomain = "" }), "TrustDomain"},
		{"an upper-case trust domain is refused", with(func(c *Config) { c.TrustDomain = "Example.org" }), "TrustDomain"},
		{"a trust domain with a port is refused", with(func(c *Config) { c.TrustDomain = "example.org:1" }), "TrustDomain"},
		{"a missing public URL is refused", with(func(c *Config) { c.PublicURL = "" }), "PublicURL"},
		{"a public URL without scheme is refused", with(func(c *Config) { c.PublicURL = "ca.example.org" }), "PublicURL"},
		{"a public URL with a query is refused", with(func(c *Config) { c.PublicURL = "http://ca/?x=1" }), "PublicURL"},
		{"an unknown key type is refused", with(func(c *Config) { c.KeyType = "dsa-1024" }), "KeyType"},
		{"a negative backdate is refused", with(func(c *Config) { c.Backdate = -time.Second }), "Backdate"},
		{"an intermediate outliving the root is refused", with(func(c *Config) { c.RootLifetime = time.Hour * 48; c.IntermediateLifetime = time.Hour * 49 }), "IntermediateLifetime"},
		{"a default TTL over the max is refused", with(func(c *Config) { c.DefaultTTL = 2 * time.Hour; c.MaxTTL = time.Hour }), "DefaultTTL"},
		{"a max TTL as long as the intermediate is refused", with(func(c *Config) { c.IntermediateLifetime = 24 * time.Hour }), "MaxTTL"},
		{"an organization with a newline is refused", with(func(c *Config) { c.Organization = "a\nb" }), "Organization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want a *ConfigError matching ErrInvalidConfig", err)
			}
			if ce.Field != tt.field {
				t.Errorf("Field = %q, want %q (%v)", ce.Field, tt.field, err)
			}
		})
	}
}
