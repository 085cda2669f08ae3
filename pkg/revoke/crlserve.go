package revoke

import (
	"context"
	"fmt"
	"time"
)

// CRLDocument is a stored CRL ready to serve.
type CRLDocument struct {
	IssuerID   string
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte // shared; must not be modified
}

// ETag is a strong entity tag for the document: the CRL number, which
// names exactly one CRL of an issuer.
func (d CRLDocument) ETag() string { return fmt.Sprintf(`"crl-%d"`, d.Number) }

// CRL returns the latest stored CRL of an issuer. Each call reads only the
// CRL's number from the store and keeps the DER of the latest one in
// memory, so serving a large CRL costs one small query. The error wraps
// store.ErrNotFound when the issuer is unknown or has no CRL yet.
func (r *Responder) CRL(ctx context.Context, issuerID string) (CRLDocument, error) {
	info, err := r.d.Store.CRLInfo(ctx, issuerID)
	if err != nil {
		return CRLDocument{}, fmt.Errorf("revoke: CRL of %q: %w", issuerID, err)
	}
	r.mu.Lock()
	c, ok := r.crls[issuerID]
	r.mu.Unlock()
	if !ok || c.Number != info.Number {
		c, err = r.d.Store.GetCRL(ctx, issuerID)
		if err != nil {
			return CRLDocument{}, fmt.Errorf("revoke: CRL of %q: %w", issuerID, err)
		}
		r.mu.Lock()
		if cur, ok := r.crls[issuerID]; !ok || cur.Number < c.Number {
			r.crls[issuerID] = c
		}
		r.mu.Unlock()
		// A new CRL may list revocations committed elsewhere: the next OCSP
		// answer re-reads the revocation counter rather than wait for
		// OCSPCacheRecheck, so this replica's OCSP never lags its CRL.
		if cache := r.cache.Load(); cache != nil {
			cache.expire(issuerID)
		}
	}
	return CRLDocument{IssuerID: issuerID, Number: c.Number, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, DER: c.DER}, nil
}
