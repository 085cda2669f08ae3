// Package bundle exists so that relying parties always see one consistent,
// versioned trust bundle: it computes the trust anchors (and JWT-SVID keys)
// from the issuers table, stores each change as a new version with a strictly
// increasing sequence, rolls back to an earlier version's content on demand,
// and renders the stored version as bundle.pem and SPIFFE bundle.json.
//
// Rollback pinning: a rollback republishes an earlier version's content under
// a new sequence and records the digest of the issuer states at that moment.
// While the issuers (and JWT keys) are unchanged, automatic Publish leaves the
// rollback in place (PublishResult.Pinned); the pin ends with the next issuer
// state change (a rotation, activation or retirement changes the digest) or
// with an operator's Publish with Force.
//
// Rollback safety: a rollback whose content would leave the active
// intermediate's leaves without an anchor, drop a JWT-SVID key in use, or
// bring back a retired root or key is refused (ErrRollbackUnsafe, audited as
// a denial) unless forced; see Rollback and RollbackProblems.
package bundle
