//go:build cgo

package hsm

// Signatures is how many signatures s asked its token for since it opened.
func Signatures(s *PKCS11Store) uint64 { return s.signatures.Load() }
