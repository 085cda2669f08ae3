package mtls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Errors of bundle sources, tested with errors.Is.
var (
	// ErrBundleUnavailable: no bundle could be fetched and there is no last
	// good one (nor a cache file).
	ErrBundleUnavailable = errors.New("mtls: trust bundle unavailable")
	// ErrBundleInvalid: the bundle does not parse as SPIFFE bundle JSON or
	// PEM, or has no X.509 authorities.
	ErrBundleInvalid = errors.New("mtls: trust bundle invalid")
)

// ParseBundle parses a trust bundle for td: SPIFFE bundle JSON (what
// /bundle.json serves) or concatenated PEM certificates (/bundle.pem).
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	trimmed := bytes.TrimSpace(data)
	var b *spiffebundle.Bundle
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var err error
		if b, err = spiffebundle.Parse(td, trimmed); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBundleInvalid, err)
		}
	} else {
		xb, err := x509bundle.Parse(td, trimmed)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBundleInvalid, err)
		}
		b = spiffebundle.FromX509Bundle(xb)
	}
	if len(b.X509Authorities()) == 0 {
		return nil, fmt.Errorf("%w: no X.509 authorities", ErrBundleInvalid)
	}
	return b, nil
}

// LoadBundleFile reads a static bundle (JSON or PEM) for td: the source for
// tests and air-gapped services. The result is an x509bundle.Source.
func LoadBundleFile(td spiffeid.TrustDomain, path string) (*spiffebundle.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundleUnavailable, err)
	}
	return ParseBundle(td, data)
}

// HTTPBundleConfig configures an HTTPBundle.
type HTTPBundleConfig struct {
	// URL is the CA's bundle, normally {CA public URL}/bundle.json.
	URL string
	// TrustDomain is the trust domain the bundle is for.
	TrustDomain spiffeid.TrustDomain
	// CacheFile, if set, receives every good bundle (written atomically) and
	// is used when the CA is unreachable at start.
	CacheFile string
	// DefaultRefresh is the refresh interval when the bundle has no
	// spiffe_refresh_hint; default 5 minutes.
	DefaultRefresh time.Duration
	// RetryInterval is how soon a failed refresh is retried; default 30 s
	// (never later than the refresh interval).
	RetryInterval time.Duration
	// HTTPClient defaults to a client with a 10 s timeout.
	HTTPClient *http.Client
	Clock      Clock
	Log        *slog.Logger
}

// HTTPBundle is a trust bundle fetched from the CA and refreshed on its
// refresh hint. Refresh happens lazily: the first lookup after the refresh
// time fetches the bundle (concurrent lookups meanwhile get the current one).
// A failed fetch keeps the last good bundle and is retried after
// RetryInterval. It implements x509bundle.Source. Safe for concurrent use.
type HTTPBundle struct {
	cfg HTTPBundleConfig

	mu         sync.Mutex
	cur        *spiffebundle.Bundle
	etag       string
	next       time.Time
	refreshing bool
	lastErr    error
}

// NewHTTPBundle fetches the bundle once. If that fails and CacheFile holds a
// bundle, it starts from the cached one (and retries soon); otherwise it
// returns ErrBundleUnavailable or ErrBundleInvalid.
func NewHTTPBundle(ctx context.Context, cfg HTTPBundleConfig) (*HTTPBundle, error) {
	if cfg.URL == "" || cfg.TrustDomain.IsZero() {
		return nil, fmt.Errorf("%w: HTTPBundle needs URL and TrustDomain", ErrConfig)
	}
	if cfg.DefaultRefresh <= 0 {
		cfg.DefaultRefresh = 5 * time.Minute
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &HTTPBundle{cfg: cfg}
	err := b.Refresh(ctx)
	if err == nil {
		return b, nil
	}
	if cfg.CacheFile != "" {
		cached, cerr := LoadBundleFile(cfg.TrustDomain, cfg.CacheFile)
		if cerr == nil {
			cfg.Log.Warn("mtls: CA bundle unreachable at start, using the cached bundle", "url", cfg.URL, "cache", cfg.CacheFile, "error", err)
			b.mu.Lock()
			b.cur = cached
			b.next = cfg.Clock.Now().Add(cfg.RetryInterval)
			b.mu.Unlock()
			return b, nil
		}
	}
	return nil, err
}

// GetX509BundleForTrustDomain returns the current bundle for td, refreshing
// it first when it is due. It errors only for another trust domain.
func (b *HTTPBundle) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != b.cfg.TrustDomain {
		return nil, fmt.Errorf("%w: no bundle for trust domain %q", ErrBundleUnavailable, td.Name())
	}
	b.mu.Lock()
	due := !b.refreshing && !b.cfg.Clock.Now().Before(b.next)
	if due {
		b.refreshing = true
	}
	b.mu.Unlock()
	if due {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.HTTPClient.Timeout+time.Second)
		_ = b.refresh(ctx, true) // failures are logged and keep the last good bundle
		cancel()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur.X509Bundle(), nil
}

// Current returns the last good bundle and when the next refresh is due.
func (b *HTTPBundle) Current() (*spiffebundle.Bundle, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, b.next
}

// LastError is the error of the last refresh, nil if it succeeded.
func (b *HTTPBundle) LastError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// Refresh fetches the bundle now. On failure the last good bundle stays.
func (b *HTTPBundle) Refresh(ctx context.Context) error {
	b.mu.Lock()
	b.refreshing = true
	b.mu.Unlock()
	return b.refresh(ctx, false)
}

// refresh fetches and installs the bundle; refreshing must be set.
func (b *HTTPBundle) refresh(ctx context.Context, lazy bool) error {
	fresh, etag, notModified, err := b.fetch(ctx)
	now := b.cfg.Clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshing = false
	b.lastErr = err
	if err != nil {
		retry := b.cfg.RetryInterval
		if hint := b.interval(); hint < retry {
			retry = hint
		}
		b.next = now.Add(retry)
		if b.cur != nil {
			b.cfg.Log.Warn("mtls: CA bundle refresh failed, keeping the last good bundle", "url", b.cfg.URL, "error", err, "retry_in", retry)
		}
		return err
	}
	if !notModified {
		if lazy || b.cur != nil {
			oldSeq, _ := sequence(b.cur)
			newSeq, _ := sequence(fresh)
			b.cfg.Log.Info("mtls: CA bundle refreshed", "url", b.cfg.URL, "old_sequence", oldSeq, "sequence", newSeq, "authorities", len(fresh.X509Authorities()))
		}
		b.cur, b.etag = fresh, etag
		b.writeCache(fresh)
	}
	b.next = now.Add(b.interval())
	return nil
}

// interval is the refresh interval of the current bundle; mu must be held.
func (b *HTTPBundle) interval() time.Duration {
	if b.cur != nil {
		if h, ok := b.cur.RefreshHint(); ok && h > 0 {
			return h
		}
	}
	return b.cfg.DefaultRefresh
}

func (b *HTTPBundle) fetch(ctx context.Context) (fresh *spiffebundle.Bundle, etag string, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.cfg.URL, nil)
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	b.mu.Lock()
	if b.cur != nil && b.etag != "" {
		req.Header.Set("If-None-Match", b.etag)
	}
	b.mu.Unlock()
	res, err := b.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: %v", ErrBundleUnavailable, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNotModified:
		return nil, "", true, nil
	case http.StatusOK:
	default:
		return nil, "", false, fmt.Errorf("%w: GET %s answered %d", ErrBundleUnavailable, b.cfg.URL, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: reading %s: %v", ErrBundleUnavailable, b.cfg.URL, err)
	}
	fresh, err = ParseBundle(b.cfg.TrustDomain, body)
	if err != nil {
		return nil, "", false, err
	}
	return fresh, res.Header.Get("ETag"), false, nil
}

func (b *HTTPBundle) writeCache(fresh *spiffebundle.Bundle) {
	if b.cfg.CacheFile == "" {
		return
	}
	data, err := fresh.Marshal()
	if err == nil {
		err = writeFileAtomic(b.cfg.CacheFile, data, 0o644)
	}
	if err != nil {
		b.cfg.Log.Warn("mtls: writing the bundle cache failed", "cache", b.cfg.CacheFile, "error", err)
	}
}

func sequence(b *spiffebundle.Bundle) (uint64, bool) {
	if b == nil {
		return 0, false
	}
	return b.SequenceNumber()
}

// writeFileAtomic writes data to a temporary file next to path and renames it
// over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
