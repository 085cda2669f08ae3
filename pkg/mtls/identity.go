package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// IdentitySource yields the workload's own certificate (leaf first, then its
// intermediates) and private key for each handshake.
type IdentitySource interface {
	Certificate() (*tls.Certificate, error)
}

// ErrIdentity means the workload's own certificate or key could not be
// loaded.
var ErrIdentity = errors.New("mtls: workload certificate unavailable")

// StaticIdentity is a fixed certificate, for tests and short-lived tools.
type StaticIdentity struct{ Cert *tls.Certificate }

// Certificate returns the fixed certificate.
func (s StaticIdentity) Certificate() (*tls.Certificate, error) {
	if s.Cert == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrIdentity)
	}
	return s.Cert, nil
}

// CertPaths names the workload's PEM files as `ca enroll` and `ca renew`
// write them.
type CertPaths struct {
	// Cert holds the leaf (and may hold its intermediates after it).
	Cert string
	// Key holds the private key.
	Key string
	// Chain, optional, holds the intermediates (chain.pem).
	Chain string
}

// CertFiles is the workload's certificate, chain and key as PEM files,
// reloaded when any file changes (another inode, size or modification time,
// as when `ca renew` renames new files into place). Every handshake stats the
// files; a set that does not belong together (the key or the chain not yet
// replaced along with the certificate) keeps the previous set in use until a
// consistent one appears. Safe for concurrent use.
type CertFiles struct {
	paths CertPaths
	log   *slog.Logger

	mu    sync.Mutex
	cur   *tls.Certificate
	stats []os.FileInfo
}

// LoadCertFiles loads the files named by p. A nil log discards.
func LoadCertFiles(p CertPaths, log *slog.Logger) (*CertFiles, error) {
	if p.Cert == "" || p.Key == "" {
		return nil, fmt.Errorf("%w: certificate and key files are required", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CertFiles{paths: p, log: log}
	if _, err := c.Certificate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertFiles) files() []string {
	if c.paths.Chain == "" {
		return []string{c.paths.Cert, c.paths.Key}
	}
	return []string{c.paths.Cert, c.paths.Key, c.paths.Chain}
}

// Certificate returns the current set, reloading it if the files changed.
func (c *CertFiles) Certificate() (*tls.Certificate, error) {
	names := c.files()
	stats := make([]os.FileInfo, len(names))
	var statErr error
	for i, n := range names {
		st, err := os.Stat(n)
		stats[i], statErr = st, errors.Join(statErr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if statErr != nil {
		if c.cur != nil {
			return c.cur, nil // a replacement in progress; keep serving the old set
		}
		return nil, fmt.Errorf("%w: %v", ErrIdentity, statErr)
	}
	if c.cur != nil && sameFiles(c.stats, stats) {
		return c.cur, nil
	}
	pair, err := c.load()
	if err != nil {
		if c.cur != nil {
			c.log.Warn("mtls: new certificate files do not belong together yet, keeping the previous certificate", "cert_file", c.paths.Cert, "error", err)
			return c.cur, nil
		}
		return nil, err
	}
	if c.cur != nil {
		c.log.Info("mtls: reloaded workload certificate", "cert_file", c.paths.Cert, "spiffe_id", claimedID(pair.Leaf),
			"serial", serialHex(pair.Leaf), "not_after", pair.Leaf.NotAfter)
	}
	c.cur, c.stats = pair, stats
	return c.cur, nil
}

// load reads the files and checks that they belong together: the key
// matches the leaf, and the first intermediate signed the leaf.
func (c *CertFiles) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(c.paths.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if c.paths.Chain != "" {
		chainPEM, err := os.ReadFile(c.paths.Chain)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
		}
		certPEM = append(append(certPEM, '\n'), chainPEM...)
	}
	keyPEM, err := os.ReadFile(c.paths.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	// X509KeyPair's errors never include key material.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if len(pair.Certificate) > 1 {
		issuer, err := x509.ParseCertificate(pair.Certificate[1])
		if err != nil {
			return nil, fmt.Errorf("%w: intermediate: %v", ErrIdentity, err)
		}
		if err := pair.Leaf.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("%w: the first intermediate did not sign the certificate: %v", ErrIdentity, err)
		}
	}
	return &pair, nil
}

func sameFiles(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] == nil || b[i] == nil || !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}
