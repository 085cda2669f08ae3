package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// memKeys is an in-memory KeyStore for unit tests. Every signer it hands out
// counts its signatures in signs.
type memKeys struct {
	mu    sync.Mutex
	keys  map[string]crypto.Signer
	signs atomic.Int64
	// signErr, when set, is returned by every signer instead of signing.
	signErr error
}

func newMemKeys() *memKeys { return &memKeys{keys: map[string]crypto.Signer{}} }

func (m *memKeys) Generate(_ context.Context, name string, kt hsm.KeyType) (hsm.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[name]; ok {
		return hsm.Key{}, hsm.ErrKeyExists
	}
	var (
		k   crypto.Signer
		err error
	)
	switch kt {
	case hsm.ECDSAP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case hsm.ECDSAP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case hsm.RSA3072:
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return hsm.Key{}, fmt.Errorf("memKeys: key type %q", kt)
	}
	if err != nil {
		return hsm.Key{}, err
	}
	m.keys[name] = k
	return hsm.Key{URI: "mem:" + name, Signer: &countingSigner{k, m}}, nil
}

func (m *memKeys) Find(_ context.Context, uri string) (hsm.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[uri[len("mem:"):]]
	if !ok {
		return hsm.Key{}, hsm.ErrKeyNotFound
	}
	return hsm.Key{URI: uri, Signer: &countingSigner{k, m}}, nil
}

func (m *memKeys) Delete(_ context.Context, uri string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := uri[len("mem:"):]
	if _, ok := m.keys[name]; !ok {
		return hsm.ErrKeyNotFound
	}
	delete(m.keys, name)
	return nil
}

type countingSigner struct {
	crypto.Signer
	m *memKeys
}

func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.m.mu.Lock()
	err := s.m.signErr
	s.m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.m.signs.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

// memStore is an in-memory Store for unit tests, with failure injection.
type memStore struct {
	mu      sync.Mutex
	issuers []store.Issuer
	certs   map[string]store.Certificate
	audit   []store.AuditEntry

	recordErr     error // returned by every RecordIssuance
	conflictsLeft int   // RecordIssuance returns ErrConflict this many times first
	records       int   // RecordIssuance calls
	// beforeInsert runs (unlocked) before each InsertIssuer takes effect.
	beforeInsert func(store.Issuer)
	// afterList runs (unlocked) after each ListIssuers.
	afterList func()
}

func newMemStore() *memStore { return &memStore{certs: map[string]store.Certificate{}} }

func (s *memStore) InsertIssuer(_ context.Context, is store.Issuer) error {
	if s.beforeInsert != nil {
		s.beforeInsert(is)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.issuers {
		if e.ID == is.ID {
			return fmt.Errorf("memStore: issuer %q: %w", is.ID, store.ErrConflict)
		}
	}
	is.CertDER = bytes.Clone(is.CertDER)
	s.issuers = append(s.issuers, is)
	return nil
}

func (s *memStore) GetIssuer(_ context.Context, id string) (store.Issuer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.issuers {
		if e.ID == id {
			return e, nil
		}
	}
	return store.Issuer{}, store.ErrNotFound
}

func (s *memStore) ListIssuers(context.Context) ([]store.Issuer, error) {
	s.mu.Lock()
	out := slices.Clone(s.issuers)
	s.mu.Unlock()
	if s.afterList != nil {
		s.afterList()
	}
	return out, nil
}

func (s *memStore) SetIssuerState(_ context.Context, id string, from, to store.IssuerState, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.issuers {
		if e.ID == id {
			if e.State != from {
				return store.ErrConflict
			}
			s.issuers[k].State, s.issuers[k].UpdatedAt = to, at
			return nil
		}
	}
	return store.ErrNotFound
}

func (s *memStore) SetIssuerCertificate(_ context.Context, id string, der, ski []byte, nb, na, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.issuers {
		if e.ID == id {
			if e.CertDER != nil {
				return store.ErrConflict
			}
			s.issuers[k].CertDER, s.issuers[k].SubjectKeyID = der, ski
			s.issuers[k].NotBefore, s.issuers[k].NotAfter, s.issuers[k].UpdatedAt = nb, na, at
			return nil
		}
	}
	return store.ErrNotFound
}

func (s *memStore) RecordIssuance(_ context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records++
	if s.recordErr != nil {
		return store.AuditEntry{}, s.recordErr
	}
	if s.conflictsLeft > 0 {
		s.conflictsLeft--
		return store.AuditEntry{}, fmt.Errorf("memStore: serial: %w", store.ErrConflict)
	}
	if _, ok := s.certs[c.Serial]; ok {
		return store.AuditEntry{}, store.ErrConflict
	}
	s.certs[c.Serial] = c
	return s.appendLocked(e), nil
}

func (s *memStore) AppendAudit(_ context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(e), nil
}

func (s *memStore) appendLocked(e store.AuditEntry) store.AuditEntry {
	e.Seq = int64(len(s.audit) + 1)
	if len(s.audit) > 0 {
		e.PrevHash = s.audit[len(s.audit)-1].Hash
	}
	e.Hash = store.AuditHash(e.PrevHash, e)
	s.audit = append(s.audit, e)
	return e
}

func (s *memStore) auditActions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.audit {
		out = append(out, e.Action)
	}
	return out
}

func (s *memStore) certCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.certs)
}
