// Package testkit hands tests ready fixtures backed by the real components (a
// fresh Postgres database, a SoftHSM token in a temp dir, a test OIDC issuer),
// each cleaned up with t.Cleanup. Only tests import it.
package testkit
