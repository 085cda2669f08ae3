package mtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
)

// Reason says why a handshake was rejected. The set is fixed; the values are
// stable strings meant for logs, metrics, playbooks and `ca probe --json`.
type Reason string

// Rejection reasons. Exactly one is given for every handshake this package
// rejects.
const (
	// ReasonExpired: the peer's certificate (or a certificate in its chain,
	// or the trust anchor) is past its notAfter.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: the peer's certificate is not valid before a time
	// further in the future than the skew tolerance (clock skew or a
	// certificate dated ahead).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonUnknownCA: the chain does not lead to a trust anchor in the
	// bundle of the peer's trust domain.
	ReasonUnknownCA Reason = "unknown_ca"
	// ReasonWrongTrustDomain: the peer's SPIFFE ID is in a trust domain we
	// have no bundle for, or the authorizer wants another trust domain.
	ReasonWrongTrustDomain Reason = "wrong_trust_domain"
	// ReasonIdentityNotAuthorized: the chain verifies but the authorizer
	// refuses the SPIFFE ID, or the certificate carries no valid SPIFFE ID.
	ReasonIdentityNotAuthorized Reason = "identity_not_authorized"
	// ReasonRevoked: the CA's CRL or OCSP responder says the certificate is
	// revoked.
	ReasonRevoked Reason = "revoked"
	// ReasonRevocationUnknown: revocation checking is fail-closed and the
	// status could not be established (CRL or OCSP unreachable or invalid).
	ReasonRevocationUnknown Reason = "revocation_unknown"
	// ReasonBadKeyUsage: the certificate's extended key usage does not allow
	// its role (clientAuth for clients, serverAuth for servers), the leaf is
	// a CA, or its key usage lacks digitalSignature or includes certificate
	// signing.
	ReasonBadKeyUsage Reason = "bad_key_usage"
	// ReasonNoClientCertificate: the client sent no certificate.
	ReasonNoClientCertificate Reason = "no_client_certificate"
	// ReasonProtocolVersion: the peer offered only TLS versions below our
	// minimum.
	ReasonProtocolVersion Reason = "protocol_version"
	// ReasonRejectedByPeer is never produced by the rejecting side: it is
	// what the other side can say when the peer answered with a bare
	// bad_certificate or certificate_unknown alert, which carries no reason.
	// The reason is in the peer's log line.
	ReasonRejectedByPeer Reason = "rejected_by_peer"
)

// Reasons lists every Reason in a stable order.
var Reasons = []Reason{
	ReasonExpired, ReasonNotYetValid, ReasonUnknownCA, ReasonWrongTrustDomain,
	ReasonIdentityNotAuthorized, ReasonRevoked, ReasonRevocationUnknown,
	ReasonBadKeyUsage, ReasonNoClientCertificate, ReasonProtocolVersion,
	ReasonRejectedByPeer,
}

// RejectError is the error a handshake returns on the side that rejected the
// peer; get it with errors.As. Detail is a short human explanation that never
// contains key material.
type RejectError struct {
	Reason Reason
	// PeerID is the SPIFFE ID the peer's certificate claims (not
	// necessarily verified), or "".
	PeerID string
	Detail string
	// Err is the underlying error (an x509 verification error, a
	// revocation fetch error, an authorizer's error), or nil.
	Err error
}

func (e *RejectError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("mtls: peer rejected: %s", e.Reason)
	}
	return fmt.Sprintf("mtls: peer rejected: %s: %s", e.Reason, e.Detail)
}

func (e *RejectError) Unwrap() error { return e.Err }

func reject(reason Reason, peerID string, err error, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, PeerID: peerID, Detail: fmt.Sprintf(format, args...), Err: err}
}

// Failure is what a failed handshake's error says about the failure.
type Failure struct {
	Reason Reason
	// Local is true when this side rejected the peer (a *RejectError), false
	// when the reason was inferred from the alert the peer sent.
	Local bool
	// Alert is the TLS alert received from the peer, or 0.
	Alert uint8
}

// TLS alert codes (RFC 8446 section 6) that carry a reason.
const (
	alertBadCertificate         = 42
	alertUnsupportedCertificate = 43
	alertCertificateRevoked     = 44
	alertCertificateExpired     = 45
	alertCertificateUnknown     = 46
	alertUnknownCA              = 48
	alertProtocolVersion        = 70
	alertCertificateRequired    = 116
)

var alertReasons = map[uint8]Reason{
	alertBadCertificate:         ReasonRejectedByPeer,
	alertCertificateUnknown:     ReasonRejectedByPeer,
	alertUnsupportedCertificate: ReasonBadKeyUsage,
	alertCertificateRevoked:     ReasonRevoked,
	alertCertificateExpired:     ReasonExpired,
	alertUnknownCA:              ReasonUnknownCA,
	alertProtocolVersion:        ReasonProtocolVersion,
	alertCertificateRequired:    ReasonNoClientCertificate,
}

// Classify tells why a handshake (or the first read after it: in TLS 1.3 a
// client learns of the server's rejection only then) failed. On the side that
// rejected, it is the *RejectError's reason. On the other side it maps the
// received alert: certificate_expired, unknown_ca, certificate_revoked,
// certificate_required, protocol_version and unsupported_certificate carry a
// reason; bad_certificate and certificate_unknown (what a peer using this
// package, or any verifier that does its own checks, always sends) only say
// that the peer refused us, ReasonRejectedByPeer. ok is false for errors
// that are not certificate or version failures (or that crypto/tls does not
// type, such as a client refusing a server's too-old version).
func Classify(err error) (f Failure, ok bool) {
	if re, isReject := errors.AsType[*RejectError](err); isReject {
		return Failure{Reason: re.Reason, Local: true}, true
	}
	code, isAlert := receivedAlert(err)
	if !isAlert {
		return Failure{}, false
	}
	r, known := alertReasons[code]
	if !known {
		return Failure{Alert: code}, false
	}
	return Failure{Reason: r, Alert: code}, true
}

// receivedAlert finds the TLS alert in err's chain. crypto/tls reports a
// received alert as a *net.OpError around its unexported alert type (a
// uint8); we recognise that type by its package and kind, never by message.
func receivedAlert(err error) (uint8, bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if a, ok := e.(tls.AlertError); ok {
			return uint8(a), true
		}
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Uint8 && v.Type().PkgPath() == "crypto/tls" {
			return uint8(v.Uint()), true
		}
	}
	return 0, false
}
