package hsm

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
)

// errDigestLength is returned (wrapped) when a digest does not match the
// length of the hash named in the signer options.
var errDigestLength = errors.New("hsm: digest length does not match hash function")

// checkDigest refuses a digest whose length does not match opts' hash, so a
// caller mixing up hashes gets an error from every backend instead of a
// signature over the wrong bytes.
func checkDigest(digest []byte, opts crypto.SignerOpts) error {
	if opts == nil {
		return nil
	}
	h := opts.HashFunc()
	if h == 0 {
		return nil
	}
	if !h.Available() {
		return fmt.Errorf("hsm: hash function %v is not available", h)
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("%w: got %d bytes for %v (%d bytes)", errDigestLength, len(digest), h, h.Size())
	}
	return nil
}

// explicitPSSSalt turns rsa.PSSSaltLengthAuto into the largest salt the key
// allows, which is what crypto/rsa does when signing with Auto. PKCS#11 needs an
// explicit salt length; verifiers using Auto detect either.
func explicitPSSSalt(pub *rsa.PublicKey, opts *rsa.PSSOptions) *rsa.PSSOptions {
	if opts.SaltLength != rsa.PSSSaltLengthAuto {
		return opts
	}
	emLen := (pub.N.BitLen() - 1 + 7) / 8
	o := *opts
	o.SaltLength = emLen - opts.Hash.Size() - 2
	return &o
}
