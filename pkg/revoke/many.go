package revoke

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// bulkOCSPNow is how many revoked OCSP responses RevokeMany signs before it
// returns; beyond that the publisher, kicked at once, signs the rest on its
// next tick (an identity or a lineage with thousands of live certificates
// must not hold the request, or the HSM, for minutes).
const bulkOCSPNow = 64

// RevokeMany revokes every active certificate scope selects (a certificate
// and, with Descendants, every certificate renewed from it, transitively;
// or every unexpired active certificate of a SPIFFE ID) for reason, in one
// store transaction that appends one audit entry per revoked certificate
// (actor, requestID, and the scope in the details). It returns the
// certificates it revoked, by serial; none when all were revoked before
// (their earlier revocations are unchanged) or, for an identity, when it
// has no live certificate.
//
// After the transaction it does for each what Revoke does for one: drops
// it from the memory of this process's Responders, kicks the publisher once
// to regenerate the CRL (other replicas see the revocation counter move on
// their next tick, as for a single revocation), and signs and stores the
// revoked OCSP responses of the first bulkOCSPNow certificates (a failure
// is logged and repaired by the publisher, as are the rest). Errors:
// *ReasonError (ErrInvalidReason), ErrInvalidSerial, store.ErrNotFound for
// an unknown serial, store.ErrInvalidQuery for a malformed scope, wrapped
// store errors.
func (r *Revoker) RevokeMany(ctx context.Context, scope store.RevokeScope, reason, actor, requestID string) ([]store.Certificate, error) {
	if _, err := ReasonCode(reason); err != nil {
		return nil, err
	}
	if scope.Serial != "" {
		sn, err := NormalizeSerial(scope.Serial)
		if err != nil {
			return nil, err
		}
		scope.Serial = sn
	}
	what := scope.Serial
	detail := map[string]any{"reason": reason, "scope_serial": scope.Serial, "descendants": scope.Descendants}
	if scope.SPIFFEID != "" {
		what = scope.SPIFFEID
		detail = map[string]any{"reason": reason, "scope": "identity", "spiffe_id": scope.SPIFFEID}
	}
	now := r.d.Clock.Now()
	details, _ := json.Marshal(detail)
	certs, _, err := r.d.Store.RevokeMany(ctx, scope, now, reason, store.AuditEntry{
		Time: now, Actor: actor, Action: "revoke", Decision: "allow", RequestID: requestID, Details: details,
	})
	if err != nil {
		return nil, fmt.Errorf("revoke: %s: %w", what, err)
	}
	for _, c := range certs {
		r.revoked(c.IssuerID, c.Serial)
	}
	if len(certs) == 0 {
		return nil, nil
	}
	r.kick()
	for i, c := range certs {
		r.d.Log.InfoContext(ctx, "certificate revoked", "serial", c.Serial, "issuer", c.IssuerID, "reason", reason,
			"actor", actor, "request_id", requestID, "scope_serial", scope.Serial, "descendants", scope.Descendants,
			"scope_spiffe_id", scope.SPIFFEID)
		if i >= bulkOCSPNow {
			continue // the publisher signs it (kicked above)
		}
		if err := r.replaceOCSP(ctx, c); err != nil {
			r.d.Log.WarnContext(ctx, "revoked OCSP response not stored yet; the publisher will retry",
				"serial", c.Serial, "issuer", c.IssuerID, "error", err.Error())
		}
	}
	if len(certs) > bulkOCSPNow {
		r.d.Log.InfoContext(ctx, "the publisher signs the remaining revoked OCSP responses on its next tick",
			"scope", what, "remaining", len(certs)-bulkOCSPNow)
	}
	return certs, nil
}
