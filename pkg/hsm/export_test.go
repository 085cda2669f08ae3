//go:build cgo

package hsm

import (
	"errors"

	"github.com/ThalesGroup/crypto11"
)

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

// WeakenTemplate sets priv's attribute t to v in every private key template
// until the returned function restores the real one. Not for parallel tests.
func WeakenTemplate(t crypto11.AttributeType, v any) (restore func()) {
	f := func(priv crypto11.AttributeSet) { _ = priv.Set(t, v) }
	templateHook.Store(&f)
	return func() { templateHook.Store(nil) }
}

// CheckMechanisms is checkMechanisms, for tests with a made-up mechanism list.
var CheckMechanisms = checkMechanisms

// ValidateName is validateName.
var ValidateName = validateName
