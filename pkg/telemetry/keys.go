package telemetry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// KeyStore is an hsm.KeyStore whose signers time every signature into
// ca_hsm_sign_duration_seconds{key, key_type, outcome}. The key label is the
// key's name (the PKCS#11 object label or the software key's name), never
// anything secret; the signers otherwise behave exactly like the wrapped
// ones.
type KeyStore struct {
	inner    hsm.KeyStore
	duration *prometheus.HistogramVec
}

var _ hsm.KeyStore = (*KeyStore)(nil)

// InstrumentKeys wraps inner, registering the latency histogram in reg.
func InstrumentKeys(inner hsm.KeyStore, reg prometheus.Registerer) (*KeyStore, error) {
	h, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ca_hsm_sign_duration_seconds",
		Help:    "Time of signatures by CA keys (PKCS#11 or software), by key name, key type and outcome.",
		Buckets: latencyBuckets,
	}, []string{"key", "key_type", "outcome"}))
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering HSM metrics: %w", err)
	}
	return &KeyStore{inner: inner, duration: h}, nil
}

// Generate implements hsm.KeyStore; the returned signer is timed.
func (k *KeyStore) Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error) {
	key, err := k.inner.Generate(ctx, name, kt)
	if err != nil {
		return key, err
	}
	return k.wrap(key), nil
}

// Find implements hsm.KeyStore; the returned signer is timed.
func (k *KeyStore) Find(ctx context.Context, uri string) (hsm.Key, error) {
	key, err := k.inner.Find(ctx, uri)
	if err != nil {
		return key, err
	}
	return k.wrap(key), nil
}

// Delete implements hsm.KeyStore.
func (k *KeyStore) Delete(ctx context.Context, uri string) error { return k.inner.Delete(ctx, uri) }

// Ping implements hsm.KeyStore.
func (k *KeyStore) Ping(ctx context.Context) error { return k.inner.Ping(ctx) }

// Close implements hsm.KeyStore.
func (k *KeyStore) Close() error { return k.inner.Close() }

// Unwrap returns the wrapped key store.
func (k *KeyStore) Unwrap() hsm.KeyStore { return k.inner }

func (k *KeyStore) wrap(key hsm.Key) hsm.Key {
	if key.Signer == nil {
		return key
	}
	labels := prometheus.Labels{"key": KeyName(key.URI), "key_type": KeyType(key.Signer.Public())}
	ok, err := k.duration.CurryWith(labels)
	if err != nil { // cannot happen: the labels are fixed above
		return key
	}
	key.Signer = &timedSigner{Signer: key.Signer, obs: ok}
	return key
}

// timedSigner times Sign; Public is the wrapped signer's.
type timedSigner struct {
	crypto.Signer
	obs prometheus.ObserverVec
}

func (s *timedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := s.Signer.Sign(r, digest, opts)
	s.obs.WithLabelValues(outcome(err)).Observe(time.Since(start).Seconds())
	return sig, err
}

// SignContext times a signature bounded by ctx as hsm.WithContext bounds
// it: a wrapped hsm.ContextSigner (a PKCS#11 key) gets the caller's
// deadline, so that timing a signature never hides the request's deadline
// from the token (issue 18).
func (s *timedSigner) SignContext(ctx context.Context, r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := hsm.WithContext(ctx, s.Signer).Sign(r, digest, opts)
	s.obs.WithLabelValues(outcome(err)).Observe(time.Since(start).Seconds())
	return sig, err
}

var _ hsm.ContextSigner = (*timedSigner)(nil)

// KeyName is the name part of a key URI, for labels: the object attribute
// of a pkcs11: URI, the name of a softkey: URI, "unknown" otherwise. Key
// names are [A-Za-z0-9._-] (hsm's rule), so nothing needs decoding.
func KeyName(uri string) string {
	if name, ok := strings.CutPrefix(uri, "softkey:"); ok && name != "" {
		return name
	}
	if rest, ok := strings.CutPrefix(uri, "pkcs11:"); ok {
		rest, _, _ = strings.Cut(rest, "?")
		for _, attr := range strings.Split(rest, ";") {
			if v, ok := strings.CutPrefix(attr, "object="); ok && v != "" {
				return v
			}
		}
	}
	return "unknown"
}

// KeyType names a public key's algorithm and size as hsm.KeyType does
// (ecdsa-p256, ecdsa-p384, rsa-3072), or a similar name for others.
func KeyType(pub crypto.PublicKey) string {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(p.Curve.Params().Name, "-", ""))
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", p.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	}
	return "unknown"
}
