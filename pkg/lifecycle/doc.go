// Package lifecycle exists so that the rotation rule CA issuers (pkg/issuer)
// and JWT-SVID signing keys (pkg/jwtkeys) share, prepared -> active ->
// retiring -> retired and when each move is due, is written once.
package lifecycle
