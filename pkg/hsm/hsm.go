package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
)

// KeyType names an algorithm and size the key stores can generate.
type KeyType string

// The key types a CA key may have.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA3072   KeyType = "rsa-3072"
)

// Valid reports whether kt is one of the supported key types.
func (kt KeyType) Valid() bool {
	switch kt {
	case ECDSAP256, ECDSAP384, RSA3072:
		return true
	}
	return false
}

// Errors returned by key stores and by the signers they hand out. Callers test
// them with errors.Is; the messages carry no key material.
var (
	// ErrUnavailable means the token, module or key directory cannot be used right
	// now (token removed, module finalized, session lost). It is transient: the
	// same call succeeds once the token is back, without restarting the process.
	ErrUnavailable = errors.New("hsm: key store unavailable")
	// ErrKeyNotFound means no key exists under the given URI or name.
	ErrKeyNotFound = errors.New("hsm: key not found")
	// ErrKeyExists means Generate was asked for a name that is already taken.
	ErrKeyExists = errors.New("hsm: key already exists")
	// ErrBadURI means a key URI could not be parsed or names another store.
	ErrBadURI = errors.New("hsm: malformed key URI")
	// ErrBadName means a key name is not 1 to 128 characters of [A-Za-z0-9._-]
	// starting with a letter or digit. Both stores accept exactly the same names.
	ErrBadName = errors.New("hsm: invalid key name")
	// ErrBadKeyType means Generate was asked for a KeyType that is not Valid.
	ErrBadKeyType = errors.New("hsm: unsupported key type")
	// ErrClosed means the store, or the store behind a signer, was closed. It is
	// not transient.
	ErrClosed = errors.New("hsm: key store closed")
	// ErrPINRefused means the token refused the PIN (CKR_PIN_INCORRECT,
	// CKR_PIN_LOCKED, ...). It is not transient: the store makes no further
	// login attempt until it is reloaded (PKCS11Store.ReloadLogin) or the
	// process restarts, so that a stale PIN cannot lock a token shared with
	// other replicas.
	ErrPINRefused = errors.New("hsm: the token refused the PIN")
	// ErrUnsupported means the token refused what was asked of it as a
	// matter of configuration, not of availability: a key template or
	// attribute it does not accept, a mechanism, curve or key size it does
	// not have, or a generated key whose attributes came back weaker than
	// asked (WeakKeyError). It is not transient: reconnecting does not help,
	// start-up fails, and requests get 503 hsm_unsupported. `ca hsm check`
	// says what the token supports.
	ErrUnsupported = errors.New("hsm: the token does not support this key type or operation")
	// ErrInsecureKeyFile means a software key file is readable or writable by
	// group or others, or is not a regular file; it is refused, not loaded.
	ErrInsecureKeyFile = errors.New("hsm: key file has insecure permissions")
)

// WeakKeyError is a generated key whose attributes, read back from the
// token, are weaker than the template asked for: the token ignored part of
// it. The key is destroyed, never used. It wraps ErrUnsupported.
type WeakKeyError struct {
	Key       string // key name (CKA_LABEL)
	Attribute string // e.g. CKA_SENSITIVE
	Got, Want string // "true", "false" or "absent"
}

func (e *WeakKeyError) Error() string {
	return fmt.Sprintf("hsm: the token generated %q with %s=%s, want %s; the key was destroyed and is not used",
		e.Key, e.Attribute, e.Got, e.Want)
}

// Unwrap makes a WeakKeyError an ErrUnsupported.
func (e *WeakKeyError) Unwrap() error { return ErrUnsupported }

// Key is a generated or found key: its URI, by which it is found again after a
// restart, and its signer. The private half never leaves the store.
type Key struct {
	URI    string
	Signer crypto.Signer
}

// KeyStore generates and finds signing keys. Implementations are safe for
// concurrent use.
type KeyStore interface {
	// Generate creates a new key pair named name inside the store and returns it.
	// In a PKCS#11 token the private key is generated on the token, sensitive and
	// non-extractable. It fails with ErrKeyExists if name is taken.
	Generate(ctx context.Context, name string, kt KeyType) (Key, error)
	// Find returns the key with the given URI (as returned by Generate), or
	// ErrKeyNotFound.
	Find(ctx context.Context, uri string) (Key, error)
	// Delete destroys the key with the given URI (both halves of a key pair),
	// or fails with ErrKeyNotFound. Signers handed out for it stop working (a
	// software key's signer at Close). Only rotation calls it, for keys of a
	// failed or abandoned rotation that no issuer in use names.
	Delete(ctx context.Context, uri string) error
	// Ping checks that the store answers and still holds its keys, without
	// signing anything with a key (readiness probes call it, for anyone).
	Ping(ctx context.Context) error
	// Close releases sessions and handles. Signers handed out stop working.
	Close() error
}
