// Package drills holds the fault drills of issue 7: tests that break the
// real `ca serve` binary's surroundings (kill -9 of the server, a private
// PostgreSQL instance stopped and restarted, the clock of a client off by
// minutes) under enrollment load and check that nothing is lost: every
// certificate a client received is recorded with its provenance, no serial
// repeats, the audit chain verifies, and service resumes by itself. Run them
// with `make drills`; they never touch the shared Postgres server.
package drills
