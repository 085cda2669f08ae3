// Package audit checks the hash-chained audit log after the fact: `ca audit
// verify` walks it with store.AuditHash and names the first entry that was
// altered, removed or reordered, so that tampering with the database behind
// the CA's back is detectable.
package audit
