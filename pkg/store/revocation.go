package store

import (
	"fmt"
	"time"
)

// RevocationStatus is what CRL entries and OCSP responses are built from: the
// revocation state of one leaf, without its DER.
type RevocationStatus struct {
	Serial    string
	IssuerID  string
	NotAfter  time.Time
	Revoked   bool
	RevokedAt time.Time // zero unless Revoked
	Reason    string    // RFC 5280 reason name, "" unless Revoked
}

// CRL is the latest published CRL of one issuer.
type CRL struct {
	IssuerID   string
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	// RevocationSeq is the issuer's revocation counter (see
	// Store.RevocationSeq) read before the CRL's entries were: the CRL
	// covers at least every revocation counted up to it.
	RevocationSeq int64
	Entries       int
	DER           []byte // nil when read with CRLInfo
}

// OCSPResponse is a pre-signed OCSP response for one certificate.
type OCSPResponse struct {
	Serial       string
	IssuerID     string
	Revoked      bool
	ThisUpdate   time.Time
	NextUpdate   time.Time
	CertNotAfter time.Time
	DER          []byte
}

// OCSPResponder is a delegated OCSP responder certificate of an issuer and
// where its key lives.
type OCSPResponder struct {
	Serial    string // lowercase hex, as for leaves
	IssuerID  string
	KeyURI    string
	CertDER   []byte
	NotBefore time.Time
	NotAfter  time.Time
	CreatedAt time.Time
}

// RevokeScope selects the certificates RevokeMany revokes. Exactly one of
// Serial and SPIFFEID is set.
type RevokeScope struct {
	// Serial is a certificate and, with Descendants, every certificate
	// renewed from it, transitively (its part of the lineage).
	Serial      string
	Descendants bool
	// SPIFFEID selects every unexpired active certificate of this identity.
	SPIFFEID string
}

// Check is RevokeMany's validation of its arguments, the same for every
// store: exactly one of Serial and SPIFFEID, Descendants only with Serial,
// and a revocation time. The error wraps ErrInvalidQuery.
func (s RevokeScope) Check(at time.Time) error {
	switch {
	case s.Serial == "" && s.SPIFFEID == "":
		return fmt.Errorf("revoke many: empty scope: %w", ErrInvalidQuery)
	case s.Serial != "" && s.SPIFFEID != "":
		return fmt.Errorf("revoke many: a scope is a serial or a SPIFFE ID, not both: %w", ErrInvalidQuery)
	case s.Descendants && s.Serial == "":
		return fmt.Errorf("revoke many: descendants of no serial: %w", ErrInvalidQuery)
	case at.IsZero():
		return fmt.Errorf("revoke many: no revocation time: %w", ErrInvalidQuery)
	}
	return nil
}
