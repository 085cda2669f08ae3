// Package retention keeps the database the size of what is alive: the
// leader replica deletes, in small batches with pauses between them, the
// OCSP responses and certificates that expired longer ago than their
// retention, ended identity holds, expired dashboard sessions and used
// enrollment tokens, and audits, logs and measures every run. The audit log
// itself is never pruned here.
package retention
