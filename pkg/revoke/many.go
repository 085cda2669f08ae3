package revoke

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeMany revokes every active certificate scope selects (a certificate
// and, with Descendants, every certificate renewed from it, transitively)
// for reason, in one store transaction that appends one audit entry per
// revoked certificate (actor, requestID, and the scope in the details). It
// returns the certificates it revoked, by serial; none when all were
// revoked before (their earlier revocations are unchanged).
//
// After the transaction it does for each what Revoke does for one: drops
// it from the memory of this process's Responders, signs and stores its
// revoked OCSP response (a failure is logged and repaired by the
// publisher's next tick), and kicks the publisher once to regenerate the
// CRL; other replicas see the revocation counter move on their next tick,
// as for a single revocation. Errors: *ReasonError (ErrInvalidReason),
// ErrInvalidSerial, store.ErrNotFound for an unknown serial,
// store.ErrInvalidQuery for a scope the store cannot serve, wrapped store
// errors.
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
	now := r.d.Clock.Now()
	details, _ := json.Marshal(map[string]any{"reason": reason, "scope_serial": scope.Serial, "descendants": scope.Descendants})
	certs, _, err := r.d.Store.RevokeMany(ctx, scope, now, reason, store.AuditEntry{
		Time: now, Actor: actor, Action: "revoke", Decision: "allow", RequestID: requestID, Details: details,
	})
	if err != nil {
		return nil, fmt.Errorf("revoke: %s: %w", scope.Serial, err)
	}
	for _, c := range certs {
		r.revoked(c.IssuerID, c.Serial)
	}
	if len(certs) == 0 {
		return nil, nil
	}
	r.kick()
	for _, c := range certs {
		r.d.Log.InfoContext(ctx, "certificate revoked", "serial", c.Serial, "issuer", c.IssuerID, "reason", reason,
			"actor", actor, "request_id", requestID, "scope_serial", scope.Serial, "descendants", scope.Descendants)
		if err := r.replaceOCSP(ctx, c); err != nil {
			r.d.Log.WarnContext(ctx, "revoked OCSP response not stored yet; the publisher will retry",
				"serial", c.Serial, "issuer", c.IssuerID, "error", err.Error())
		}
	}
	return certs, nil
}
