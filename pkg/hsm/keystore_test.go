package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// backend describes one KeyStore implementation to the conformance suite.
type backend struct {
	// storage creates fresh, empty storage for one test (a SoftHSM token, a
	// directory) and returns a function that opens a store on it; calling it
	// again after Close is a restart. Stores are closed at test cleanup.
	storage func(t *testing.T) (open func(t *testing.T) hsm.KeyStore)
	// uriFor is the URI the store gives a key called name.
	uriFor func(open hsm.KeyStore, name string) string
	// foreignURIs are well-formed URIs that name another store.
	foreignURIs []string
	// keyTypes are the key types the store supports (all of allKeyTypes
	// when nil); tests that need one key use the first, "another" the last.
	keyTypes []hsm.KeyType
	// serial: subtests do not run in parallel (tpm2-pkcs11 fails
	// concurrent logins of several stores in one process).
	serial bool
}

func (b backend) types() []hsm.KeyType {
	if len(b.keyTypes) == 0 {
		return allKeyTypes
	}
	return b.keyTypes
}

// kt is the key type tests use when any will do; other is a second one
// where the store has two.
func (b backend) kt() hsm.KeyType    { return b.types()[0] }
func (b backend) other() hsm.KeyType { return b.types()[len(b.types())-1] }

func softwareBackend() backend {
	return backend{
		storage: func(t *testing.T) func(t *testing.T) hsm.KeyStore {
			dir := t.TempDir() + "/keys"
			return func(t *testing.T) hsm.KeyStore {
				s, err := hsm.OpenSoftware(dir, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatalf("OpenSoftware: %v", err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
		},
		uriFor:      func(_ hsm.KeyStore, name string) string { return "softkey:" + name },
		foreignURIs: []string{"pkcs11:token=t;object=k"},
	}
}

func softhsmBackend() backend {
	return backend{
		storage: func(t *testing.T) func(t *testing.T) hsm.KeyStore {
			cfg := testkit.SoftHSM(t)
			return func(t *testing.T) hsm.KeyStore {
				s, err := hsm.OpenPKCS11(cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatalf("OpenPKCS11: %v", err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
		},
		uriFor: func(s hsm.KeyStore, name string) string {
			return "pkcs11:token=" + tokenLabel(s) + ";object=" + name
		},
		foreignURIs: []string{"softkey:k", "pkcs11:token=another-token;object=k"},
	}
}

// tokenLabel recovers a PKCS11Store's token label from a generated key's URI.
var tokenLabels sync.Map // hsm.KeyStore -> string

func tokenLabel(s hsm.KeyStore) string {
	v, _ := tokenLabels.Load(s)
	label, _ := v.(string)
	return label
}

func TestSoftwareStoreConformance(t *testing.T) {
	t.Parallel()
	testKeyStore(t, softwareBackend())
}

func TestPKCS11StoreConformance(t *testing.T) {
	t.Parallel()
	testKeyStore(t, softhsmBackend())
}

var allKeyTypes = []hsm.KeyType{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA3072}

// testKeyStore is the behaviour every KeyStore must have.
func testKeyStore(t *testing.T, b backend) {
	ctx := context.Background()

	// open returns a store on fresh storage and remembers a PKCS#11 token
	// label for uriFor.
	open := func(t *testing.T) (hsm.KeyStore, func(t *testing.T) hsm.KeyStore) {
		reopen := b.storage(t)
		s := reopen(t)
		if _, software := s.(*hsm.SoftwareStore); !software {
			k, err := s.(interface {
				Generate(context.Context, string, hsm.KeyType) (hsm.Key, error)
			}).Generate(ctx, "label-probe", b.kt())
			if err != nil {
				t.Fatalf("Generate probe key: %v", err)
			}
			label := strings.TrimPrefix(strings.Split(k.URI, ";")[0], "pkcs11:token=")
			tokenLabels.Store(s, label)
		}
		return s, reopen
	}

	par := func(t *testing.T) {
		if !b.serial {
			t.Parallel()
		}
	}

	t.Run("every key type signs and the signature verifies with crypto/ecdsa or crypto/rsa", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		for _, kt := range b.types() {
			key, err := s.Generate(ctx, "sign-"+string(kt), kt)
			if err != nil {
				t.Fatalf("Generate %s: %v", kt, err)
			}
			if key.URI != b.uriFor(s, "sign-"+string(kt)) {
				t.Errorf("URI = %q, want %q", key.URI, b.uriFor(s, "sign-"+string(kt)))
			}
			checkKeyType(t, key.Signer.Public(), kt)
			verifySigns(t, key.Signer)
			checkX509(t, key.Signer)
		}
	})

	t.Run("a key is found again by its URI after a restart", func(t *testing.T) {
		par(t)
		s, reopen := open(t)
		label := tokenLabel(s)
		key, err := s.Generate(ctx, "survivor", b.other())
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		s2 := reopen(t)
		tokenLabels.Store(s2, label)
		found, err := s2.Find(ctx, key.URI)
		if err != nil {
			t.Fatalf("Find after restart: %v", err)
		}
		if found.URI != key.URI {
			t.Errorf("found URI = %q, want %q", found.URI, key.URI)
		}
		if !key.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(found.Signer.Public()) {
			t.Fatal("the key found after restart has another public key")
		}
		verifySigns(t, found.Signer)
		if _, err := s2.Generate(ctx, "survivor", b.kt()); !errors.Is(err, hsm.ErrKeyExists) {
			t.Errorf("Generate of a name taken before the restart: err = %v, want ErrKeyExists", err)
		}
	})

	t.Run("generating a taken name fails with ErrKeyExists", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		if _, err := s.Generate(ctx, "twice", b.kt()); err != nil {
			t.Fatalf("Generate: %v", err)
		}
		for _, kt := range b.types() {
			if _, err := s.Generate(ctx, "twice", kt); !errors.Is(err, hsm.ErrKeyExists) {
				t.Errorf("second Generate (%s): err = %v, want ErrKeyExists", kt, err)
			}
		}
	})

	t.Run("concurrent Generate of one name creates it exactly once", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, err := s.Generate(ctx, "race", b.kt())
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		ok := 0
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, hsm.ErrKeyExists):
				t.Errorf("Generate: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d Generate calls succeeded, want 1", ok)
		}
	})

	t.Run("an unknown key is ErrKeyNotFound", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		if _, err := s.Find(ctx, b.uriFor(s, "nobody")); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Errorf("Find: err = %v, want ErrKeyNotFound", err)
		}
	})

	t.Run("garbage and foreign URIs are ErrBadURI", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		uris := append([]string{
			"", "garbage", "pkcs11:", "softkey:", "softkey:../../etc/passwd", "softkey:a/b",
			"softkey:.hidden", "pkcs11:object=%zz", "pkcs11:object=a b", "pkcs11:object=a;object=b",
			"pkcs11:object=a?pin-value=1234", "pkcs11:foo=bar;object=a", "pkcs11:type=cert;object=a",
			"http://example.org/key", "pkcs11:object=a%2", "softkey:" + strings.Repeat("a", 129),
		}, b.foreignURIs...)
		for _, uri := range uris {
			if _, err := s.Find(ctx, uri); !errors.Is(err, hsm.ErrBadURI) {
				t.Errorf("Find(%q): err = %v, want ErrBadURI", uri, err)
			}
		}
	})

	t.Run("names outside [A-Za-z0-9._-] and path tricks are ErrBadName", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		for _, name := range []string{"", ".", "..", "../x", "a/b", ".hidden", "-dash", "a b", "ü", strings.Repeat("a", 129)} {
			if _, err := s.Generate(ctx, name, b.kt()); !errors.Is(err, hsm.ErrBadName) {
				t.Errorf("Generate(%q): err = %v, want ErrBadName", name, err)
			}
		}
	})

	t.Run("an unsupported key type is ErrBadKeyType", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		if _, err := s.Generate(ctx, "dsa", hsm.KeyType("dsa-1024")); !errors.Is(err, hsm.ErrBadKeyType) {
			t.Errorf("Generate: err = %v, want ErrBadKeyType", err)
		}
	})

	t.Run("many goroutines sign with one signer at once", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		key, err := s.Generate(ctx, "busy", b.kt())
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for i := range 10 {
					d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
					sig, err := key.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
					if err != nil {
						t.Errorf("Sign: %v", err)
						return
					}
					if err := verifySignature(key.Signer.Public(), d[:], sig); err != nil {
						t.Error(err)
					}
				}
				if _, err := s.Find(ctx, key.URI); err != nil {
					t.Errorf("concurrent Find: %v", err)
				}
			})
		}
		wg.Wait()
	})

	t.Run("a digest of the wrong length is refused", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		key, err := s.Generate(ctx, "strict", b.kt())
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if _, err := key.Signer.Sign(rand.Reader, make([]byte, 20), crypto.SHA256); err == nil {
			t.Error("Sign accepted a 20-byte digest for SHA-256")
		}
	})

	t.Run("Ping succeeds on a healthy store, before and after keys exist", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if _, err := s.Generate(ctx, "pinged", b.other()); err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping with a key: %v", err)
		}
	})

	t.Run("after Close signers and the store fail with ErrClosed", func(t *testing.T) {
		par(t)
		s, _ := open(t)
		key, err := s.Generate(ctx, "closing", b.kt())
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		d := sha256.Sum256([]byte("late"))
		if _, err := key.Signer.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrClosed) {
			t.Errorf("Sign after Close: err = %v, want ErrClosed", err)
		}
		if err := s.Ping(ctx); !errors.Is(err, hsm.ErrClosed) {
			t.Errorf("Ping after Close: err = %v, want ErrClosed", err)
		}
		if _, err := s.Find(ctx, key.URI); !errors.Is(err, hsm.ErrClosed) {
			t.Errorf("Find after Close: err = %v, want ErrClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// verifySignature checks a SHA-256 ECDSA (ASN.1) or PKCS#1 v1.5 signature.
func verifySignature(pub crypto.PublicKey, digest, sig []byte) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(p, crypto.SHA256, digest, sig)
	}
	return fmt.Errorf("public key is %T", pub)
}

func checkKeyType(t *testing.T, pub crypto.PublicKey, kt hsm.KeyType) {
	t.Helper()
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		want := map[hsm.KeyType]int{hsm.ECDSAP256: 256, hsm.ECDSAP384: 384}[kt]
		if p.Curve.Params().BitSize != want {
			t.Errorf("%s: curve has %d bits", kt, p.Curve.Params().BitSize)
		}
	case *rsa.PublicKey:
		if kt != hsm.RSA3072 || p.N.BitLen() != 3072 || p.E != 65537 {
			t.Errorf("%s: RSA key of %d bits, e=%d", kt, p.N.BitLen(), p.E)
		}
	default:
		t.Errorf("%s: public key is %T", kt, pub)
	}
}

// verifySigns signs with every option the CA uses and verifies with the
// standard library.
func verifySigns(t *testing.T, s crypto.Signer) {
	t.Helper()
	d256 := sha256.Sum256([]byte("to be signed"))
	d384 := sha512.Sum384([]byte("to be signed"))
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		for _, c := range []struct {
			d []byte
			h crypto.Hash
		}{{d256[:], crypto.SHA256}, {d384[:], crypto.SHA384}} {
			sig, err := s.Sign(rand.Reader, c.d, c.h)
			if err != nil {
				t.Fatalf("ECDSA Sign %v: %v", c.h, err)
			}
			if !ecdsa.VerifyASN1(pub, c.d, sig) {
				t.Errorf("ECDSA %v signature does not verify", c.h)
			}
		}
	case *rsa.PublicKey:
		sig, err := s.Sign(rand.Reader, d256[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("PKCS#1 v1.5 Sign: %v", err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d256[:], sig); err != nil {
			t.Errorf("PKCS#1 v1.5 signature: %v", err)
		}
		for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto} {
			opts := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: salt}
			sig, err := s.Sign(rand.Reader, d256[:], opts)
			if err != nil {
				t.Fatalf("PSS Sign (salt %d): %v", salt, err)
			}
			if err := rsa.VerifyPSS(pub, crypto.SHA256, d256[:], sig, &rsa.PSSOptions{SaltLength: salt}); err != nil {
				t.Errorf("PSS signature (salt %d): %v", salt, err)
			}
		}
	default:
		t.Fatalf("public key is %T", pub)
	}
}

// checkX509 has crypto/x509 sign a certificate with the signer and checks the
// certificate's own signature, the way the issuer will use the key.
func checkX509(t *testing.T, s crypto.Signer) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hsm conformance"},
		NotBefore:             time.Unix(1_700_000_000, 0),
		NotAfter:              time.Unix(1_700_003_600, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatalf("x509.CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("self-signed certificate does not verify: %v", err)
	}
}
