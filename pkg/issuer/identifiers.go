package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"time"
)

// serialBytes is the length of every serial number this CA assigns.
const serialBytes = 16

// newSerial returns a serial number of exactly serialBytes bytes of CSPRNG
// output from r (crypto/rand in production): the top bit is cleared so the
// INTEGER is positive without a padding byte (16 content bytes, well under
// the 20-byte limit), and the next bit is set so the value is never zero and
// its hex has no leading zero in any convention. That leaves 126 bits of
// CSPRNG output.
func newSerial(r io.Reader) (*big.Int, error) { return serialAfter(r, nil) }

// serialAfter is a serial of serialBytes bytes: prefix, then CSPRNG output
// from r, with the top bits forced to 01 (see newSerial).
func serialAfter(r io.Reader, prefix []byte) (*big.Int, error) {
	var b [serialBytes]byte
	n := copy(b[:], prefix)
	if _, err := io.ReadFull(r, b[n:]); err != nil {
		return nil, fmt.Errorf("issuer: reading random serial: %w", err)
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b[:]), nil
}

// serialTimeBytes is the length of a time-ordered serial's time prefix.
const serialTimeBytes = 6

// newTimeOrderedSerial returns a serial number of exactly serialBytes
// bytes: the issuance time in milliseconds since 1970 (6 bytes), then 10
// bytes (80 bits) of CSPRNG output from r, the invariant's 64 and more. As
// newSerial, the top bits are 01; the 46 bits left for the milliseconds last
// past the year 4000.
//
// Why (issue 20, Config.TimeOrderedSerials): on SQLite every index keyed by
// serial (the certificates', their lineage's, the OCSP responses') took a
// random leaf page per certificate, and each page a group commit dirties is
// written to the WAL whole (4 KiB, two pwrites) and again at the
// checkpoint: the random pages were most of the embedded default's write
// volume. Serials that increase with time are appended at the right edge of
// those indexes. The random part keeps them unpredictable, and the time is
// no secret: notBefore carries it.
func newTimeOrderedSerial(r io.Reader, now time.Time) (*big.Int, error) {
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(max(now.UnixMilli(), 0)))
	return serialAfter(r, ms[8-serialTimeBytes:])
}

// serialHex is the stored form of a serial: lowercase hex of its big-endian
// bytes, no leading zeros.
func serialHex(s *big.Int) string { return s.Text(16) }

// subjectKeyID computes a key identifier by method 1 of RFC 7093 section 2:
// the leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING
// value (the same method crypto/x509 uses for CA certificates).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	// The subjectPublicKey of the keys leaves have most, taken as
	// crypto/x509's marshalPublicKey takes it, without encoding the whole
	// SubjectPublicKeyInfo and parsing it back (issue 20: allocations per
	// issuance). TestSubjectKeyIDOfTheEncodedKey holds the two ways to the
	// same identifier.
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k != nil && (k.Curve == elliptic.P256() || k.Curve == elliptic.P384()) {
			point, err := k.Bytes()
			if err != nil {
				return nil, invalidf("unsupported public key: %v", err)
			}
			return keyIDOf(point), nil
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return keyIDOf(k), nil
		}
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, invalidf("unsupported public key: %v", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("issuer: parsing marshalled public key: %w", err)
	}
	return keyIDOf(spki.PublicKey.Bytes), nil
}

// keyIDOf is the key identifier of a subjectPublicKey BIT STRING's bytes.
func keyIDOf(subjectPublicKey []byte) []byte {
	h := sha256.Sum256(subjectPublicKey)
	return h[:20]
}

// spkiSHA256 is the hex SHA-256 of a DER SubjectPublicKeyInfo, as stored in
// store.Certificate.PublicKeySHA256.
func spkiSHA256(spkiDER []byte) string {
	h := sha256.Sum256(spkiDER)
	return hex.EncodeToString(h[:])
}

// keyName names a new CA key in the key store: <prefix>-YYYYMMDD-<8 random hex>.
func keyName(prefix string, now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("issuer: reading random key name: %w", err)
	}
	return fmt.Sprintf("%s-%s-%s", prefix, now.UTC().Format("20060102"), hex.EncodeToString(b[:])), nil
}
