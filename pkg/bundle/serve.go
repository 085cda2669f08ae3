package bundle

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Defaults of ServeConfig.
const (
	// DefaultRefreshHint is spiffe_refresh_hint when none is configured
	// (SPIRE's default too).
	DefaultRefreshHint = 5 * time.Minute
	// DefaultRecheck is how often a Cache asks the store whether a newer
	// version exists.
	DefaultRecheck = 5 * time.Second
)

// VersionSource is what serving needs from the store: a cheap check of the
// latest sequence and a read of one version. store.Store satisfies it.
type VersionSource interface {
	LatestBundleSequence(ctx context.Context) (int64, error)
	GetBundleVersion(ctx context.Context, sequence int64) (store.BundleVersion, error)
}

// ServeConfig configures a Cache.
type ServeConfig struct {
	// RefreshHint is published as spiffe_refresh_hint (default 5m). HTTP
	// caches may keep a copy for half of it (MaxAge), so a relying party that
	// follows the hint sees a new version within 1.5 hints plus Recheck;
	// rotation overlaps should be at least twice the hint.
	RefreshHint time.Duration
	// Recheck is how long a Cache serves its copy before asking the store
	// for a newer sequence again (default 5s).
	Recheck time.Duration
}

// Published is one stored version rendered for serving. It is immutable.
type Published struct {
	Sequence  int64
	CreatedAt time.Time
	Content   Content
	Anchors   []*x509.Certificate
	// PEM and JSON are the bodies of /bundle.pem and /bundle.json.
	PEM, JSON []byte
	// PEMETag and JSONETag are strong ETags (quoted) derived from the
	// sequence and a hash of each body.
	PEMETag, JSONETag string
	// MaxAge is the Cache-Control max-age for both bodies: half the refresh
	// hint.
	MaxAge time.Duration
}

// Cache serves the latest stored version from memory, asking the store for
// a newer sequence at most once per Recheck and re-reading the version only
// when the sequence moved. If the store is unreachable it keeps serving the
// copy it has (and logs); only a cache that never loaded fails. Safe for
// concurrent use.
type Cache struct {
	src   VersionSource
	clock clock.Clock
	log   *slog.Logger
	cfg   ServeConfig

	mu      sync.Mutex
	cur     *Published
	checked time.Time
}

// NewCache builds a Cache; a nil clock is clock.Real{}, a nil log discards.
func NewCache(src VersionSource, clk clock.Clock, log *slog.Logger, cfg ServeConfig) *Cache {
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RefreshHint <= 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = DefaultRecheck
	}
	return &Cache{src: src, clock: clk, log: log, cfg: cfg}
}

// Current returns the latest published version. ErrNoBundle if none has
// been published yet; store errors (wrapped) only if nothing is cached.
func (c *Cache) Current(ctx context.Context) (*Published, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if c.cur != nil && now.Sub(c.checked) < c.cfg.Recheck && !now.Before(c.checked) {
		return c.cur, nil
	}
	p, err := c.refresh(ctx)
	if err != nil {
		if c.cur != nil && !errors.Is(err, ErrNoBundle) {
			c.log.WarnContext(ctx, "serving cached trust bundle; refresh failed", "sequence", c.cur.Sequence, "err", err)
			return c.cur, nil
		}
		return nil, err
	}
	c.cur, c.checked = p, now
	return p, nil
}

// refresh reads the latest sequence and, if it moved, the version. c.mu is held.
func (c *Cache) refresh(ctx context.Context) (*Published, error) {
	seq, err := c.src.LatestBundleSequence(ctx)
	if err != nil {
		return nil, fmt.Errorf("bundle: latest sequence: %w", err)
	}
	if seq == 0 {
		return nil, ErrNoBundle
	}
	if c.cur != nil && c.cur.Sequence == seq {
		return c.cur, nil
	}
	v, err := c.src.GetBundleVersion(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("bundle: reading version %d: %w", seq, err)
	}
	return Render(v, c.cfg.RefreshHint)
}

// Render turns a stored version into its served forms.
func Render(v store.BundleVersion, refreshHint time.Duration) (*Published, error) {
	content, err := ParseContent(v.Content)
	if err != nil {
		return nil, fmt.Errorf("bundle: version %d: %w", v.Sequence, err)
	}
	anchors, err := content.Anchors()
	if err != nil {
		return nil, err
	}
	js, err := RenderJSON(content, v.Sequence, refreshHint)
	if err != nil {
		return nil, err
	}
	pemBody := RenderPEM(content)
	return &Published{
		Sequence:  v.Sequence,
		CreatedAt: v.CreatedAt,
		Content:   content,
		Anchors:   anchors,
		PEM:       pemBody,
		JSON:      js,
		PEMETag:   etag(v.Sequence, pemBody),
		JSONETag:  etag(v.Sequence, js),
		MaxAge:    refreshHint / 2,
	}, nil
}

// etag is "<sequence>-<first 16 bytes of SHA-256(body), hex>".
func etag(seq int64, body []byte) string {
	h := sha256.Sum256(body)
	return `"` + strconv.FormatInt(seq, 10) + "-" + hex.EncodeToString(h[:16]) + `"`
}
