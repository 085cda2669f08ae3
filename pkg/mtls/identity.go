package mtls

import (
	"crypto/tls"
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

// CertFiles is the workload's certificate and key as PEM files, reloaded when
// either file changes (another inode, size or modification time, as when
// `ca renew` renames new files into place). Every handshake stats both files;
// a pair that does not load (say the certificate was replaced but the key not
// yet) keeps the previous pair in use until a good pair appears. Safe for
// concurrent use.
type CertFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cur      *tls.Certificate
	certStat os.FileInfo
	keyStat  os.FileInfo
}

// LoadCertFiles loads certFile (PEM: leaf, then intermediates) and keyFile
// (PEM private key). A nil log discards.
func LoadCertFiles(certFile, keyFile string, log *slog.Logger) (*CertFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CertFiles{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := c.Certificate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Certificate returns the current pair, reloading it if the files changed.
func (c *CertFiles) Certificate() (*tls.Certificate, error) {
	certStat, cerr := os.Stat(c.certFile)
	keyStat, kerr := os.Stat(c.keyFile)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := errors.Join(cerr, kerr); err != nil {
		if c.cur != nil {
			return c.cur, nil // a replacement in progress; keep serving the old pair
		}
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if c.cur != nil && sameFile(c.certStat, certStat) && sameFile(c.keyStat, keyStat) {
		return c.cur, nil
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cur != nil {
			c.log.Warn("mtls: new certificate files do not load, keeping the previous certificate", "cert_file", c.certFile, "error", err)
			return c.cur, nil
		}
		// The error of LoadX509KeyPair never includes key material.
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if c.cur != nil {
		c.log.Info("mtls: reloaded workload certificate", "cert_file", c.certFile, "spiffe_id", claimedID(pair.Leaf),
			"serial", serialHex(pair.Leaf), "not_after", pair.Leaf.NotAfter)
	}
	c.cur, c.certStat, c.keyStat = &pair, certStat, keyStat
	return c.cur, nil
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
