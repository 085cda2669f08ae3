package service

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestNewRefusesAnIncompleteConfiguration(t *testing.T) {
	base := Config{Addr: "127.0.0.1:0", CAURL: "https://127.0.0.1:1", BundleURL: "http://127.0.0.1:1/bundle.json",
		TrustDomain: "example.org", CertFile: "cert.pem", KeyFile: "key.pem"}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"an unknown service name is refused", func(c *Config) { c.Name = "billing" }, "unknown service"},
		{"orders without the payments URL is refused", func(c *Config) { c.Name = Orders; c.PaymentsID = "spiffe://example.org/payments" }, "needs the payments URL"},
		{"reporting without the payments ID is refused", func(c *Config) { c.Name = Reporting; c.PaymentsURL = "https://127.0.0.1:2" }, "needs the payments URL"},
		{"payments without a certificate is refused", func(c *Config) { c.Name = Payments; c.CertFile = "" }, "are required"},
		{"a bad trust domain is refused", func(c *Config) { c.Name = Payments; c.TrustDomain = "Not A Domain" }, "trust domain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestMainExitCodes(t *testing.T) {
	if code := Main(Payments, []string{"-h"}, io.Discard); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
	if code := Main(Payments, []string{"--no-such-flag"}, io.Discard); code != 2 {
		t.Errorf("an unknown flag: exit %d, want 2", code)
	}
	if code := Main(Orders, []string{"--bundle-url", "http://127.0.0.1:1/bundle.json"}, io.Discard); code != 1 {
		t.Errorf("an unreachable bundle: exit %d, want 1", code)
	}
}
