// Package jwtkeys exists so that one narrow component owns the JWT-SVID
// signing keys: it rotates them on a schedule (prepared and published in the
// trust bundle before they sign, retired only after every token they signed
// has expired), keeps their lifecycle in the database so replicas agree, and
// signs already-authorised JWT-SVID requests with the active key inside the
// key store, recording each token before it is returned. It never sees HTTP
// or policy.
//
// Lifecycle of a key (store.JWTKeyState):
//
//   - prepared: generated in the key store, recorded, and published in the
//     bundle (use jwt-svid) on the next publish. It signs nothing yet.
//   - active: the one key that signs. Manager.Tick activates a prepared key
//     once it has been in every published bundle version for
//     Config.PublishLead, so relying parties that refresh on the bundle's
//     refresh hint know it before they see a token signed by it.
//   - retiring: no longer signing, still published, until RetiringAt +
//     Config.MaxTTL + Config.Grace: the signer refuses lifetimes above
//     MaxTTL, and Grace covers replicas that still sign with the old key
//     until they reload (Config.Recheck).
//   - retired: gone from the bundle; tokens it signed stop verifying.
//
// The first key of a fresh CA is made active at once (nothing could have
// signed before it). An emergency rotation activates a new key at once and
// retires the old one immediately, so tokens signed by it stop verifying as
// soon as relying parties refresh the bundle.
//
// When each move is due is pkg/lifecycle's Rule, the one the CA issuers
// follow too; this package does the moves.
package jwtkeys
