package jwtsvid

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Clock tells the current time; tests pass a fake one.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Source yields the JWT-SVID signing keys of a trust domain.
type Source interface {
	// JWTAuthority returns the public key with the given kid. It fails with
	// an *Error of ReasonUnknownKid or ReasonBundleUnavailable.
	JWTAuthority(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// StaticSource is a fixed bundle, for tests and air-gapped setups that
// distribute bundle.json out of band.
type StaticSource struct {
	b *spiffebundle.Bundle
}

// NewStaticSource returns a Source over b.
func NewStaticSource(b *spiffebundle.Bundle) *StaticSource { return &StaticSource{b: b} }

// JWTAuthority looks kid up in the fixed bundle.
func (s *StaticSource) JWTAuthority(_ context.Context, kid string) (crypto.PublicKey, error) {
	if pub, ok := s.b.FindJWTAuthority(kid); ok {
		return pub, nil
	}
	return nil, fail(ReasonUnknownKid, fmt.Sprintf("kid %q is not in the bundle", kid), nil)
}

// Defaults of HTTPSourceConfig.
const (
	DefaultRefreshHint        = 5 * time.Minute
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultMaxStale           = 24 * time.Hour
	DefaultFetchTimeout       = 10 * time.Second
	maxBundleBytes            = 1 << 20
)

// HTTPSourceConfig configures an HTTPSource. URL and TrustDomain are
// required.
type HTTPSourceConfig struct {
	// URL of the CA's SPIFFE bundle, e.g. http://ca.example.org:8080/bundle.json.
	URL         string
	TrustDomain spiffeid.TrustDomain
	// Client fetches the bundle; http.DefaultClient's transport with
	// DefaultFetchTimeout by default.
	Client *http.Client
	// RefreshHint is used when the bundle carries no spiffe_refresh_hint.
	RefreshHint time.Duration
	// MinRefreshInterval rate-limits fetches triggered by unknown kids.
	MinRefreshInterval time.Duration
	// MaxStale bounds how long a cached bundle is used while fetches fail.
	MaxStale time.Duration
	Clock    Clock
	Log      *slog.Logger
}

// HTTPSource fetches the SPIFFE bundle over HTTP(S) and caches it. It
// fetches again once the bundle's spiffe_refresh_hint has passed, and when
// asked for a kid it does not know, at most once per MinRefreshInterval. A
// failed fetch keeps the cached bundle (up to MaxStale). Safe for
// concurrent use; concurrent fetches are merged.
type HTTPSource struct {
	cfg HTTPSourceConfig

	mu        sync.Mutex
	bundle    *spiffebundle.Bundle
	etag      string
	fetchedAt time.Time // last successful fetch (or 304)
	triedAt   time.Time // last attempt
	fetches   int
}

// NewHTTPSource checks cfg and fills defaults. Nothing is fetched until the
// first lookup.
func NewHTTPSource(cfg HTTPSourceConfig) (*HTTPSource, error) {
	if cfg.URL == "" {
		return nil, errors.New("jwtsvid: HTTPSourceConfig.URL is required")
	}
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("jwtsvid: HTTPSourceConfig.TrustDomain is required")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultFetchTimeout}
	}
	if cfg.RefreshHint <= 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = DefaultMaxStale
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &HTTPSource{cfg: cfg}, nil
}

// Fetches returns how many fetch attempts were made (for metrics and
// tests).
func (s *HTTPSource) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// JWTAuthority returns the key for kid from the cached bundle, refreshing it
// first when its refresh hint has passed, and once more (rate-limited) when
// kid is unknown.
func (s *HTTPSource) JWTAuthority(ctx context.Context, kid string) (crypto.PublicKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now()
	if s.bundle == nil || !now.Before(s.fetchedAt.Add(s.hint())) {
		if err := s.refresh(ctx, now); err != nil && s.bundle == nil {
			return nil, err
		}
	}
	if s.bundle == nil || now.Sub(s.fetchedAt) > s.cfg.MaxStale {
		return nil, fail(ReasonBundleUnavailable, "the cached bundle is older than MaxStale and cannot be refreshed", nil)
	}
	if pub, ok := s.bundle.FindJWTAuthority(kid); ok {
		return pub, nil
	}
	if now.Sub(s.triedAt) >= s.cfg.MinRefreshInterval {
		if err := s.refresh(ctx, now); err == nil {
			if pub, ok := s.bundle.FindJWTAuthority(kid); ok {
				return pub, nil
			}
		}
	}
	return nil, fail(ReasonUnknownKid, fmt.Sprintf("kid %q is not in the trust bundle", kid), nil)
}

func (s *HTTPSource) hint() time.Duration {
	if s.bundle != nil {
		if h, ok := s.bundle.RefreshHint(); ok && h > 0 {
			return h
		}
	}
	return s.cfg.RefreshHint
}

// refresh fetches the bundle (with If-None-Match) and replaces the cached
// one. Called with s.mu held.
func (s *HTTPSource) refresh(ctx context.Context, now time.Time) error {
	s.triedAt = now
	s.fetches++
	b, etag, notModified, err := s.fetch(ctx)
	if err != nil {
		s.cfg.Log.WarnContext(ctx, "fetching the trust bundle failed", "url", s.cfg.URL, "err", err)
		return fail(ReasonBundleUnavailable, "fetching the trust bundle failed", err)
	}
	if !notModified {
		s.bundle, s.etag = b, etag
	}
	s.fetchedAt = now
	return nil
}

func (s *HTTPSource) fetch(ctx context.Context) (b *spiffebundle.Bundle, etag string, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return nil, "", false, err
	}
	req.Header.Set("Accept", "application/json")
	if s.etag != "" && s.bundle != nil {
		req.Header.Set("If-None-Match", s.etag)
	}
	res, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, "", false, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotModified && s.bundle != nil {
		return nil, "", true, nil
	}
	if res.StatusCode != http.StatusOK {
		return nil, "", false, fmt.Errorf("GET %s: status %d", s.cfg.URL, res.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxBundleBytes+1))
	if err != nil {
		return nil, "", false, err
	}
	if len(raw) > maxBundleBytes {
		return nil, "", false, fmt.Errorf("GET %s: bundle larger than %d bytes", s.cfg.URL, maxBundleBytes)
	}
	b, err = spiffebundle.Parse(s.cfg.TrustDomain, raw)
	if err != nil {
		return nil, "", false, fmt.Errorf("GET %s: %w", s.cfg.URL, err)
	}
	return b, res.Header.Get("ETag"), false, nil
}
