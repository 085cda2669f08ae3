package store

import "time"

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

// RevokeScope selects the certificates RevokeMany revokes.
type RevokeScope struct {
	Serial      string // this certificate ...
	Descendants bool   // ... and every certificate renewed from it, transitively
	SPIFFEID    string // identity-wide revocation (not supported yet: ErrInvalidQuery)
}
