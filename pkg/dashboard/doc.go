// Package dashboard is the inventory dashboard served by `ca serve` on the API
// listener: server-rendered pages (embedded with go:embed, no build step, no
// inline scripts or styles under a strict Content-Security-Policy) for the
// security team to see every certificate, its provenance and renewal chain,
// what was denied and why, the audit log, identity holds, and the
// service-to-service authorization (observed callers against the authz policy,
// "ready to enforce?"; authz.go), with OIDC sign-in (authorization
// code with PKCE), sessions kept in the store (so that logout ends them on
// every replica, and roles follow the current policy), and a CSRF-protected
// revoke action for revokers.
package dashboard
