package revoke

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// identityOCSPNow is how many revoked OCSP responses RevokeIdentity signs
// before it returns; beyond that the publisher, kicked at once, signs the
// rest on its next tick (an identity with thousands of live certificates
// must not hold the request, or the HSM, for minutes).
const identityOCSPNow = 64

// RevokeIdentity revokes every unexpired active certificate of spiffeID for
// reason (an RFC 5280 reason name, see ReasonNames) in one store
// transaction that also appends one audit entry per certificate (action
// revoke, Target its serial, Details naming the identity scope). It returns
// the certificates it revoked, ordered by serial; none is not an error.
// Errors: *ReasonError (ErrInvalidReason), wrapped store errors.
//
// After the transaction it does for each certificate what Revoke does for
// one: drops it from this process's caching responders, kicks the publisher
// (CRLs regenerate at once here; other replicas see the revocation counters
// move on their next tick), and signs the revoked OCSP responses of the
// first identityOCSPNow certificates before returning.
func (r *Revoker) RevokeIdentity(ctx context.Context, spiffeID, reason, actor, requestID string) ([]store.Certificate, error) {
	if _, err := ReasonCode(reason); err != nil {
		return nil, err
	}
	now := r.d.Clock.Now()
	details, _ := json.Marshal(map[string]string{"reason": reason, "scope": "identity", "spiffe_id": spiffeID})
	certs, _, err := r.d.Store.RevokeMany(ctx, store.RevokeScope{SPIFFEID: spiffeID}, now, reason, store.AuditEntry{
		Time: now, Actor: actor, Action: "revoke", Decision: "allow", RequestID: requestID, Details: details,
	})
	if err != nil {
		return nil, fmt.Errorf("revoke: identity %s: %w", spiffeID, err)
	}
	for _, c := range certs {
		r.revoked(c.IssuerID, c.Serial)
	}
	r.d.Log.InfoContext(ctx, "identity revoked", "spiffe_id", spiffeID, "certificates", len(certs), "reason", reason,
		"actor", actor, "request_id", requestID)
	if len(certs) == 0 {
		return certs, nil
	}
	r.kick()
	for i, c := range certs {
		if i == identityOCSPNow {
			r.d.Log.InfoContext(ctx, "the publisher signs the remaining revoked OCSP responses on its next tick",
				"spiffe_id", spiffeID, "remaining", len(certs)-i)
			break
		}
		if err := r.replaceOCSP(ctx, c); err != nil {
			r.d.Log.WarnContext(ctx, "revoked OCSP response not stored yet; the publisher will retry",
				"serial", c.Serial, "issuer", c.IssuerID, "error", err.Error())
		}
	}
	return certs, nil
}
