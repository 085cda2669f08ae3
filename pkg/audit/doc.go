// Package audit makes tampering with the audit log detectable: `ca audit
// verify` walks the hash chain with store.AuditHash and names the first
// entry that was altered, removed or reordered, and checks the chain against
// checkpoints of its head that `ca serve` signs with a key in the key store
// (Checkpointer), so that a truncated or re-hashed log is caught without an
// anchor kept by hand. Old entries can be moved to an archive file that
// ends at a signed checkpoint (archive.go) and removed; the log then
// verifies from its first retained entry, and the archive against the
// checkpoints.
package audit
