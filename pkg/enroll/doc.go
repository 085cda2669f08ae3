// Package enroll decides whether a workload may have a certificate: it
// verifies the provenance token against its issuer's keys, refuses replays,
// evaluates the policy, and checks the CSR, returning either everything
// pkg/issuer needs to sign or a typed error with a stable reason code. It
// never signs anything itself.
package enroll
