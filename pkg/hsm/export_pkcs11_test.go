//go:build cgo

package hsm

// Signatures is how many signatures s asked its token for since it opened.
func Signatures(s *PKCS11Store) uint64 { return s.signatures.Load() }

// StuckCalls is how many of s's calls on the token were abandoned by their
// caller and have not returned yet.
func StuckCalls(s *PKCS11Store) int { return s.workers.Stuck() }
