package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// FuzzNormalizePath checks that whatever a path normalises to carries none
// of the things normalisation refuses, and that Decide agrees with it.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/v1/refunds/1", "/v1/refunds/", "/a/../b", "/%2e%2e/x", "/a%2fb", "//a", "/a%zz", "/a b", "/%25", "/a\\b"} {
		f.Add(s)
	}
	p := mustParse(f, examplePolicy)
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := NormalizePath(raw)
		d := p.Decide(Request{Source: orders, Service: "payments", Method: "POST", Path: raw}, nil)
		if err != nil {
			if d.Reason != ReasonPathInvalid {
				t.Fatalf("NormalizePath refused %q but Decide said %+v", raw, d)
			}
			return
		}
		if d.Reason == ReasonPathInvalid {
			t.Fatalf("NormalizePath accepted %q but Decide refused it", raw)
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || strings.ContainsAny(out, "\\\x00") {
			t.Fatalf("NormalizePath(%q) = %q", raw, out)
		}
		if out != "/" {
			if strings.HasSuffix(out, "/") {
				t.Fatalf("NormalizePath(%q) = %q ends with /", raw, out)
			}
			for _, seg := range strings.Split(out[1:], "/") {
				if seg == "." || seg == ".." || seg == "" {
					t.Fatalf("NormalizePath(%q) = %q has segment %q", raw, out, seg)
				}
			}
		}
		if !strings.Contains(raw, "%") {
			if again, err := NormalizePath(out); err != nil || again != out {
				t.Fatalf("NormalizePath(%q) = %q, then %q, %v", raw, out, again, err)
			}
		}
	})
}

// FuzzParsePolicy checks that parsing never panics, fails only with a
// *ParseError, and that an accepted policy's per-service cuts parse and
// decide like the whole.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(examplePolicy))
	f.Add([]byte("trust_domain: example.org\nservices: {}\n"))
	f.Add([]byte("trust_domain: example.org\nservices:\n  s:\n    identity: spiffe://example.org/s\n    mode: observe\n    endpoints:\n      - {name: e, methods: ['*'], paths: [/**], allow: [spiffe://example.org/*]}\n"))
	f.Add([]byte("trust_domain: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		sum := sha256.Sum256(data)
		if p.Version() != hex.EncodeToString(sum[:]) {
			t.Fatal("Version is not the SHA-256 of the bytes")
		}
		for _, name := range p.Services() {
			b, err := p.ForService(name)
			if err != nil {
				t.Fatal(err)
			}
			q, err := ParsePolicy(b)
			if err != nil {
				t.Fatalf("ForService(%s) does not parse: %v\n%s", name, err, b)
			}
			si, _ := p.Describe(name)
			for _, ep := range si.Endpoints {
				for _, path := range ep.Paths {
					for _, src := range append(ep.Allow, "spiffe://"+p.TrustDomain()+"/x") {
						r := Request{Source: strings.TrimSuffix(src, "/*") + "/c", Service: name, Method: ep.Methods[0], Path: strings.ReplaceAll(path, "*", "x")}
						d1, d2 := p.Decide(r, nil), q.Decide(r, nil)
						d2.PolicyVersion = d1.PolicyVersion
						if d1 != d2 {
							t.Fatalf("cut decides %+v, whole %+v for %+v", d2, d1, r)
						}
					}
				}
			}
		}
	})
}
