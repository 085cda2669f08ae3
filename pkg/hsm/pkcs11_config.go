package hsm

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Defaults for the optional PKCS11Config fields.
const (
	DefaultOpTimeout        = 10 * time.Second
	DefaultReconnectTimeout = 5 * time.Second
	DefaultMinBackoff       = 250 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
)

// PKCS11Config says which PKCS#11 token holds the CA keys. Module, TokenLabel
// and PIN are required; the other fields are optional and default as
// documented. The PIN never appears in String, GoString or LogValue.
type PKCS11Config struct {
	// Module is the path of the PKCS#11 shared library.
	Module string
	// TokenLabel selects the token by its label.
	TokenLabel string
	// PIN is the user PIN. Read it from the environment or with PINFromFile,
	// never from argv.
	PIN string

	// OpTimeout bounds one sign or find call on the token (DefaultOpTimeout).
	// A call that takes longer returns ErrUnavailable and the context is
	// rebuilt on a later call.
	OpTimeout time.Duration
	// ReconnectTimeout bounds how long a call waits for a reconnect attempt,
	// including the first connect in OpenPKCS11 (DefaultReconnectTimeout).
	ReconnectTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed reconnect
	// attempts; it doubles per failure (DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// MaxSessions caps the sessions the store opens (0: crypto11's default,
	// itself capped by the token).
	MaxSessions int
	// Workers caps the calls on the token in flight at once, calls whose
	// caller gave up at its deadline but that the token has not answered
	// included (default DefaultWorkers). PKCS#11 calls cannot be
	// cancelled: a hung token holds workers, never more than this many,
	// and further calls fail with ErrUnavailable at their deadline.
	Workers int
}

// String describes the configuration without the PIN.
func (c PKCS11Config) String() string {
	return fmt.Sprintf("PKCS11Config{Module:%q TokenLabel:%q PIN:[redacted]}", c.Module, c.TokenLabel)
}

// GoString describes the configuration without the PIN, for %#v.
func (c PKCS11Config) GoString() string { return c.String() }

// LogValue lets slog log the configuration without the PIN.
func (c PKCS11Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("module", c.Module), slog.String("token", c.TokenLabel))
}

func (c PKCS11Config) withDefaults() PKCS11Config {
	if c.OpTimeout <= 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.ReconnectTimeout <= 0 {
		c.ReconnectTimeout = DefaultReconnectTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	return c
}

// PINFromFile reads a PIN from a file (a mounted secret, for example), dropping
// one trailing newline. It fails if the file is missing or the PIN is empty;
// errors name the file, never its content.
func PINFromFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("hsm: read PIN file: %w", err)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("hsm: PIN file %s is empty", path)
	}
	return pin, nil
}

// KeyAttributes are the PKCS#11 attributes of a key's private half that say
// how well it is protected.
type KeyAttributes struct {
	Label            string
	ID               []byte
	Token            bool // persistent on the token
	Private          bool // needs a login to use
	Sensitive        bool // value cannot be read
	Extractable      bool // can be wrapped out of the token
	AlwaysSensitive  bool
	NeverExtractable bool
	Local            bool // generated on the token
	Sign             bool
	Decrypt          bool
	Unwrap           bool
	Derive           bool
	// The public half's capabilities, informative: tokens set them their
	// own way and they protect nothing.
	PublicVerify, PublicEncrypt, PublicWrap bool
}

// Mechanism is one mechanism the token lists (C_GetMechanismList) with its
// C_GetMechanismInfo: key sizes as the token reports them (bits for RSA;
// tokens differ for EC) and CKF_* flags.
type Mechanism struct {
	Type                   uint
	Name                   string // CKM_* name, or the hex value for ones this package has no name for
	MinKeySize, MaxKeySize uint
	Flags                  uint
}

// Has reports whether the mechanism carries every flag in f.
func (m Mechanism) Has(f uint) bool { return m.Flags&f == f }

// TokenInfo describes the token (C_GetTokenInfo).
type TokenInfo struct {
	Label, Manufacturer, Model, Serial string
	HardwareVersion, FirmwareVersion   string
	MaxSessions                        uint
}
