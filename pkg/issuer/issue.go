package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Issued is a leaf certificate whose record is committed.
type Issued struct {
	// Serial is the serial as stored: lowercase hex, no leading zeros.
	Serial      string
	Certificate *x509.Certificate
	DER         []byte
	// Chain is the DER of the intermediates from the leaf's issuer up,
	// excluding the root.
	Chain    [][]byte
	NotAfter time.Time
	IssuerID string
}

// serialAttempts bounds retries after a serial collision in the store.
const serialAttempts = 3

// Issue validates r, builds the leaf, signs a copy with a throwaway lint issuer
// and lints it, has the HSM sign the same tbsCertificate, checks the signed
// tbsCertificate is byte-for-byte the linted one, and commits the certificate
// row and its audit entry in one transaction. Only then does it return.
//
// Errors: ErrInvalidRequest (nothing signed), ErrIssuerExpired, ErrLint
// (nothing signed with the CA key), wrapped hsm errors from signing, wrapped
// store errors from recording. On any error the returned *Issued is nil; a
// certificate the HSM signed but the store did not record is discarded. A
// serial collision (store.ErrConflict) is retried with a fresh serial, up to
// serialAttempts times.
func (i *Issuer) Issue(ctx context.Context, r Request) (*Issued, error) {
	now := i.clock.Now()
	v, err := i.validate(r, now)
	if err != nil {
		i.logFailure(ctx, r, err)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		issued, err := i.issueOnce(ctx, v, now)
		if err == nil {
			// LogAttrs, not InfoContext: the same record, without
			// boxing each value in an interface per issuance.
			i.log.LogAttrs(ctx, slog.LevelInfo, "certificate issued",
				slog.String("serial", issued.Serial),
				slog.String("issuer", issued.IssuerID),
				slog.String("spiffe_id", v.SPIFFEID),
				slog.String("policy_rule", v.PolicyRule),
				slog.String("policy_version", v.PolicyVersion),
				slog.String("request_id", v.RequestID),
				slog.String("actor", v.Actor),
				slog.String("action", v.Action),
				slog.Time("not_after", issued.NotAfter),
				slog.String("decision", "allow"))
			return issued, nil
		}
		if errors.Is(err, store.ErrConflict) && attempt < serialAttempts {
			i.log.WarnContext(ctx, "serial collision, retrying with a new serial", "attempt", attempt, "request_id", v.RequestID)
			continue
		}
		i.logFailure(ctx, r, err)
		return nil, err
	}
}

func (i *Issuer) logFailure(ctx context.Context, r Request, err error) {
	level := "error"
	if errors.Is(err, ErrInvalidRequest) {
		level = "invalid_request"
	}
	i.log.WarnContext(ctx, "certificate not issued",
		"issuer", i.rec.ID,
		"spiffe_id", r.SPIFFEID,
		"policy_rule", r.PolicyRule,
		"policy_version", r.PolicyVersion,
		"request_id", r.RequestID,
		"actor", r.Actor,
		"decision", level,
		"error", err.Error())
}

// issueOnce is one attempt with one fresh serial.
func (i *Issuer) issueOnce(ctx context.Context, v validRequest, now time.Time) (*Issued, error) {
	var serial *big.Int
	var err error
	if i.cfg.TimeOrderedSerials {
		serial, err = newTimeOrderedSerial(i.rand, now)
	} else {
		serial, err = newSerial(i.rand)
	}
	if err != nil {
		return nil, err
	}
	tmpl, err := i.leafTemplate(v, serial)
	if err != nil {
		return nil, err
	}
	return i.issueTemplate(ctx, v, now, tmpl)
}

// issueTemplate lints, signs and records the leaf tmpl (its serial
// included), the steps of issueOnce after the template is built.
func (i *Issuer) issueTemplate(ctx context.Context, v validRequest, now time.Time, tmpl *x509.Certificate) (*Issued, error) {
	// Step 1: encode the tbsCertificate once and lint it (see lintCopy).
	lintDERBytes, err := i.lint.lintCopy(tmpl, v.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := lintDER(lintDERBytes); err != nil {
		return nil, err
	}

	// Step 2: the key store signs the linted tbsCertificate itself, so the
	// certificate is the linted one byte for byte (see signLinted).
	// The signer inherits ctx (the request's deadline) where it can: a token
	// that does not answer fails the issuance with hsm.ErrUnavailable.
	der, err := i.signLinted(ctx, lintDERBytes)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parsing signed certificate: %w", err)
	}
	// The names of the issuer come from the lint issuer; they must be the
	// real issuer's, or the certificate chains to nothing.
	if !bytes.Equal(cert.RawIssuer, i.cert.RawSubject) || !bytes.Equal(cert.AuthorityKeyId, i.cert.SubjectKeyId) {
		return nil, errSignedNotLinted
	}

	// Step 3: commit the record and its audit entry, then return.
	sh := serialHex(tmpl.SerialNumber)
	details, err := json.Marshal(issuanceDetails{
		Issuer:      i.rec.ID,
		SPIFFEID:    v.SPIFFEID,
		DNSNames:    v.DNSNames,
		NotAfter:    cert.NotAfter,
		PolicyRule:  v.PolicyRule,
		RenewedFrom: v.RenewedFrom,
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: encoding audit details: %w", err)
	}
	rec := store.Certificate{
		Serial:          sh,
		IssuerID:        i.rec.ID,
		SPIFFEID:        v.SPIFFEID,
		DNSNames:        v.DNSNames,
		NotBefore:       cert.NotBefore,
		NotAfter:        cert.NotAfter,
		DER:             der,
		PublicKeySHA256: spkiSHA256(cert.RawSubjectPublicKeyInfo),
		Status:          store.CertActive,
		Provenance:      v.Provenance,
		PolicyRule:      v.PolicyRule,
		PolicyVersion:   v.PolicyVersion,
		RenewedFrom:     v.RenewedFrom,
		CreatedAt:       now,
		Repository:      v.Repository,
		TokenIssuer:     v.TokenIssuer,
		Subject:         v.Subject,
	}
	entry := store.AuditEntry{
		Time:          now,
		Actor:         v.Actor,
		Action:        v.Action,
		Target:        sh,
		Decision:      "allow",
		PolicyVersion: v.PolicyVersion,
		RequestID:     v.RequestID,
		Details:       details,
	}
	if _, err := i.certs.RecordIssuance(ctx, rec, entry); err != nil {
		return nil, &NotRecordedError{Serial: sh, Err: err}
	}
	return &Issued{
		Serial:      sh,
		Certificate: cert,
		DER:         der,
		Chain:       i.Chain(),
		NotAfter:    cert.NotAfter,
		IssuerID:    i.rec.ID,
	}, nil
}

// issuanceDetails are the details of an issuance's audit entry. The fields
// are in the order of their JSON names, so the encoding is byte for byte the
// one of the map[string]any it replaces (encoding/json sorts map keys),
// without building the map and boxing each value per issuance.
type issuanceDetails struct {
	DNSNames    []string  `json:"dns_names"`
	Issuer      string    `json:"issuer"`
	NotAfter    time.Time `json:"not_after"`
	PolicyRule  string    `json:"policy_rule"`
	RenewedFrom string    `json:"renewed_from"`
	SPIFFEID    string    `json:"spiffe_id"`
}

// leafTemplate is the X.509-SVID profile: empty subject with the SPIFFE ID as
// the only URI SAN in a critical SAN extension (crypto/x509 marks SAN critical
// when the subject is empty, as RFC 5280 requires), digitalSignature (plus
// keyEncipherment for RSA), serverAuth and clientAuth, CA false, SKI (RFC 7093
// method 1), AKI (from the issuer), CRL DP and AIA OCSP.
func (i *Issuer) leafTemplate(v validRequest, serial *big.Int) (*x509.Certificate, error) {
	ski, err := subjectKeyID(v.PublicKey)
	if err != nil {
		return nil, err
	}
	ku := x509.KeyUsageDigitalSignature
	if v.rsaKey {
		ku |= x509.KeyUsageKeyEncipherment
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             v.notBefore,
		NotAfter:              v.notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		URIs:                  []*url.URL{v.spiffeURI},
		DNSNames:              v.DNSNames,
		IPAddresses:           v.IPAddresses,
		CRLDistributionPoints: []string{i.crlURL},
		OCSPServer:            []string{i.ocspURL},
	}, nil
}
