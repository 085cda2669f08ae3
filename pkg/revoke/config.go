package revoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Defaults applied by Config.Validate to zero fields.
const (
	DefaultCRLValidity    = 24 * time.Hour
	DefaultOCSPValidity   = 24 * time.Hour
	DefaultTick           = 5 * time.Second
	DefaultOCSPBatch      = 2000
	DefaultOCSPTickLimit  = 20000
	DefaultSignWorkers    = 4
	DefaultOCSPScan       = time.Minute
	DefaultUnknownRate    = 5.0 // signatures per second for never-issued serials
	DefaultUnknownBurst   = 20
	DefaultUnknownCache   = 10000
	DefaultOtherHashRate  = 20.0 // signatures per second for issued serials asked with non-SHA-1 CertIDs
	DefaultOtherHashBurst = 50
	DefaultLazyRate       = 20.0 // signatures per second of pre-signed responses missing or lapsed when asked for
	DefaultLazyBurst      = 100
	issuerRefresh         = 30 * time.Second
)

// Config is the revocation publisher's and responder's configuration,
// validated once at start.
type Config struct {
	// CRLValidity is nextUpdate - thisUpdate of every CRL (default 24h).
	CRLValidity time.Duration
	// CRLMargin: a CRL is regenerated once now >= nextUpdate - CRLMargin
	// (default CRLValidity/2), and at once after a revocation.
	CRLMargin time.Duration
	// OCSPValidity is nextUpdate - thisUpdate of every OCSP response (default
	// 24h); it is cut to end with the responder certificate.
	OCSPValidity time.Duration
	// OCSPMargin: a response is re-signed once now >= nextUpdate - OCSPMargin
	// (default OCSPValidity/2).
	OCSPMargin time.Duration
	// Tick is how often Run calls RefreshOnce (default 5s); a revocation in
	// this process triggers one at once.
	Tick time.Duration
	// OCSPScanInterval is how often the leader scans each issuer's
	// certificates for missing, due and contradicted OCSP responses (default
	// 1m); a revocation (through any replica) or a Kick brings the scan
	// forward to the next tick.
	OCSPScanInterval time.Duration
	// OCSPBatch is how many certificates one store query hands the refresher
	// (default 2000); OCSPTickLimit caps signatures per tick per issuer
	// (default 20000) so that one tick cannot hold leadership for long.
	OCSPBatch, OCSPTickLimit int
	// SignWorkers is how many OCSP responses the publisher signs at a time
	// (default 4): the token signs in parallel, and a network HSM's round
	// trips overlap.
	SignWorkers int
	// UnknownRate and UnknownBurst bound, per process, how many "unknown"
	// responses for never-issued serials are signed per second (defaults 5/s,
	// burst 20); beyond that the answer is tryLater. UnknownCache is how many
	// such responses are kept in memory until their nextUpdate (default
	// 10000).
	UnknownRate  float64
	UnknownBurst int
	UnknownCache int
	// OtherHashRate and OtherHashBurst bound, per process, the responses
	// signed on the fly for serials this CA issued but asked with a CertID
	// hashed with another algorithm than SHA-1 (defaults 20/s, burst 50;
	// kept in the same cache as the unknown ones). Their own budget, so a
	// flood of never-issued serials cannot push SHA-256 clients into
	// tryLater.
	OtherHashRate  float64
	OtherHashBurst int
	// LazyRate and LazyBurst bound, per process, the pre-signed responses
	// signed (and stored) on request because the publisher has not signed
	// one yet or the stored one has lapsed (defaults 20/s, burst 100);
	// beyond that the answer is tryLater until the publisher catches up.
	LazyRate  float64
	LazyBurst int
	// OCSPCache is how many pre-signed responses a Responder that follows a
	// Publisher keeps in memory (default DefaultOCSPCache); OCSPCacheRecheck
	// is how often it re-reads each issuer's revocation counter to notice
	// other replicas' revocations (default 1s): the most a revocation
	// committed elsewhere can stay unseen by this process's cache.
	OCSPCache        int
	OCSPCacheRecheck time.Duration
	// Responder shapes the delegated OCSP responder certificates.
	Responder issuer.ResponderConfig
}

// ErrInvalidConfig is returned by Config.Validate.
var ErrInvalidConfig = errors.New("revoke: invalid configuration")

// Validate fills defaults into zero fields and checks the rest.
func (c *Config) Validate() error {
	setDefault(&c.CRLValidity, DefaultCRLValidity)
	setDefault(&c.CRLMargin, c.CRLValidity/2)
	setDefault(&c.OCSPValidity, DefaultOCSPValidity)
	setDefault(&c.OCSPMargin, c.OCSPValidity/2)
	setDefault(&c.Tick, DefaultTick)
	setDefault(&c.OCSPScanInterval, DefaultOCSPScan)
	setDefault(&c.OCSPCacheRecheck, DefaultOCSPCacheRecheck)
	for name, v := range map[string]time.Duration{
		"CRLValidity": c.CRLValidity, "CRLMargin": c.CRLMargin,
		"OCSPValidity": c.OCSPValidity, "OCSPMargin": c.OCSPMargin, "Tick": c.Tick, "OCSPCacheRecheck": c.OCSPCacheRecheck,
		"OCSPScanInterval": c.OCSPScanInterval,
	} {
		if v < 0 {
			return fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, name)
		}
	}
	switch {
	case c.CRLMargin >= c.CRLValidity:
		return fmt.Errorf("%w: CRLMargin must be shorter than CRLValidity", ErrInvalidConfig)
	case c.OCSPMargin >= c.OCSPValidity:
		return fmt.Errorf("%w: OCSPMargin must be shorter than OCSPValidity", ErrInvalidConfig)
	case c.Tick >= c.CRLMargin || c.Tick >= c.OCSPMargin:
		return fmt.Errorf("%w: Tick must be shorter than both margins", ErrInvalidConfig)
	case c.OCSPScanInterval >= c.OCSPMargin:
		return fmt.Errorf("%w: OCSPScanInterval must be shorter than OCSPMargin", ErrInvalidConfig)
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"OCSPBatch", &c.OCSPBatch, DefaultOCSPBatch},
		{"OCSPTickLimit", &c.OCSPTickLimit, DefaultOCSPTickLimit},
		{"SignWorkers", &c.SignWorkers, DefaultSignWorkers},
		{"UnknownBurst", &c.UnknownBurst, DefaultUnknownBurst},
		{"UnknownCache", &c.UnknownCache, DefaultUnknownCache},
		{"OtherHashBurst", &c.OtherHashBurst, DefaultOtherHashBurst},
		{"LazyBurst", &c.LazyBurst, DefaultLazyBurst},
		{"OCSPCache", &c.OCSPCache, DefaultOCSPCache},
	}
	for _, d := range ints {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, d.name)
		}
	}
	rates := []struct {
		name string
		v    *float64
		def  float64
	}{
		{"UnknownRate", &c.UnknownRate, DefaultUnknownRate},
		{"OtherHashRate", &c.OtherHashRate, DefaultOtherHashRate},
		{"LazyRate", &c.LazyRate, DefaultLazyRate},
	}
	for _, r := range rates {
		if *r.v == 0 {
			*r.v = r.def
		}
		if *r.v < 0 {
			return fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, r.name)
		}
	}
	return nil
}

func setDefault(v *time.Duration, def time.Duration) {
	if *v == 0 {
		*v = def
	}
}

// Store is what this package needs from persistence; store.Store satisfies
// it.
type Store interface {
	issuer.ResponderStore
	ListIssuers(ctx context.Context) ([]store.Issuer, error)
	RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, e store.AuditEntry) (store.Certificate, store.AuditEntry, error)
	RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error)
	NextCRLNumber(ctx context.Context, issuerID string) (int64, error)
	RevokedEntries(ctx context.Context, issuerID string, now time.Time) ([]store.RevocationStatus, error)
	RevocationSeq(ctx context.Context, issuerID string) (int64, error)
	PutCRL(ctx context.Context, c store.CRL) error
	GetCRL(ctx context.Context, issuerID string) (store.CRL, error)
	CRLInfo(ctx context.Context, issuerID string) (store.CRL, error)
	CertificateStatus(ctx context.Context, serial string) (store.RevocationStatus, error)
	OCSPWork(ctx context.Context, issuerID string, now, refreshBefore time.Time, limit int) ([]store.RevocationStatus, error)
	PutOCSPResponse(ctx context.Context, r store.OCSPResponse) error
	PutOCSPResponses(ctx context.Context, rs []store.OCSPResponse) ([]error, error)
	GetOCSPResponse(ctx context.Context, serial string) (store.OCSPResponse, error)
	OCSPOldest(ctx context.Context, issuerID string, now time.Time) (time.Time, bool, error)
	TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error)
}

// Deps are the collaborators. Store and Keys are required; a nil Clock is
// the real clock, a nil Log discards, a nil Metrics registers nothing.
type Deps struct {
	Store   Store
	Keys    issuer.KeyStore
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics prometheus.Registerer
	// KeyHealth records whether the OCSP responder keys could sign when last
	// used (shared by the Publisher and the Responder of one process);
	// Responder.KeyReady reads it for /readyz. nil records nothing.
	KeyHealth *hsm.KeyHealth
}

func (d Deps) withDefaults() (Deps, error) {
	if d.Store == nil || d.Keys == nil {
		return d, errors.New("revoke: Deps.Store and Deps.Keys are required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return d, nil
}
