package workloadapi

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// svid is the workload's current X.509-SVID as the API sends it.
type svid struct {
	id       spiffeid.ID
	chain    []*x509.Certificate // leaf first
	keyPKCS8 []byte
}

// state is what the streams send: the current SVID and bundle, and a channel
// closed (and replaced) on every change so streams wake up. Safe for
// concurrent use.
type state struct {
	mu      sync.Mutex
	svid    *svid
	bundle  *spiffebundle.Bundle
	changed chan struct{}
}

func newState() *state { return &state{changed: make(chan struct{})} }

// snapshot returns the current SVID and bundle (either may be nil) and the
// channel that is closed at the next change.
func (s *state) snapshot() (*svid, *spiffebundle.Bundle, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, s.bundle, s.changed
}

// notify wakes every stream; mu must be held.
func (s *state) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetX509SVID installs a new SVID (chain leaf first, and its private key);
// every FetchX509SVID stream sends it. The leaf must carry exactly one
// SPIFFE ID and match the key.
func (srv *Server) SetX509SVID(chain []*x509.Certificate, key crypto.Signer) error {
	if len(chain) == 0 {
		return errors.New("workloadapi: empty certificate chain")
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return fmt.Errorf("workloadapi: the certificate is not an X.509-SVID: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("workloadapi: encoding the private key: %w", err)
	}
	if _, err := x509svid.ParseRaw(rawChain(chain), pkcs8); err != nil {
		return fmt.Errorf("workloadapi: the certificate and key do not form an SVID: %w", err)
	}
	s := srv.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svid != nil && s.svid.id != id {
		srv.log.Warn("workloadapi: the SVID's SPIFFE ID changed", "old", s.svid.id.String(), "new", id.String())
		srv.jwt.forget() // the cached JWT-SVIDs name the old identity
	}
	s.svid = &svid{id: id, chain: chain, keyPKCS8: pkcs8}
	s.notify()
	return nil
}

// SetBundle installs the trust domain's bundle (X.509 authorities and JWT
// keys). It reports whether it differs from the current one; only a
// different bundle wakes the streams.
func (srv *Server) SetBundle(b *spiffebundle.Bundle) bool {
	s := srv.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bundle != nil && s.bundle.Equal(b) {
		return false
	}
	s.bundle = b.Clone()
	s.notify()
	return true
}

func rawChain(chain []*x509.Certificate) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, c.Raw...)
	}
	return out
}

// x509BundleDER is the bundle's X.509 authorities, concatenated DER.
func x509BundleDER(b *spiffebundle.Bundle) []byte {
	return rawChain(b.X509Authorities())
}

func pemCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
