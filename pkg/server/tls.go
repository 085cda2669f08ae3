package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// ServerCertRequest is what the API listener asks the CA for: a certificate
// for its own, freshly generated, in-memory key.
type ServerCertRequest struct {
	PublicKey   crypto.PublicKey
	SPIFFEID    string
	DNSNames    []string
	IPAddresses []net.IP
	TTL         time.Duration
}

// IssueFunc obtains a certificate from the CA itself (in `ca serve`, through
// issuer.Issue, so it is recorded like any other). It returns the leaf's DER
// and the intermediates to send with it (not the root).
type IssueFunc func(ctx context.Context, req ServerCertRequest) (leaf []byte, intermediates [][]byte, err error)

// CertManagerConfig configures a CertManager. All fields are required except
// Clock (the real clock) and Log.
type CertManagerConfig struct {
	Issue IssueFunc
	// TrustDomain makes the SPIFFE ID spiffe://<TrustDomain>/ca/server.
	TrustDomain string
	// Host is the API URL's host: a DNS name, or an IP address.
	Host     string
	Lifetime time.Duration
	Clock    clock.Clock
	Log      *slog.Logger
	// CheckEvery is how often Run looks whether renewal is due (default 1m).
	CheckEvery time.Duration
}

// CertManager holds the API listener's certificate and renews it once two
// thirds of its lifetime have passed. Safe for concurrent use.
type CertManager struct {
	cfg CertManagerConfig

	mu   sync.RWMutex
	cert *tls.Certificate
}

// NewCertManager checks cfg; call Renew before serving.
func NewCertManager(cfg CertManagerConfig) (*CertManager, error) {
	switch {
	case cfg.Issue == nil:
		return nil, fmt.Errorf("%w: CertManagerConfig.Issue", ErrMissingDependency)
	case cfg.TrustDomain == "", cfg.Host == "":
		return nil, fmt.Errorf("%w: CertManagerConfig.TrustDomain and Host", ErrMissingDependency)
	case cfg.Lifetime <= 0:
		return nil, fmt.Errorf("%w: CertManagerConfig.Lifetime", ErrMissingDependency)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = time.Minute
	}
	return &CertManager{cfg: cfg}, nil
}

// SPIFFEID is the API server's identity.
func (m *CertManager) SPIFFEID() string {
	return "spiffe://" + m.cfg.TrustDomain + "/ca/server"
}

// request names the certificate: the API host (as a DNS name or IP address),
// localhost, and 127.0.0.1 when the host is an IP address or loopback.
func (m *CertManager) request(pub crypto.PublicKey) ServerCertRequest {
	req := ServerCertRequest{PublicKey: pub, SPIFFEID: m.SPIFFEID(), TTL: m.cfg.Lifetime}
	host := m.cfg.Host
	ip := net.ParseIP(host)
	if ip == nil {
		req.DNSNames = append(req.DNSNames, host)
	} else {
		req.IPAddresses = append(req.IPAddresses, ip)
	}
	if host != "localhost" {
		req.DNSNames = append(req.DNSNames, "localhost")
	}
	loopback := host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified()))
	if (ip != nil || loopback) && !(ip != nil && ip.Equal(net.IPv4(127, 0, 0, 1))) {
		req.IPAddresses = append(req.IPAddresses, net.IPv4(127, 0, 0, 1))
	}
	return req
}

// Renew generates a new key, has the CA issue a certificate for it and
// installs it. On error the current certificate stays in place.
func (m *CertManager) Renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	leafDER, intermediates, err := m.cfg.Issue(ctx, m.request(key.Public()))
	if err != nil {
		return fmt.Errorf("issuing the API server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return fmt.Errorf("parsing the API server certificate: %w", err)
	}
	cert := &tls.Certificate{Certificate: append([][]byte{leafDER}, intermediates...), PrivateKey: key, Leaf: leaf}
	m.mu.Lock()
	m.cert = cert
	m.mu.Unlock()
	m.cfg.Log.InfoContext(ctx, "API server certificate installed",
		"serial", fmt.Sprintf("%x", leaf.SerialNumber), "not_after", leaf.NotAfter, "spiffe_id", m.SPIFFEID())
	return nil
}

// Due reports whether the certificate should be renewed now: there is none,
// or two thirds of its lifetime have passed.
func (m *CertManager) Due() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cert == nil {
		return true
	}
	nb, na := m.cert.Leaf.NotBefore, m.cert.Leaf.NotAfter
	renewAt := nb.Add(na.Sub(nb) * 2 / 3)
	return !m.cfg.Clock.Now().Before(renewAt)
}

// RenewIfDue renews when Due; it reports whether it renewed.
func (m *CertManager) RenewIfDue(ctx context.Context) (bool, error) {
	if !m.Due() {
		return false, nil
	}
	return true, m.Renew(ctx)
}

// Run checks every CheckEvery whether renewal is due and renews, until ctx
// ends. Failures are logged and retried at the next check; the old
// certificate stays in use until it is replaced.
func (m *CertManager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.RenewIfDue(ctx); err != nil {
				m.cfg.Log.ErrorContext(ctx, "renewing the API server certificate failed; will retry", "err", err)
			}
		}
	}
}

// ErrNoCertificate is returned during a TLS handshake before the first Renew.
var ErrNoCertificate = errors.New("server: API server certificate not yet issued")

// GetCertificate serves the current certificate; it fits
// tls.Config.GetCertificate.
func (m *CertManager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cert == nil {
		return nil, ErrNoCertificate
	}
	return m.cert, nil
}

// Current returns the certificate in use, or nil.
func (m *CertManager) Current() *tls.Certificate {
	c, _ := m.GetCertificate(nil)
	return c
}

// APITLSConfig is the API listener's TLS configuration: TLS 1.2 or later, the
// certificate from m, and optional client certificates that, when given, must
// chain (with the intermediates the client sends) to one of the CA's current
// trust anchors. The anchors are re-read at most every refresh (default 1m),
// so a rotation reaches client verification without a restart.
func APITLSConfig(m *CertManager, anchors AnchorSource, clk clock.Clock, refresh time.Duration, log *slog.Logger) *tls.Config {
	if clk == nil {
		clk = clock.Real{}
	}
	if refresh <= 0 {
		refresh = time.Minute
	}
	pools := &anchorPool{src: anchors, clock: clk, refresh: refresh, log: log}
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = pools.get(hello.Context())
		return c, nil
	}
	return cfg
}

// anchorPool caches the trust anchors as a CertPool.
type anchorPool struct {
	src     AnchorSource
	clock   clock.Clock
	refresh time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	pool    *x509.CertPool
	fetched time.Time
}

func (a *anchorPool) get(ctx context.Context) *x509.CertPool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	if a.pool != nil && now.Sub(a.fetched) < a.refresh {
		return a.pool
	}
	certs, err := a.src.TrustAnchors(ctx)
	if err != nil {
		if a.log != nil {
			a.log.WarnContext(ctx, "reading trust anchors for client verification failed; keeping the previous set", "err", err)
		}
		if a.pool == nil {
			// No anchors known: an empty pool refuses every client certificate.
			return x509.NewCertPool()
		}
		return a.pool
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	a.pool, a.fetched = p, now
	return p
}
