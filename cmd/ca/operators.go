package main

import (
	"log/slog"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// operatorDeps wires the operator endpoints (inventory, revocation, audit)
// to the store and pkg/revoke's Revoker. pub, when not nil, is the CRL/OCSP
// publisher the Revoker kicks after each revocation; without it the
// publisher of any replica notices the revocation on its next tick.
func operatorDeps(b *backends, cfg revoke.Config, pub *revoke.Publisher, log *slog.Logger) (server.OperatorDeps, error) {
	rv, err := revoke.NewRevoker(revoke.Deps{Store: b.store, Keys: b.keys, Clock: clock.Real{}, Log: log}, cfg, pub)
	if err != nil {
		return server.OperatorDeps{}, err
	}
	return server.OperatorDeps{Store: b.store, Revoker: rv}, nil
}
