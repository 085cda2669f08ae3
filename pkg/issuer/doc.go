// Package issuer exists so that one narrow component owns the CA hierarchy and
// turns an already-authorised request into a linted, HSM-signed and recorded
// certificate; it never sees tokens or HTTP, and no certificate leaves it
// before its record is committed.
package issuer
