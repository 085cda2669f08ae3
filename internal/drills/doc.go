// Package drills holds the fault drills of issue 7: tests that break the
// real `ca serve` binary's surroundings under enrollment load and check that
// nothing is lost: kill -9 of the server, a private PostgreSQL instance
// stopped and restarted, the SoftHSM token taken away and brought back, two
// replicas on one database and token with concurrent revocations and a kill
// -9 of the CRL/OCSP generator, and a client clock off by minutes. Every
// certificate a client received is recorded with its provenance, no serial
// repeats, the audit chain verifies, and service resumes by itself. Run them
// with `make drills` (not part of `make test`); they never touch the shared
// Postgres server, and under CI=true missing PostgreSQL binaries or SoftHSM
// fail them instead of skipping.
package drills
