package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestIdentityFlags(t *testing.T) {
	const id = "spiffe://example.org/gh/acme/payments"
	conn := []string{"--server", "https://ca.example.org:8443", "--token-file", "t.jwt", "--ca-bundle", "b.pem"}
	with := func(args ...string) []string { return append(args, conn...) }
	tests := []struct {
		name string
		args []string
		ok   bool
		want identityOptions
	}{
		{"revoke with a hold, the ID first", with("revoke", id, "--reason", "keyCompromise", "--hold", "24h"), true,
			identityOptions{verb: "revoke", spiffeID: id, reason: "keyCompromise", hold: "24h"}},
		{"revoke without a hold, the ID last", append(with("revoke", "--reason", "superseded"), id), true,
			identityOptions{verb: "revoke", spiffeID: id, reason: "superseded"}},
		{"hold defaults the reason to unspecified", with("hold", id, "--for", "1h"), true,
			identityOptions{verb: "hold", spiffeID: id, reason: "unspecified", hold: "1h"}},
		{"release takes the ID only", with("release", id), true, identityOptions{verb: "release", spiffeID: id}},
		{"list takes no ID", with("list"), true, identityOptions{verb: "list"}},
		{"revoke without a reason is refused", with("revoke", id), false, identityOptions{}},
		{"hold without --for is refused", with("hold", id), false, identityOptions{}},
		{"a reason RFC 5280 has but we refuse is refused", with("revoke", id, "--reason", "certificateHold"), false, identityOptions{}},
		{"a negative hold is refused", with("revoke", id, "--reason", "keyCompromise", "--hold", "-1h"), false, identityOptions{}},
		{"a hold that is not a duration is refused", with("hold", id, "--for", "a day"), false, identityOptions{}},
		{"something other than a SPIFFE ID is refused", with("release", "https://example.org/x"), false, identityOptions{}},
		{"no SPIFFE ID is refused", with("release"), false, identityOptions{}},
		{"list with an ID is refused", with("list", id), false, identityOptions{}},
		{"release with --reason is refused", with("release", id, "--reason", "keyCompromise"), false, identityOptions{}},
		{"an unknown verb is refused", with("ban", id), false, identityOptions{}},
		{"no verb is refused", conn, false, identityOptions{}},
		{"a plain-HTTP server is refused", []string{"list", "--server", "http://h", "--token-file", "t", "--ca-bundle", "b"}, false, identityOptions{}},
		{"no credentials are refused", []string{"list", "--server", "https://h", "--ca-bundle", "b"}, false, identityOptions{}},
		{"no way to verify the CA is refused", []string{"list", "--server", "https://h", "--token-file", "t"}, false, identityOptions{}},
		{"extra arguments are refused", with("release", id, "spiffe://example.org/other"), false, identityOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseIdentityFlags(tt.args, io.Discard)
			if !tt.ok {
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.verb != tt.want.verb || o.spiffeID != tt.want.spiffeID || o.reason != tt.want.reason || o.hold != tt.want.hold {
				t.Fatalf("parsed %+v, want %+v", o, tt.want)
			}
			if o.conn.caURL != "https://ca.example.org:8443" || o.conn.tokenFile != "t.jwt" || o.conn.caBundle != "b.pem" {
				t.Fatalf("connection flags %+v", o.conn)
			}
		})
	}
}

func TestIdentityAnswersPrintForOperators(t *testing.T) {
	var b bytes.Buffer
	raw := `{"spiffe_id":"spiffe://example.org/x","revoked":2,"serials":["ab","cd"],"hold":{"id":1,"spiffe_id":"spiffe://example.org/x","reason":"keyCompromise","placed_by":"corp-idp:rita","placed_at":"2031-01-01T00:00:00Z","until":"2031-01-02T00:00:00Z"}}`
	if err := printIdentityAnswer(&b, "revoke", []byte(raw)); err != nil {
		t.Fatal(err)
	}
	want := "revoked 2 certificates of spiffe://example.org/x\n  ab\n  cd\non hold until 2031-01-02T00:00:00Z: no new certificates, renewals or JWT-SVIDs\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := printIdentityAnswer(&b, "list", []byte(`{"items":[]}`)); err != nil || !strings.Contains(b.String(), "no identity is on hold") {
		t.Errorf("empty list: %q %v", b.String(), err)
	}
	if err := printIdentityAnswer(&b, "release", []byte(`not json`)); err == nil {
		t.Error("an undecodable answer printed without error")
	}
}
