package revoke

import (
	"context"
	"crypto"
	"crypto/sha1" //nolint:gosec // OCSP CertIDs (RFC 5019) are SHA-1 hashes of public data
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// ca is one intermediate that leaves are (or were) issued under, with what
// OCSP requests name it by.
type ca struct {
	rec  store.Issuer
	cert *x509.Certificate
}

// certIDKey identifies an issuer the way an OCSP CertID does.
type certIDKey struct {
	hash              crypto.Hash
	nameHash, keyHash string
}

// caSet is a cached view of the issuers this package publishes for: every
// non-retired intermediate with a certificate and a key. It reloads from the
// store when older than issuerRefresh, or when asked to.
type caSet struct {
	st    Store
	keys  issuer.KeyStore
	clock clock.Clock

	mu       sync.Mutex
	loadedAt time.Time
	byID     map[string]*ca
	byCertID map[certIDKey]*ca
	signers  map[string]crypto.Signer // CA keys by issuer ID, for CRLs
}

func newCASet(st Store, keys issuer.KeyStore, clk clock.Clock) *caSet {
	return &caSet{st: st, keys: keys, clock: clk, signers: map[string]crypto.Signer{}}
}

// list returns the CAs sorted by ID, reloading if stale or force is set.
func (s *caSet) list(ctx context.Context, force bool) ([]*ca, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(ctx, force); err != nil {
		return nil, err
	}
	out := make([]*ca, 0, len(s.byID))
	for _, c := range s.byID {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *ca) int {
		if a.rec.ID < b.rec.ID {
			return -1
		}
		if a.rec.ID > b.rec.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// byRequest finds the CA an OCSP request names, or nil. An unknown CertID
// triggers at most one reload per issuerRefresh.
func (s *caSet) byRequest(ctx context.Context, h crypto.Hash, nameHash, keyHash []byte) (*ca, error) {
	k := certIDKey{h, string(nameHash), string(keyHash)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(ctx, false); err != nil {
		return nil, err
	}
	return s.byCertID[k], nil
}

// get returns one CA by issuer ID, or nil.
func (s *caSet) get(ctx context.Context, id string) (*ca, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(ctx, false); err != nil {
		return nil, err
	}
	return s.byID[id], nil
}

func (s *caSet) reloadLocked(ctx context.Context, force bool) error {
	now := s.clock.Now()
	if !force && s.byID != nil && now.Sub(s.loadedAt) < issuerRefresh && !now.Before(s.loadedAt) {
		return nil
	}
	issuers, err := s.st.ListIssuers(ctx)
	if err != nil {
		return fmt.Errorf("revoke: listing issuers: %w", err)
	}
	byID := map[string]*ca{}
	byCertID := map[certIDKey]*ca{}
	for _, is := range issuers {
		if is.Kind != store.KindIntermediate || is.State == store.IssuerRetired || is.CertDER == nil || is.KeyURI == "" {
			continue
		}
		cert, err := x509.ParseCertificate(is.CertDER)
		if err != nil {
			return fmt.Errorf("revoke: parsing certificate of issuer %q: %w", is.ID, err)
		}
		c := &ca{rec: is, cert: cert}
		byID[is.ID] = c
		keyBits, err := subjectPublicKeyBits(cert)
		if err != nil {
			return fmt.Errorf("revoke: issuer %q: %w", is.ID, err)
		}
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			byCertID[certIDKey{h, string(digest(h, cert.RawSubject)), string(digest(h, keyBits))}] = c
		}
	}
	s.byID, s.byCertID, s.loadedAt = byID, byCertID, now
	return nil
}

// signer returns the CA's own key (for CRLs), found once per process.
func (s *caSet) signer(ctx context.Context, c *ca) (crypto.Signer, error) {
	s.mu.Lock()
	sg, ok := s.signers[c.rec.ID]
	s.mu.Unlock()
	if ok {
		return sg, nil
	}
	key, err := s.keys.Find(ctx, c.rec.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("revoke: finding key of issuer %q: %w", c.rec.ID, err)
	}
	s.mu.Lock()
	s.signers[c.rec.ID] = key.Signer
	s.mu.Unlock()
	return key.Signer, nil
}

// subjectPublicKeyBits is what an OCSP CertID's issuerKeyHash covers: the
// subjectPublicKey BIT STRING's value, without tag, length or unused-bits
// octet.
func subjectPublicKeyBits(cert *x509.Certificate) ([]byte, error) {
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("parsing subject public key info: %w", err)
	}
	return spki.PublicKey.RightAlign(), nil
}

func digest(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA1:
		d := sha1.Sum(b) //nolint:gosec // see import
		return d[:]
	case crypto.SHA256:
		d := sha256.Sum256(b)
		return d[:]
	}
	return nil
}
