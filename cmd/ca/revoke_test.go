package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRevokeFlags(t *testing.T) {
	base := []string{"--reason", "keyCompromise", "--ca-url", "https://ca.example.org:8443", "--token-file", "t.jwt", "--ca-bundle", "b.pem"}
	tests := []struct {
		name   string
		args   []string
		serial string // "" when refused as a usage error
	}{
		{"the serial may come first", append([]string{"0A:BC"}, base...), "abc"},
		{"the serial may come last", append(append([]string{}, base...), "00ff"), "ff"},
		{"a client certificate replaces the token", []string{"1", "--reason", "superseded", "--ca-url", "https://h", "--client-cert", "c", "--client-key", "k", "--ca-fingerprint", "sha256:00"}, "1"},
		{"no serial is refused", base, ""},
		{"a reason RFC 5280 has but we refuse is refused", []string{"1", "--reason", "certificateHold", "--ca-url", "https://h", "--token-file", "t", "--ca-bundle", "b"}, ""},
		{"a plain-HTTP URL is refused", []string{"1", "--reason", "superseded", "--ca-url", "http://h", "--token-file", "t", "--ca-bundle", "b"}, ""},
		{"both a token and a certificate are refused", []string{"1", "--reason", "superseded", "--ca-url", "https://h", "--token-file", "t", "--client-cert", "c", "--client-key", "k", "--ca-bundle", "b"}, ""},
		{"a certificate without its key is refused", []string{"1", "--reason", "superseded", "--ca-url", "https://h", "--client-cert", "c", "--ca-bundle", "b"}, ""},
		{"no way to verify the CA is refused", []string{"1", "--reason", "superseded", "--ca-url", "https://h", "--token-file", "t"}, ""},
		{"a serial that is not hex is refused", []string{"xyz", "--reason", "superseded", "--ca-url", "https://h", "--token-file", "t", "--ca-bundle", "b"}, ""},
		{"scope lineage is accepted", append([]string{"1", "--scope", "lineage"}, base...), "1"},
		{"another scope is refused", append([]string{"1", "--scope", "identity"}, base...), ""},
		{"extra arguments are refused", append([]string{"1"}, append(append([]string{}, base...), "2")...), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseRevokeFlags(tt.args, io.Discard)
			if tt.serial == "" {
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil || o.serial != tt.serial {
				t.Fatalf("serial %q err %v, want %q", o.serial, err, tt.serial)
			}
		})
	}
}

func TestReadTokenTakesOneToken(t *testing.T) {
	if tok, err := readToken("-", strings.NewReader("  abc.def.ghi\n")); err != nil || tok != "abc.def.ghi" {
		t.Fatalf("got %q %v", tok, err)
	}
	for _, in := range []string{"", "a b", strings.Repeat("a", maxTokenFile+1)} {
		if _, err := readToken("-", strings.NewReader(in)); !errors.Is(err, errUsage) {
			t.Errorf("%.20q: err = %v", in, err)
		}
	}
}
