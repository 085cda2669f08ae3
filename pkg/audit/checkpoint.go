package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// CheckpointKeyName is the name of the checkpoint signing key in the key
// store (a PKCS#11 label, or a software key file name). It is found by this
// name, never through the database, so that whoever can write the database
// cannot substitute a key of their own.
const CheckpointKeyName = "audit-checkpoint"

// checkpointDomain separates checkpoint signatures from anything else the
// key could ever be asked to sign.
const checkpointDomain = "workload-ca audit checkpoint v1"

// ErrCheckpointSignature means a checkpoint's signature does not verify
// with the trusted checkpoint key, or it names another key.
var ErrCheckpointSignature = errors.New("audit: checkpoint signature does not verify with the trusted checkpoint key")

// KeyID is the identifier checkpoints carry for the key that signed them:
// hex SHA-256 of its DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("audit: checkpoint key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// checkpointDigest is SHA-256 of the signed encoding of c: the domain, then
// Seq, Hash, Time (UTC, microseconds, RFC 3339), Kind and KeyID, each
// length-prefixed. ID and Signature are not covered: the ID is the
// database's, and rows are ordered by their signed Time.
func checkpointDigest(c store.AuditCheckpoint) []byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(c.Seq))
	field([]byte(checkpointDomain))
	field(seq[:])
	field(c.Hash)
	field([]byte(c.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)))
	field([]byte(c.Kind))
	field([]byte(c.KeyID))
	return h.Sum(nil)
}

// SignCheckpoint fills in c's KeyID and Signature (SHA-256; ECDSA ASN.1 or
// RSA PKCS #1 v1.5) with signer, the checkpoint key.
func SignCheckpoint(signer crypto.Signer, c store.AuditCheckpoint) (store.AuditCheckpoint, error) {
	id, err := KeyID(signer.Public())
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	c.Time = c.Time.UTC().Truncate(time.Microsecond)
	c.KeyID = id
	sig, err := signer.Sign(rand.Reader, checkpointDigest(c), crypto.SHA256)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	c.Signature = sig
	return c, nil
}

// VerifyCheckpoint checks that c names the key pub and carries its valid
// signature; otherwise the error wraps ErrCheckpointSignature.
func VerifyCheckpoint(pub crypto.PublicKey, c store.AuditCheckpoint) error {
	id, err := KeyID(pub)
	if err != nil {
		return err
	}
	if c.KeyID != id {
		return fmt.Errorf("%w: it names key %s, the trusted key is %s", ErrCheckpointSignature, shortID(c.KeyID), shortID(id))
	}
	d := checkpointDigest(c)
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, d, c.Signature)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, d, c.Signature) == nil
	default:
		return fmt.Errorf("audit: checkpoint key type %T is not supported", pub)
	}
	if !ok {
		return fmt.Errorf("%w: bad signature", ErrCheckpointSignature)
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	if id == "" {
		return "(none)"
	}
	return id
}
