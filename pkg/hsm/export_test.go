//go:build cgo

package hsm

import "errors"

// LoginAttempts is how many times s has tried to log in to its token.
func LoginAttempts(s *PKCS11Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// DropConnection retires s's current context as if the token had failed
// under it, so that the next call reconnects and logs in again.
func DropConnection(s *PKCS11Store) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		s.markBroken(c, errors.New("test: connection dropped"))
	}
}
