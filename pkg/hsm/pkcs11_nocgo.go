//go:build !cgo

package hsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// ErrPKCS11Unsupported means this binary was built without cgo, which
// crypto11 needs to load a PKCS#11 module. Such a build still runs the
// embedded default (software keys); rebuild with CGO_ENABLED=1 and a C
// compiler for an HSM.
var ErrPKCS11Unsupported = errors.New("hsm: this binary was built without cgo, so it cannot load a PKCS#11 module; rebuild with CGO_ENABLED=1 for HSM support")

// Option adjusts OpenPKCS11.
type Option func(*PKCS11Store)

// WithClock sets the clock the reconnect backoff reads.
func WithClock(clock.Clock) Option { return func(*PKCS11Store) {} }

// PKCS11Store is unavailable in a build without cgo: OpenPKCS11 always fails
// with ErrPKCS11Unsupported, so no value of it is ever handed out.
type PKCS11Store struct{}

var _ KeyStore = (*PKCS11Store)(nil)

// OpenPKCS11 fails with ErrPKCS11Unsupported in a build without cgo.
func OpenPKCS11(PKCS11Config, *slog.Logger, ...Option) (*PKCS11Store, error) {
	return nil, ErrPKCS11Unsupported
}

// ModuleInUse is always false without cgo: no module can be loaded.
func ModuleInUse(string) bool { return false }

// HoldModuleIdle always succeeds without cgo: no module can be loaded.
func HoldModuleIdle(string) (func(), bool) { return func() {}, true }

// Generate fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Generate(context.Context, string, KeyType) (Key, error) {
	return Key{}, ErrPKCS11Unsupported
}

// Find fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Find(context.Context, string) (Key, error) { return Key{}, ErrPKCS11Unsupported }

// Attributes fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Attributes(context.Context, string) (KeyAttributes, error) {
	return KeyAttributes{}, ErrPKCS11Unsupported
}

// Ping fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Ping(context.Context) error { return ErrPKCS11Unsupported }

// Close does nothing.
func (*PKCS11Store) Close() error { return nil }

// Delete fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Delete(context.Context, string) error { return ErrPKCS11Unsupported }

// KeyLabels fails with ErrPKCS11Unsupported.
func (*PKCS11Store) KeyLabels(context.Context) ([]string, error) { return nil, ErrPKCS11Unsupported }

// ReloadLogin does nothing without cgo.
func (*PKCS11Store) ReloadLogin() bool { return false }

// PINRefused is always false without cgo.
func (*PKCS11Store) PINRefused() bool { return false }

// Token fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Token(context.Context) (TokenInfo, error) {
	return TokenInfo{}, ErrPKCS11Unsupported
}

// Mechanisms fails with ErrPKCS11Unsupported.
func (*PKCS11Store) Mechanisms(context.Context) (map[uint]Mechanism, error) {
	return nil, ErrPKCS11Unsupported
}

// CheckKeyTypes fails with ErrPKCS11Unsupported.
func (*PKCS11Store) CheckKeyTypes(context.Context, ...KeyType) error { return ErrPKCS11Unsupported }

// ReportedMechanisms is empty without cgo.
var ReportedMechanisms []uint

// MechanismName is the hex value of m without cgo.
func MechanismName(m uint) string { return fmt.Sprintf("0x%08x", m) }
