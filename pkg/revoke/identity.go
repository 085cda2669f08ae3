package revoke

import (
	"context"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeIdentity revokes every unexpired active certificate of spiffeID for
// reason (an RFC 5280 reason name, see ReasonNames): RevokeMany with the
// identity as its scope. It returns the certificates it revoked, ordered by
// serial; none is not an error.
func (r *Revoker) RevokeIdentity(ctx context.Context, spiffeID, reason, actor, requestID string) ([]store.Certificate, error) {
	certs, err := r.RevokeMany(ctx, store.RevokeScope{SPIFFEID: spiffeID}, reason, actor, requestID)
	if err != nil {
		return nil, err
	}
	r.d.Log.InfoContext(ctx, "identity revoked", "spiffe_id", spiffeID, "certificates", len(certs), "reason", reason,
		"actor", actor, "request_id", requestID)
	if certs == nil {
		certs = []store.Certificate{}
	}
	return certs, nil
}
