// Package audit makes tampering with the audit log detectable: `ca audit
// verify` walks the hash chain with store.AuditHash and names the first
// entry that was altered, removed or reordered, and checks the chain against
// checkpoints of its head that `ca serve` signs with a key in the key store
// (Checkpointer), so that a truncated or re-hashed log is caught without an
// anchor kept by hand.
package audit
