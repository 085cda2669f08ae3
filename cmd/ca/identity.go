package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// identityDeps wires /v1/identities/* and the hold check on enrollment,
// renewal and JWT-SVIDs: holds over the store (every replica reads the
// same rows, so a hold placed through one applies on all), and the
// operators' Revoker for the identity revocation.
func identityDeps(b *backends, ops server.OperatorDeps, reg prometheus.Registerer, log *slog.Logger) (server.IdentityDeps, *hold.Holds, error) {
	h, err := hold.New(b.store, clock.Real{}, log, reg)
	if err != nil {
		return server.IdentityDeps{}, nil, err
	}
	rv, ok := ops.Revoker.(server.IdentityRevoker)
	if !ok {
		return server.IdentityDeps{}, nil, fmt.Errorf("the revoker %T cannot revoke identities", ops.Revoker)
	}
	return server.IdentityDeps{Revoker: rv, Holds: h}, h, nil
}
