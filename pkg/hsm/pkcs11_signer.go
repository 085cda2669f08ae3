//go:build cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ThalesGroup/crypto11"
)

// p11Signer is the crypto.Signer handed out for a token key. It remembers the
// key's CKA_ID, label and public key rather than a session-bound handle, so
// after the store rebuilds its context it finds the key again, checks it is
// the same key, and keeps signing: callers never fetch signers again.
type p11Signer struct {
	store *PKCS11Store
	label string
	id    []byte
	pub   crypto.PublicKey

	mu    sync.Mutex
	gen   uint64 // generation of the context inner belongs to
	inner crypto11.Signer
}

// Public returns the key's public half.
func (k *p11Signer) Public() crypto.PublicKey { return k.pub }

// Sign signs digest on the token. ECDSA signatures are ASN.1 DER, as
// crypto/x509 expects; RSA keys sign PKCS#1 v1.5, or PSS when opts is
// *rsa.PSSOptions (PSSSaltLengthAuto uses the largest salt). rand is ignored:
// the token draws its own randomness. While the token is unavailable Sign
// fails at once with an error wrapping ErrUnavailable.
func (k *p11Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.sign(context.Background(), digest, opts)
}

// SignContext is Sign bounded by ctx as well as by OpTimeout: a caller
// whose deadline passes gets ErrUnavailable while the call, which PKCS#11
// cannot cancel, keeps its worker until the token answers.
func (k *p11Signer) SignContext(ctx context.Context, _ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.sign(ctx, digest, opts)
}

var _ ContextSigner = (*p11Signer)(nil)

func (k *p11Signer) sign(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkDigest(digest, opts); err != nil {
		return nil, err
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		if pub, ok := k.pub.(*rsa.PublicKey); ok {
			opts = explicitPSSSalt(pub, pss)
		}
	}
	c, inner, err := k.resolve(ctx)
	if err != nil {
		return nil, err
	}
	var sig []byte
	k.store.signatures.Add(1)
	err = k.store.do(ctx, c, k.store.cfg.OpTimeout, func(cx *crypto11.Context) error {
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			sig, err = inner.Sign(rand.Reader, digest, opts)
			if err == nil || !isAmbiguousFailure(err) {
				return err
			}
			// CKR_GENERAL_ERROR: a lost device, or a token that cannot
			// sign so with this key (tpm2-pkcs11 signs CKM_RSA_PKCS
			// with TPM2_RSA_Decrypt, which a sign-only key refuses).
			// If the token still finds the key, try once more, then
			// call it a refusal rather than an outage.
			if found, perr := cx.FindKeyPairs(k.id, []byte(k.label)); perr != nil || len(found) != 1 {
				return err
			}
		}
		return fmt.Errorf("%w: the token refused to sign with %q (%v, twice) while it answers other calls: "+
			"this key type cannot sign on this token; run `ca hsm check`", ErrUnsupported, k.label, err)
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: sign with %q: %w", k.label, err)
	}
	return sig, nil
}

// resolve returns the store's current context and this key's crypto11 signer
// in it, finding the key again by CKA_ID and label if the context changed.
func (k *p11Signer) resolve(ctx context.Context) (*p11Conn, crypto11.Signer, error) {
	c, err := k.store.connection(ctx)
	if err != nil {
		return nil, nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen == c.gen {
		return c, k.inner, nil
	}
	var found crypto11.Signer
	err = k.store.do(ctx, c, k.store.cfg.OpTimeout, func(cx *crypto11.Context) error {
		matches, err := cx.FindKeyPairs(k.id, []byte(k.label))
		if err != nil {
			return err
		}
		if len(matches) != 1 {
			return fmt.Errorf("%w: %d key pairs carry this key's id and label", ErrKeyNotFound, len(matches))
		}
		found = matches[0]
		return nil
	})
	if err == nil && !samePublicKey(found.Public(), k.pub) {
		err = fmt.Errorf("%w: the key found under this key's id and label has another public key", ErrKeyNotFound)
	}
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) && !errors.Is(err, ErrUnavailable) {
			// The key was there before the token failed; to the caller it is
			// unavailable, whatever the token now says.
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, nil, fmt.Errorf("hsm: find %q again after reconnect: %w", k.label, err)
	}
	k.gen, k.inner = c.gen, found
	return c, found, nil
}

// adopt records a crypto11 signer for this key found in context generation gen.
func (k *p11Signer) adopt(gen uint64, inner crypto11.Signer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if gen >= k.gen {
		k.gen, k.inner = gen, inner
	}
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
