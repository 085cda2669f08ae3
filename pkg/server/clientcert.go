package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net/http"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// certificateRecords finds the CA's record of an issued certificate;
// EnrollStore and JWTStore fit.
type certificateRecords interface {
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
}

// currentClientCertificate authenticates a workload by its TLS client
// certificate, as POST /v1/renew and POST /v1/jwt do. The TLS layer has
// verified the chain to a current trust anchor (and the client-auth key
// usage); this checks the CA's record of it: the certificate is one this CA
// issued, the very one recorded under its serial, active (not revoked) and
// not expired by clk.
//
// It returns the verified leaf (nil when the request carries none) and the
// record (zero unless the lookup found it, also when the record then fails a
// check), with nil error only when the certificate is current. Errors are a
// 401 unauthorized *Error (noCert is its detail when there is no client
// certificate), a 403 certificate_revoked *Error, or the store's error. On
// info it sets the actor to the certificate's SPIFFE ID, when it has one, and
// the revocation_reason detail of a revoked certificate; the caller records
// the rest.
func currentClientCertificate(r *http.Request, records certificateRecords, clk clock.Clock, info *decisionInfo, noCert string) (*x509.Certificate, store.Certificate, error) {
	unauthorized := func(detail string) error {
		return &Error{Kind: KindCredential, Reason: ReasonUnauthorized, Detail: detail}
	}
	// VerifiedChains is empty without a client certificate.
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil, store.Certificate{}, unauthorized(noCert)
	}
	cur := r.TLS.VerifiedChains[0][0]
	if id := ClientSPIFFEID(r); id != "" {
		info.actor = id
	}
	rec, err := records.GetCertificate(r.Context(), serialHex(cur))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return cur, store.Certificate{}, unauthorized("the client certificate is not one this CA issued")
	case err != nil:
		return cur, store.Certificate{}, err
	case !bytes.Equal(rec.DER, cur.Raw):
		return cur, rec, unauthorized("the client certificate is not the one recorded under its serial")
	case rec.Status == store.CertRevoked:
		info.details["revocation_reason"] = rec.RevocationReason
		return cur, rec, &Error{Kind: KindPolicy, Reason: ReasonCertificateRevoked, Detail: "the client certificate is revoked"}
	case rec.Status != store.CertActive:
		return cur, rec, unauthorized("the client certificate is not active")
	case !clk.Now().Before(rec.NotAfter):
		return cur, rec, unauthorized("the client certificate has expired")
	}
	return cur, rec, nil
}
