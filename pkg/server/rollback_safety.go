package server

import (
	"strings"

	"github.com/workload-ca/workload-ca/pkg/bundle"
)

// ReasonRollbackUnsafe means a bundle rollback would leave the active issuer's
// leaves without an anchor, drop an active or retiring JWT-SVID key, or
// bring back a retired root or key (409; `"force": true` overrides).
const ReasonRollbackUnsafe Reason = "rollback_unsafe"

// rollbackUnsafeDetail names what the refused rollback would have broken:
// issuer IDs, JWT kids and fingerprints, nothing secret.
func rollbackUnsafeDetail(e *bundle.UnsafeRollbackError) string {
	return "the rollback would " + strings.Join(e.Problems, "; ") + `; send "force": true to roll back anyway`
}
