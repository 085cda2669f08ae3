package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// ErrInvalidSerial means a serial number given to Revoke is not 1 to 40 hex
// digits.
var ErrInvalidSerial = errors.New("revoke: invalid serial number")

// Revoker revokes certificates. It is what POST
// /v1/certificates/{serial}/revoke and `ca revoke` call.
type Revoker struct {
	d      Deps
	cas    *caSet
	signer *ocspSigner
	kick   func()
	// revoked tells this process's caching responders (via the Publisher).
	revoked func(issuerID, serial string)
}

// NewRevoker validates cfg. p, if not nil, is kicked after each revocation
// so that this process regenerates the CRL at once; other replicas notice
// the revocation counter on their next tick.
func NewRevoker(d Deps, cfg Config, p *Publisher) (*Revoker, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Revoker{d: d, cas: newCASet(d.Store, d.Keys, d.Clock), kick: func() {}, revoked: func(string, string) {}}
	var m *metrics
	if p != nil {
		r.kick, r.revoked, m = p.Kick, p.revoked, p.metrics
	}
	r.signer = newOCSPSigner(d, cfg, m)
	return r, nil
}

// NormalizeSerial turns a serial as users write it (hex, any case, optional
// colons, leading zeros) into the stored form: lowercase hex without
// leading zeros. ErrInvalidSerial otherwise.
func NormalizeSerial(s string) (string, error) {
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if len(s) == 0 || len(s) > 40 {
		return "", fmt.Errorf("%w: want 1 to 40 hex digits", ErrInvalidSerial)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%w: want 1 to 40 hex digits", ErrInvalidSerial)
		}
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return "", fmt.Errorf("%w: zero is never assigned", ErrInvalidSerial)
	}
	return s, nil
}

// Revoke revokes the certificate with this serial for reason (an RFC 5280
// reason name, see ReasonNames), recording actor and requestID in the
// audit entry that the store appends in the same transaction.
//
// It returns the certificate record as stored. If the certificate was
// already revoked, alreadyRevoked is true, the error is nil and the earlier
// revocation (time and reason) is unchanged. Errors: *ReasonError
// (ErrInvalidReason), ErrInvalidSerial, store.ErrNotFound for an unknown
// serial, wrapped store errors.
//
// After a new revocation it drops the certificate from the memory of every
// Responder following the Publisher p, signs and stores the revoked OCSP response at
// once (so the responder says revoked when Revoke returns, unless that
// step fails, which is logged and repaired by the publisher's next tick),
// and kicks the publisher to regenerate the CRL.
func (r *Revoker) Revoke(ctx context.Context, serial, reason, actor, requestID string) (store.Certificate, bool, error) {
	if _, err := ReasonCode(reason); err != nil {
		return store.Certificate{}, false, err
	}
	sn, err := NormalizeSerial(serial)
	if err != nil {
		return store.Certificate{}, false, err
	}
	now := r.d.Clock.Now()
	details, _ := json.Marshal(map[string]string{"reason": reason})
	cert, _, err := r.d.Store.RevokeCertificate(ctx, sn, now, reason, store.AuditEntry{
		Time: now, Actor: actor, Action: "revoke", Target: sn, Decision: "allow", RequestID: requestID, Details: details,
	})
	if errors.Is(err, store.ErrConflict) && cert.Status == store.CertRevoked {
		r.revoked(cert.IssuerID, sn)
		return cert, true, nil
	}
	if err != nil {
		return store.Certificate{}, false, fmt.Errorf("revoke: %s: %w", sn, err)
	}
	// Before anything else can fail or return: a Responder of this process
	// that follows p must not answer good from memory from now on.
	r.revoked(cert.IssuerID, sn)
	r.d.Log.InfoContext(ctx, "certificate revoked", "serial", sn, "issuer", cert.IssuerID, "reason", reason,
		"actor", actor, "request_id", requestID)
	r.kick()
	if err := r.replaceOCSP(ctx, cert); err != nil {
		r.d.Log.WarnContext(ctx, "revoked OCSP response not stored yet; the publisher will retry",
			"serial", sn, "issuer", cert.IssuerID, "error", err.Error())
	}
	return cert, false, nil
}

// replaceOCSP signs and stores the revoked response for cert.
func (r *Revoker) replaceOCSP(ctx context.Context, cert store.Certificate) error {
	c, err := r.cas.get(ctx, cert.IssuerID)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("revoke: issuer %q is not published", cert.IssuerID)
	}
	resp, err := r.signer.responder(ctx, c)
	if errors.Is(err, issuer.ErrNoResponder) {
		return err // the publisher issues one and signs this response on its next tick
	}
	if err != nil {
		return err
	}
	st := store.RevocationStatus{
		Serial: cert.Serial, IssuerID: cert.IssuerID, NotAfter: cert.NotAfter,
		Revoked: true, RevokedAt: cert.RevokedAt, Reason: cert.RevocationReason,
	}
	out, err := r.signer.signStatus(resp, c, st, "revoke")
	if err != nil {
		return err
	}
	return r.d.Store.PutOCSPResponse(ctx, out)
}
