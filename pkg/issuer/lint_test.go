package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

func TestLintRegistryHoldsOnlyIETFLints(t *testing.T) {
	reg, err := lintRegistry()
	if err != nil {
		t.Fatal(err)
	}
	names := reg.Names()
	if len(names) < 100 {
		t.Fatalf("only %d lints registered; the filter is too narrow", len(names))
	}
	allowed := map[lint.LintSource]bool{}
	for _, s := range lintSources {
		allowed[s] = true
	}
	for _, n := range names {
		l := reg.CertificateLints().ByName(n)
		if l == nil {
			continue // revocation list or OCSP lint
		}
		if !allowed[l.Source] {
			t.Errorf("lint %s from source %s is registered", n, l.Source)
		}
	}
	for _, want := range []string{"e_ext_san_uri_format_invalid", "e_ext_key_usage_cert_sign_without_ca", "e_sub_cert_aia_does_not_contain_issuing_ca_url"} {
		has := false
		for _, n := range names {
			has = has || n == want
		}
		if strings.HasPrefix(want, "e_sub_cert") == has { // CA/B Forum lints must be absent, IETF ones present
			t.Errorf("lint %s present = %v", want, has)
		}
	}
}

// lintCases are certificates to lint: issued leaves for each key type, the
// unit CA's own certificates, and leaves and CA certificates made defective
// in the ways the other tests use (a CA:true or keyCertSign leaf, a CRL
// distribution point that is no URI, over-long and inverted validity, bad
// and duplicate extensions, no names), some from before the effective date
// of lints (NE).
func lintCases(t *testing.T) map[string][]byte {
	t.Helper()
	u := newUnitCA(t, Config{})
	ctx := context.Background()
	cases := map[string][]byte{}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.PublicKey{"P-256": newP256(t).Public(), "P-384": p384.Public(), "RSA": rsaKey.Public(), "Ed25519": edPub}
	for name, pub := range keys {
		got, err := u.iss.Issue(ctx, Request{PublicKey: pub, SPIFFEID: "spiffe://example.org/lint/" + name,
			DNSNames: []string{"a.example.org", "b.example.org"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}})
		if err != nil {
			t.Fatalf("Issue for %s: %v", name, err)
		}
		cases["leaf "+name] = got.DER
	}
	cases["issuing CA"] = u.iss.cert.Raw
	for n, der := range u.iss.Chain() {
		cases[fmt.Sprintf("chain %d", n)] = der
	}

	pub := newP256(t).Public()
	edits := map[string]func(*x509.Certificate){
		"leaf with keyCertSign": func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign },
		"leaf that is a CA":     func(c *x509.Certificate) { c.IsCA = true },
		"CRL DP that is no URI": func(c *x509.Certificate) { c.CRLDistributionPoints = []string{"not a uri"} },
		"validity to year 9999": func(c *x509.Certificate) { c.NotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) },
		"validity inverted":     func(c *x509.Certificate) { c.NotAfter = c.NotBefore.Add(-time.Hour) },
		"issued in 1999": func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		},
		"zero serial":           func(c *x509.Certificate) { c.SerialNumber = big.NewInt(0) },
		"no SAN, empty subject": func(c *x509.Certificate) { c.URIs, c.DNSNames, c.IPAddresses = nil, nil, nil },
		"no key usage, no SKI":  func(c *x509.Certificate) { c.KeyUsage, c.SubjectKeyId = 0, nil },
		"empty policy extension": func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 32}, Value: []byte{0x30, 0x00}}}
		},
		"unknown extension with bad DER": func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 5}, Value: []byte{0x30, 0x05, 0x01}}}
		},
		"extension zcrypto cannot parse": func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 30}, Critical: true, Value: []byte{0x30, 0x05, 0x01}}}
		},
		"duplicate extension": func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}, {Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}}
		},
		"DNS name with underscore": func(c *x509.Certificate) { c.DNSNames = []string{"a_b.example.org", "*.x.example.org"} },
	}
	for name, edit := range edits {
		v, err := u.iss.validate(Request{PublicKey: pub, SPIFFEID: "spiffe://example.org/lint", DNSNames: []string{"x.example.org"}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := u.iss.leafTemplate(v, big.NewInt(12345))
		if err != nil {
			t.Fatal(err)
		}
		edit(tmpl)
		der, err := u.iss.lint.lintCopy(tmpl, pub)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cases[name] = der
	}

	root := newOfflineRoot(t, t0)
	csr := mustCSR(t)
	for name, edit := range map[string]func(*x509.Certificate){
		"intermediate": nil,
		"intermediate that is no CA": func(c *x509.Certificate) {
			c.IsCA, c.KeyUsage, c.MaxPathLenZero = false, x509.KeyUsageDigitalSignature, false
		},
		"intermediate without length": func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = -1, false },
		"expired intermediate":        func(c *x509.Certificate) { c.NotAfter = t0.Add(-time.Second) },
	} {
		chain, err := parseChainPEM(root.sign(t, csr, t0, edit))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cases[name] = chain[0].Raw
		cases["offline root"] = chain[len(chain)-1].Raw
	}

	self := &x509.Certificate{SerialNumber: new(big.Int).Lsh(big.NewInt(1), 170), Subject: pkix.Name{CommonName: strings.Repeat("x", 80)},
		NotBefore: t0, NotAfter: t0.Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, self, self, rsaKey.Public(), rsaKey)
	if err != nil {
		t.Fatalf("self-signed: %v", err)
	}
	cases["self-signed RSA, 22-byte serial, long CN"] = der
	return cases
}

// The direct run of the selected lints gives, for every certificate, the
// same lints with the same statuses as zlint.LintCertificateEx on
// lintRegistry, and lintDER fails exactly when that result set has a warn,
// error or fatal, naming the same lints.
func TestDirectLintRunMatchesLintCertificateEx(t *testing.T) {
	reg, err := lintRegistry()
	if err != nil {
		t.Fatal(err)
	}
	lints, err := selectedLints()
	if err != nil {
		t.Fatal(err)
	}
	failing := 0
	seen := map[lint.LintStatus]bool{}
	for name, der := range lintCases(t) {
		t.Run(name, func(t *testing.T) {
			zc, err := zx509.ParseCertificate(der)
			if err != nil {
				if err := lintDER(der); !errors.Is(err, ErrLint) {
					t.Fatalf("lintDER = %v on a certificate zcrypto cannot parse, want ErrLint", err)
				}
				return
			}
			want := map[string]lint.LintStatus{}
			var wantFailed []string
			for n, r := range zlint.LintCertificateEx(zc, reg).Results {
				want[n] = r.Status
				seen[r.Status] = true
				if r.Status >= lint.Warn {
					wantFailed = append(wantFailed, fmt.Sprintf("%s (%s)", n, r.Status))
				}
			}
			zc2, err := zx509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("zcrypto: %v", err)
			}
			got := map[string]lint.LintStatus{}
			for _, l := range lints.lints {
				if _, dup := got[l.Name]; dup {
					t.Errorf("lint %s selected twice", l.Name)
				}
				got[l.Name] = lints.status(l, zc2)
			}
			if len(got) < 100 || !maps.Equal(got, want) {
				for n, s := range want {
					if got[n] != s {
						t.Errorf("%s: direct %v, LintCertificateEx %v", n, got[n], s)
					}
				}
				t.Fatalf("direct run has %d results, LintCertificateEx %d", len(got), len(want))
			}
			err = lintDER(der)
			slices.Sort(wantFailed)
			if len(wantFailed) == 0 {
				if err != nil {
					t.Fatalf("lintDER = %v; LintCertificateEx passes it", err)
				}
				return
			}
			failing++
			if wantErr := ErrLint.Error() + ": " + strings.Join(wantFailed, ", "); err == nil || !errors.Is(err, ErrLint) || err.Error() != wantErr {
				t.Fatalf("lintDER = %v, want %s", err, wantErr)
			}
			t.Log(err)
		})
	}
	if failing < 10 {
		t.Errorf("only %d of the certificates fail lints; the defective cases no longer test failures", failing)
	}
	for _, s := range []lint.LintStatus{lint.NA, lint.NE, lint.Pass, lint.Warn, lint.Error} {
		if !seen[s] {
			t.Errorf("no lint gave %s on any certificate; the cases no longer cover it", s)
		}
	}
}

// fakeLint is a lint whose steps do what the test says.
type fakeLint struct {
	applies func() bool
	execute func() *lint.LintResult
}

func (f *fakeLint) CheckApplies(*zx509.Certificate) bool        { return f.applies() }
func (f *fakeLint) Execute(*zx509.Certificate) *lint.LintResult { return f.execute() }

// fakeLintConfigurable is a lint with a configuration target.
type fakeLintConfigurable struct{ configure any }

func (f *fakeLintConfigurable) Configure() any                       { return f.configure }
func (f *fakeLintConfigurable) CheckApplies(*zx509.Certificate) bool { return true }
func (f *fakeLintConfigurable) Execute(*zx509.Certificate) *lint.LintResult {
	return &lint.LintResult{Status: lint.Pass}
}

// status gives what (*lint.CertificateLint).Execute gives for the steps of
// a lint that the registry's lints may not exercise: panics, dates that make
// it not effective, the framework's filter of CA/Browser Forum lints, and
// configuration.
func TestLintStatusMatchesExecute(t *testing.T) {
	lints, err := selectedLints()
	if err != nil {
		t.Fatal(err)
	}
	yes := func() bool { return true }
	no := func() bool { return false }
	warn := func() *lint.LintResult { return &lint.LintResult{Status: lint.Warn} }
	boom := func() bool { panic("boom") }
	future, past := time.Now().AddDate(10, 0, 0), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]lint.CertificateLint{
		"warns":                  {Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"does not apply":         {Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: no, execute: warn} }},
		"panics in CheckApplies": {Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: boom, execute: warn} }},
		"panics in Execute": {Lint: func() lint.CertificateLintInterface {
			return &fakeLint{applies: yes, execute: func() *lint.LintResult { panic("boom") }}
		}},
		"panics when made":               {Lint: func() lint.CertificateLintInterface { panic("boom") }},
		"effective later":                {LintMetadata: lint.LintMetadata{EffectiveDate: future}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"no longer effective":            {LintMetadata: lint.LintMetadata{IneffectiveDate: past}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"effective, not later":           {LintMetadata: lint.LintMetadata{EffectiveDate: past, IneffectiveDate: future}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"not effective and not applying": {LintMetadata: lint.LintMetadata{EffectiveDate: future}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: no, execute: warn} }},
		"S/MIME lint on a TLS leaf":      {LintMetadata: lint.LintMetadata{Source: lint.CABFSMIMEBaselineRequirements}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"BR lint on a TLS leaf":          {LintMetadata: lint.LintMetadata{Source: lint.CABFBaselineRequirements}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"code signing lint":              {LintMetadata: lint.LintMetadata{Source: lint.CABFCSBaselineRequirements}, Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"overrides the filter": {LintMetadata: lint.LintMetadata{Source: lint.CABFSMIMEBaselineRequirements, OverrideFrameworkFilter: true},
			Lint: func() lint.CertificateLintInterface { return &fakeLint{applies: yes, execute: warn} }},
		"configurable":         {Lint: func() lint.CertificateLintInterface { return &fakeLintConfigurable{configure: &struct{ A int }{}} }},
		"cannot be configured": {Lint: func() lint.CertificateLintInterface { return &fakeLintConfigurable{configure: 5} }},
	}
	u := newUnitCA(t, Config{})
	got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[lint.LintStatus]bool{}
	for _, der := range [][]byte{got.DER, u.iss.cert.Raw} {
		zc, err := zx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		for name, l := range cases {
			l.Name = "fake"
			want := l.Execute(zc, lints.config).Status
			seen[want] = true
			if st := lints.status(&l, zc); st != want {
				t.Errorf("%s on %s: status %v, Execute %v", name, zc.Subject, st, want)
			}
		}
	}
	for _, s := range []lint.LintStatus{lint.NA, lint.NE, lint.Pass, lint.Warn, lint.Fatal} {
		if !seen[s] {
			t.Errorf("no case gave %s", s)
		}
	}
	nilResult := lint.CertificateLint{Lint: func() lint.CertificateLintInterface {
		return &fakeLint{applies: yes, execute: func() *lint.LintResult { return nil }}
	}}
	if st := lints.status(&nilResult, &zx509.Certificate{}); st != lint.Fatal {
		t.Errorf("a lint without result gives %v, want fatal", st)
	}
}

// The lints selected once are run by concurrent issuances: each run gets
// the same answer (and -race sees no shared state written).
func TestLintDERConcurrently(t *testing.T) {
	cases := lintCases(t)
	good, bad := cases["leaf P-256"], cases["leaf with keyCertSign"]
	wantBad := lintDER(bad)
	if lintDER(good) != nil || wantBad == nil {
		t.Fatal("the cases no longer pass and fail")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if err := lintDER(good); err != nil {
					t.Errorf("good: %v", err)
				}
				if err := lintDER(bad); err == nil || err.Error() != wantBad.Error() {
					t.Errorf("bad: %v, want %v", err, wantBad)
				}
			}
		})
	}
	wg.Wait()
}
