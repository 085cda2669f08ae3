package mtls

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Clock tells the current time; internal/clock's Real and Fake satisfy it.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// DefaultSkewTolerance is how far in the future a peer certificate's
// notBefore may be before it is refused as not_yet_valid.
const DefaultSkewTolerance = time.Minute

// Role is the role a verified peer plays, and so the extended key usage its
// certificate must allow.
type Role int

const (
	// PeerIsClient: the peer is a TLS client; its certificate needs clientAuth.
	PeerIsClient Role = iota
	// PeerIsServer: the peer is a TLS server; its certificate needs serverAuth.
	PeerIsServer
)

func (r Role) usage() x509.ExtKeyUsage {
	if r == PeerIsServer {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// Verifier checks a peer's certificate chain and classifies every failure.
// It is what the tls.Configs of this package call, and what `ca probe` uses.
// Safe for concurrent use.
type Verifier struct {
	bundles    x509bundle.Source
	authorize  Authorizer
	revocation *RevocationChecker
	clock      Clock
	skew       time.Duration
}

// VerifierConfig configures a Verifier. Bundles and Authorize are required.
type VerifierConfig struct {
	Bundles   x509bundle.Source
	Authorize Authorizer
	// Revocation, when set, checks the leaf against its CRL or OCSP.
	Revocation *RevocationChecker
	// Clock defaults to the wall clock.
	Clock Clock
	// SkewTolerance defaults to DefaultSkewTolerance; negative means none.
	SkewTolerance time.Duration
}

// ErrConfig means a Config or VerifierConfig is incomplete or invalid.
var ErrConfig = errors.New("mtls: invalid configuration")

// NewVerifier checks cfg and builds a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Bundles == nil {
		return nil, fmt.Errorf("%w: no bundle source", ErrConfig)
	}
	if cfg.Authorize == nil {
		return nil, fmt.Errorf("%w: no authorizer (use AuthorizeAny to accept every verified peer)", ErrConfig)
	}
	v := &Verifier{bundles: cfg.Bundles, authorize: cfg.Authorize, revocation: cfg.Revocation, clock: cfg.Clock, skew: cfg.SkewTolerance}
	if v.clock == nil {
		v.clock = realClock{}
	}
	switch {
	case v.skew == 0:
		v.skew = DefaultSkewTolerance
	case v.skew < 0:
		v.skew = 0
	}
	return v, nil
}

// Verified is a peer that passed every check.
type Verified struct {
	ID spiffeid.ID
	// Chain is the verified chain, leaf first, ending at a trust anchor.
	Chain []*x509.Certificate
	// Revocation is the revocation status that was found (zero when no
	// checker is configured).
	Revocation RevocationResult
}

// Verify checks certs (as presented by the peer, leaf first) for a peer in
// role. It returns the verified peer, or a *RejectError with exactly one
// reason. The checks run cheapest first and the first failure wins: a SPIFFE
// ID is present, its trust domain has a bundle, the chain verifies at the
// clock's time (with the skew tolerance for notBefore), the leaf's key usage
// fits, the authorizer accepts the ID, the leaf is not revoked. When the
// chain fails for several reasons, an unknown CA wins over expiry.
func (v *Verifier) Verify(ctx context.Context, certs []*x509.Certificate, role Role) (*Verified, error) {
	if len(certs) == 0 {
		if role == PeerIsClient {
			return nil, reject(ReasonNoClientCertificate, "", nil, "the client sent no certificate")
		}
		return nil, reject(ReasonUnknownCA, "", nil, "the server sent no certificate")
	}
	leaf := certs[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, reject(ReasonIdentityNotAuthorized, "", err, "certificate has no valid SPIFFE ID (subject %q)", leaf.Subject.CommonName)
	}
	peer := id.String()
	b, err := v.bundles.GetX509BundleForTrustDomain(id.TrustDomain())
	if err != nil || len(b.X509Authorities()) == 0 {
		return nil, reject(ReasonWrongTrustDomain, peer, err, "no trust bundle for trust domain %q", id.TrustDomain().Name())
	}
	chain, rej := v.verifyChain(certs, b.X509Authorities(), role, peer)
	if rej != nil {
		return nil, rej
	}
	if rej := checkLeafUsage(leaf, peer); rej != nil {
		return nil, rej
	}
	if err := v.authorize(id, chain); err != nil {
		if errors.Is(err, ErrWrongTrustDomain) {
			return nil, reject(ReasonWrongTrustDomain, peer, err, "%v", err)
		}
		return nil, reject(ReasonIdentityNotAuthorized, peer, err, "%s is not authorized", peer)
	}
	out := &Verified{ID: id, Chain: chain}
	if v.revocation != nil && len(chain) > 1 {
		res := v.revocation.Check(ctx, leaf, chain[1])
		out.Revocation = res
		switch {
		case res.Status == StatusRevoked:
			return nil, reject(ReasonRevoked, peer, nil, "serial %s revoked at %s (per %s)", serialHex(leaf), res.RevokedAt.UTC().Format(time.RFC3339), res.Source)
		case res.Status == StatusUnknown && !v.revocation.failOpen:
			return nil, reject(ReasonRevocationUnknown, peer, res.Err, "revocation status of serial %s unknown and checking is fail-closed", serialHex(leaf))
		}
	}
	return out, nil
}

// verifyChain verifies certs against anchors at the clock's time and
// classifies failures. Expiry is told apart from other failures by verifying
// again at a time when every presented certificate is valid.
func (v *Verifier) verifyChain(certs, anchors []*x509.Certificate, role Role, peer string) ([]*x509.Certificate, *RejectError) {
	now := v.clock.Now()
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{role.usage()}}
	leaf := certs[0]
	chains, err := leaf.Verify(opts)
	if err == nil {
		return chains[0], nil
	}
	at, consistent := validInstant(certs, now)
	if !consistent || at.Equal(now) {
		// The presented certificates are valid now (or never together):
		// the failure is not theirs to explain by time.
		return nil, classifyChainError(err, peer, leaf, now)
	}
	opts.CurrentTime = at
	chains, err = leaf.Verify(opts)
	if err != nil {
		return nil, classifyChainError(err, peer, leaf, at)
	}
	if at.After(now) {
		if at.Sub(now) <= v.skew {
			return chains[0], nil
		}
		return nil, reject(ReasonNotYetValid, peer, nil, "certificate serial %s not valid before %s, %s from now (skew tolerance %s)",
			serialHex(leaf), leaf.NotBefore.UTC().Format(time.RFC3339), at.Sub(now).Round(time.Second), v.skew)
	}
	return nil, reject(ReasonExpired, peer, nil, "certificate serial %s expired at %s, %s ago",
		serialHex(leaf), expiredAt(certs, now).UTC().Format(time.RFC3339), now.Sub(expiredAt(certs, now)).Round(time.Second))
}

// validInstant is the instant closest to now at which every certificate in
// certs is valid; consistent is false when there is none.
func validInstant(certs []*x509.Certificate, now time.Time) (at time.Time, consistent bool) {
	from, until := certs[0].NotBefore, certs[0].NotAfter
	for _, c := range certs[1:] {
		if c.NotBefore.After(from) {
			from = c.NotBefore
		}
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	switch {
	case from.After(until):
		return now, false
	case now.Before(from):
		return from, true
	case now.After(until):
		return until, true
	default:
		return now, true
	}
}

// expiredAt is the earliest notAfter before now among certs.
func expiredAt(certs []*x509.Certificate, now time.Time) time.Time {
	t := now
	for _, c := range certs {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// classifyChainError maps an x509 verification error to a reason.
func classifyChainError(err error, peer string, leaf *x509.Certificate, at time.Time) *RejectError {
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return reject(ReasonUnknownCA, peer, err, "chain of serial %s (issuer %q) does not lead to a trust anchor of the bundle", serialHex(leaf), leaf.Issuer.CommonName)
	}
	if inv, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		switch inv.Reason {
		case x509.Expired:
			return reject(ReasonExpired, peer, err, "a certificate of the chain or the trust anchor is outside its validity at %s", at.UTC().Format(time.RFC3339))
		case x509.IncompatibleUsage:
			return reject(ReasonBadKeyUsage, peer, err, "extended key usage of serial %s does not allow this role", serialHex(leaf))
		case x509.NotAuthorizedToSign:
			return reject(ReasonBadKeyUsage, peer, err, "a certificate in the chain is not allowed to sign certificates")
		}
	}
	return reject(ReasonUnknownCA, peer, err, "chain of serial %s does not verify: %v", serialHex(leaf), err)
}

// checkLeafUsage applies the X509-SVID leaf rules: not a CA, digitalSignature,
// no certificate or CRL signing.
func checkLeafUsage(leaf *x509.Certificate, peer string) *RejectError {
	switch {
	case leaf.IsCA:
		return reject(ReasonBadKeyUsage, peer, nil, "leaf certificate serial %s is a CA certificate", serialHex(leaf))
	case leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return reject(ReasonBadKeyUsage, peer, nil, "leaf certificate serial %s lacks the digitalSignature key usage", serialHex(leaf))
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return reject(ReasonBadKeyUsage, peer, nil, "leaf certificate serial %s may sign certificates or CRLs", serialHex(leaf))
	}
	return nil
}

func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return "?"
	}
	return c.SerialNumber.Text(16)
}

// claimedID is the SPIFFE ID a certificate claims, verified or not, for
// logs; "" if it has none.
func claimedID(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	id, err := x509svid.IDFromCert(c)
	if err != nil {
		return ""
	}
	return id.String()
}
