// Package testca exists so that users (and this repository's tests) can
// exercise the failure paths of mutual TLS without touching production
// issuers: it builds a fresh, self-contained throwaway CA per run (software
// keys, its own root) and the deliberately bad credentials that `ca testkit`
// writes, each with the rejection reason pkg/mtls must give for it.
package testca
