package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3/lint"
	"github.com/zmap/zlint/v3/util"
)

// lintSources are the zlint sources that apply to a private CA: the IETF
// profiles of X.509 and the algorithms in it. Left out on purpose: CA/Browser
// Forum (BR, EV, S/MIME, code signing), Mozilla, Apple, Chrome and ETSI
// (web-PKI and EU trust-service policies this CA does not claim), RFC 6962
// (Certificate Transparency, not used by a private CA), RFC 6960 (OCSP
// responses, not certificates) and Community (non-normative heuristics).
var lintSources = lint.SourceList{lint.RFC3279, lint.RFC5280, lint.RFC5480, lint.RFC5891, lint.RFC8813}

// excludedLints are individual lints from lintSources that do not apply, each
// with its reason. Keep this list short and justified.
var excludedLints = []string{}

// lintRegistry is the filtered zlint registry, built once.
var lintRegistry = sync.OnceValues(func() (lint.Registry, error) {
	return lint.GlobalRegistry().Filter(lint.FilterOptions{
		IncludeSources: lintSources,
		ExcludeNames:   excludedLints,
	})
})

// certLints are lintRegistry's certificate lints and its configuration,
// taken once. lintDER runs them itself rather than through
// zlint.LintCertificateEx, whose driver does per certificate what only needs
// doing once or not at all: it lists and sorts every name in the registry
// (to size a map), fills a map of results keyed by name with a copy of each
// lint's metadata, and stamps the time; in profiles of enrollment that was a
// sixth of the linting. status runs each lint by the steps of zlint's
// (*lint.CertificateLint).Execute, without allocating a result for the
// lints that do not apply (most of them on a leaf).
// TestDirectLintRunMatchesLintCertificateEx holds the two runs to the same
// results.
type certLints struct {
	lints  []*lint.CertificateLint
	config lint.Configuration
}

var selectedLints = sync.OnceValues(func() (*certLints, error) {
	reg, err := lintRegistry()
	if err != nil {
		return nil, err
	}
	return &certLints{lints: slices.Clone(reg.CertificateLints().Lints()), config: reg.GetConfiguration()}, nil
})

// run lints c and returns "name (status)" for each lint that gives warn,
// error or fatal, sorted.
func (s *certLints) run(c *zx509.Certificate) []string {
	var failed []string
	for _, l := range s.lints {
		if status := s.status(l, c); status >= lint.Warn {
			failed = append(failed, fmt.Sprintf("%s (%s)", l.Name, status))
		}
	}
	slices.Sort(failed)
	return failed
}

// status is the result of l on c as zlint v3.7's driver has it, by the
// steps of (*lint.CertificateLint).Execute in that order: the framework's
// filter of CA/Browser Forum lints (none is selected today; kept so that
// the result stays zlint's), a fresh lint value configured from the
// registry's configuration (Fatal if that fails), CheckApplies (NA),
// CheckEffective on the certificate's NotBefore (NE), then the lint itself.
// A lint that panics is Fatal, as in zlint.
func (s *certLints) status(l *lint.CertificateLint, c *zx509.Certificate) (status lint.LintStatus) {
	defer func() {
		if recover() != nil {
			status = lint.Fatal
		}
	}()
	if !l.OverrideFrameworkFilter {
		switch {
		case l.Source == lint.CABFBaselineRequirements && !util.IsServerAuthCert(c),
			l.Source == lint.CABFSMIMEBaselineRequirements && !util.IsEmailProtectionCert(c),
			l.Source == lint.CABFCSBaselineRequirements && !util.IsCodeSigning(c.PolicyIdentifiers):
			return lint.NA
		}
	}
	impl := l.Lint()
	if err := s.config.MaybeConfigure(impl, l.Name); err != nil {
		return lint.Fatal
	}
	if !impl.CheckApplies(c) {
		return lint.NA
	}
	if !l.CheckEffective(c) {
		return lint.NE
	}
	r := impl.Execute(c)
	if r == nil {
		// zlint's driver would crash on a lint that gives no result;
		// here it fails the certificate.
		return lint.Fatal
	}
	return r.Status
}

// lintDER runs the certificate lints of lintRegistry on a DER certificate.
// Any result of warn, error or fatal is a failure wrapped in ErrLint, naming
// the lints.
func lintDER(der []byte) error {
	lints, err := selectedLints()
	if err != nil {
		return fmt.Errorf("issuer: building lint registry: %w", err)
	}
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: zlint cannot parse the certificate: %v", ErrLint, err)
	}
	if failed := lints.run(zc); len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrLint, strings.Join(failed, ", "))
	}
	return nil
}

// lintCA lints a freshly signed CA certificate before it is recorded and
// returns it parsed. CA certificates are made only at init or import, so they
// are linted after signing rather than through a lint issuer.
func lintCA(der []byte) (*x509.Certificate, error) {
	if err := lintDER(der); err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parsing signed CA certificate: %w", err)
	}
	return c, nil
}

// lintIssuer builds the copy of a leaf that is linted before the CA key signs
// the same tbsCertificate (see lintCopy and signLinted).
type lintIssuer struct {
	// parent has the real issuer's subject and subject key ID, and the
	// capture key, so the tbsCertificate crypto/x509 encodes names the real
	// issuer.
	parent *x509.Certificate
	// scheme is the signature algorithm the CA key signs with, and a
	// signature of its shape for the lint copy.
	scheme signatureScheme
}

// newLintIssuer learns the signature scheme of real's key type from a
// throwaway key of that type (never from the CA key) and makes the parent.
func newLintIssuer(real *x509.Certificate) (*lintIssuer, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch pub := real.PublicKey.(type) {
	case *ecdsa.PublicKey:
		signer, err = ecdsa.GenerateKey(pub.Curve, rand.Reader)
	case *rsa.PublicKey:
		signer, err = rsa.GenerateKey(rand.Reader, pub.N.BitLen())
	case ed25519.PublicKey:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("issuer: unsupported issuer key type %T", real.PublicKey)
	}
	if err != nil {
		return nil, fmt.Errorf("issuer: generating lint key: %w", err)
	}
	// The throwaway key has the real key's type and size, so crypto/x509
	// chooses the same signature algorithm for both.
	scheme, err := learnSignatureScheme(&x509.Certificate{
		RawSubject: real.RawSubject, SubjectKeyId: real.SubjectKeyId,
		PublicKey: signer.Public(), PublicKeyAlgorithm: real.PublicKeyAlgorithm,
	}, signer)
	if err != nil {
		return nil, err
	}
	return &lintIssuer{
		parent: &x509.Certificate{
			RawSubject:         real.RawSubject,
			Subject:            real.Subject,
			SubjectKeyId:       real.SubjectKeyId,
			PublicKey:          captureKey,
			PublicKeyAlgorithm: x509.Ed25519,
		},
		scheme: scheme,
	}, nil
}
