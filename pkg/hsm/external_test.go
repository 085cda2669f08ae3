//go:build cgo

package hsm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// The conformance suite also runs against a token named by the environment
// (`make hsm-test` and .ci/hsm set it up: tpm2-pkcs11 on swtpm, opencryptoki's
// software token, SoftHSM):
//
//	HSM_TEST_MODULE     PKCS#11 module path
//	HSM_TEST_TOKEN      token label
//	HSM_TEST_PIN        user PIN
//	HSM_TEST_KEY_TYPES  the key types the token supports, comma separated
//	                    (default all); the others must be refused as
//	                    ErrUnsupported
//	HSM_TEST_SIGN_REFUSED  key types the token generates but cannot sign
//	                    with as sign-only keys; Sign must say ErrUnsupported
//
// Without HSM_TEST_MODULE these tests are skipped: `make test` covers
// SoftHSM through its own fixtures.
type externalToken struct {
	cfg         hsm.PKCS11Config
	types       []hsm.KeyType
	unsupported []hsm.KeyType
}

func external(t *testing.T) externalToken {
	t.Helper()
	module := os.Getenv("HSM_TEST_MODULE")
	if module == "" {
		t.Skip("HSM_TEST_MODULE not set: no external PKCS#11 token to test (make hsm-test sets one up)")
	}
	tok := externalToken{cfg: hsm.PKCS11Config{Module: module, TokenLabel: os.Getenv("HSM_TEST_TOKEN"), PIN: os.Getenv("HSM_TEST_PIN")}}
	if tok.cfg.TokenLabel == "" || tok.cfg.PIN == "" {
		t.Fatal("HSM_TEST_MODULE is set but HSM_TEST_TOKEN or HSM_TEST_PIN is not")
	}
	tok.types = allKeyTypes
	if v := os.Getenv("HSM_TEST_KEY_TYPES"); v != "" {
		tok.types = nil
		for _, n := range strings.Split(v, ",") {
			kt := hsm.KeyType(strings.TrimSpace(n))
			if !kt.Valid() {
				t.Fatalf("HSM_TEST_KEY_TYPES: %q is not a key type", kt)
			}
			tok.types = append(tok.types, kt)
		}
	}
	for _, kt := range allKeyTypes {
		supported := false
		for _, s := range tok.types {
			supported = supported || s == kt
		}
		for _, s := range strings.Split(os.Getenv("HSM_TEST_SIGN_REFUSED"), ",") {
			supported = supported || hsm.KeyType(strings.TrimSpace(s)) == kt
		}
		if !supported {
			tok.unsupported = append(tok.unsupported, kt)
		}
	}
	return tok
}

func (e externalToken) open(t *testing.T) *hsm.PKCS11Store {
	t.Helper()
	s, err := hsm.OpenPKCS11(e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("OpenPKCS11 %s: %v", e.cfg.Module, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// prefixed is a store on the shared external token whose key names carry a
// per-test prefix, so tests (and earlier runs) never see each other's keys.
type prefixed struct {
	*hsm.PKCS11Store
	prefix string
}

func (p *prefixed) Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error) {
	if err := hsm.ValidateName(name); err != nil {
		return hsm.Key{}, err
	}
	return p.PKCS11Store.Generate(ctx, p.prefix+name, kt)
}

func randomPrefix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b) + "-"
}

// removePrefixed deletes the keys a test left on the token.
func removePrefixed(t *testing.T, s *hsm.PKCS11Store, prefix string) {
	ctx := context.Background()
	labels, err := s.KeyLabels(ctx)
	if err != nil {
		t.Errorf("cleanup: KeyLabels: %v", err)
		return
	}
	for _, l := range labels {
		if strings.HasPrefix(l, prefix) {
			err := s.Delete(ctx, "pkcs11:object="+l)
			if errors.Is(err, hsm.ErrUnavailable) {
				// tpm2-pkcs11 fails C_DestroyObject (CKR_FUNCTION_FAILED)
				// on a key whose signature it just refused, until the
				// store has reconnected.
				err = s.Delete(ctx, "pkcs11:object="+l)
			}
			if err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
				t.Errorf("cleanup: Delete %s: %v", l, err)
			}
		}
	}
}

func externalBackend(e externalToken) backend {
	return backend{
		storage: func(t *testing.T) func(t *testing.T) hsm.KeyStore {
			prefix := randomPrefix(t)
			t.Cleanup(func() {
				s, err := hsm.OpenPKCS11(e.cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Errorf("cleanup: %v", err)
					return
				}
				defer s.Close()
				removePrefixed(t, s, prefix)
			})
			return func(t *testing.T) hsm.KeyStore {
				return &prefixed{PKCS11Store: e.open(t), prefix: prefix}
			}
		},
		uriFor: func(s hsm.KeyStore, name string) string {
			return "pkcs11:token=" + tokenLabel(s) + ";object=" + s.(*prefixed).prefix + name
		},
		foreignURIs: []string{"softkey:k", "pkcs11:token=another-token;object=k"},
		keyTypes:    e.types,
		serial:      true,
	}
}

func TestExternalTokenConformance(t *testing.T) {
	testKeyStore(t, externalBackend(external(t)))
}

// Keys on the external token are sensitive, never extractable and
// sign-only, read back attribute by attribute.
func TestExternalTokenKeysAreSignOnly(t *testing.T) {
	e := external(t)
	s := e.open(t)
	prefix := randomPrefix(t)
	t.Cleanup(func() { removePrefixed(t, s, prefix) })
	ctx := context.Background()
	for _, kt := range e.types {
		key, err := s.Generate(ctx, prefix+string(kt), kt)
		if err != nil {
			t.Fatalf("Generate %s: %v", kt, err)
		}
		a, err := s.Attributes(ctx, key.URI)
		if err != nil {
			t.Fatalf("Attributes: %v", err)
		}
		t.Logf("%s: %+v", kt, a)
		if !a.Token || !a.Private || !a.Sensitive || a.Extractable || !a.AlwaysSensitive || !a.NeverExtractable ||
			!a.Sign || a.Decrypt || a.Unwrap || a.Derive {
			t.Errorf("%s: private key attributes %+v, want token, private, sensitive, never extractable, sign-only", kt, a)
		}
		verifySigns(t, key.Signer)
		checkX509(t, key.Signer)
	}
}

// The token's mechanisms cover the supported key types; the others are
// refused by the start-up check (one line naming the mechanism) and by
// Generate as ErrUnsupported, not as an outage.
func TestExternalTokenMechanisms(t *testing.T) {
	e := external(t)
	s := e.open(t)
	ctx := context.Background()
	if err := s.CheckKeyTypes(ctx, e.types...); err != nil {
		t.Fatalf("CheckKeyTypes(%v): %v", e.types, err)
	}
	for _, kt := range e.unsupported {
		err := s.CheckKeyTypes(ctx, kt)
		if !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "CKM_") {
			t.Errorf("CheckKeyTypes(%s): err = %v, want ErrUnsupported naming a mechanism", kt, err)
		}
		_, err = s.Generate(ctx, randomPrefix(t)+"unsupported", kt)
		if !errors.Is(err, hsm.ErrUnsupported) || errors.Is(err, hsm.ErrUnavailable) {
			t.Errorf("Generate(%s): err = %v, want ErrUnsupported and not ErrUnavailable", kt, err)
		}
	}
	// Key types the token lists mechanisms for but cannot sign with
	// sign-only keys (tpm2-pkcs11 and RSA): refused at the first
	// signature, as a refusal, not an outage.
	for _, v := range strings.Split(os.Getenv("HSM_TEST_SIGN_REFUSED"), ",") {
		kt := hsm.KeyType(strings.TrimSpace(v))
		if kt == "" {
			continue
		}
		prefix := randomPrefix(t)
		t.Cleanup(func() { removePrefixed(t, s, prefix) })
		key, err := s.Generate(ctx, prefix+"refused", kt)
		if err != nil {
			t.Fatalf("Generate(%s): %v", kt, err)
		}
		d := sha256.Sum256([]byte("x"))
		_, err = key.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
		if !errors.Is(err, hsm.ErrUnsupported) || errors.Is(err, hsm.ErrUnavailable) {
			t.Errorf("Sign(%s): err = %v, want ErrUnsupported and not ErrUnavailable", kt, err)
		}
	}
	if n := hsm.LoginAttempts(s); n != 1 {
		t.Errorf("%d logins, want 1: refusals must not reconnect", n)
	}
}
