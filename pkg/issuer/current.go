package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"
)

// DefaultRecheck is how often a Current checks for a newly active
// intermediate when NewCurrent is given no interval.
const DefaultRecheck = 5 * time.Second

// Current is the Issuer for whichever intermediate is active now. A running
// server holds a Current instead of an *Issuer, so an activation (on any
// replica) takes effect without a restart: at most once per recheck interval
// it lists the issuers (one cheap query) and, if the signing intermediate or
// its chain changed, loads a new Issuer. If that check or load fails, it keeps
// signing with the Issuer it has and logs. Safe for concurrent use.
type Current struct {
	d       Deps
	cfg     Config
	recheck time.Duration

	mu      sync.Mutex
	iss     *Issuer
	checked time.Time
}

// NewCurrent loads the active intermediate (see Load) and returns a Current
// that rechecks every recheck (DefaultRecheck when <= 0).
func NewCurrent(ctx context.Context, d Deps, cfg Config, recheck time.Duration) (*Current, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	iss, err := Load(ctx, d, cfg)
	if err != nil {
		return nil, err
	}
	if recheck <= 0 {
		recheck = DefaultRecheck
	}
	return &Current{d: d, cfg: cfg, recheck: recheck, iss: iss, checked: d.Clock.Now()}, nil
}

// Get returns the Issuer to sign with now, reloading first if the recheck
// interval has passed and the active intermediate changed.
func (c *Current) Get(ctx context.Context) *Issuer {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.d.Clock.Now()
	if now.Sub(c.checked) < c.recheck && !now.Before(c.checked) {
		return c.iss
	}
	if _, err := c.reloadLocked(ctx); err != nil {
		c.d.Log.WarnContext(ctx, "checking for a newly active intermediate failed; signing with the loaded one",
			"issuer", c.iss.ActiveIssuerID(), "err", err)
	}
	c.checked = now
	return c.iss
}

// Reload checks at once whether the active intermediate (or its chain)
// changed and, if so, loads it; changed says whether it did.
func (c *Current) Reload(ctx context.Context) (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed, err = c.reloadLocked(ctx)
	if err == nil {
		c.checked = c.d.Clock.Now()
	}
	return changed, err
}

func (c *Current) reloadLocked(ctx context.Context) (bool, error) {
	issuers, err := c.d.Store.ListIssuers(ctx)
	if err != nil {
		return false, fmt.Errorf("issuer: reload: listing issuers: %w", err)
	}
	rec, ok := signingIntermediate(issuers)
	if !ok {
		return false, ErrNotInitialized
	}
	if rec.ID == c.iss.rec.ID {
		chain, _, err := chainOf(issuers, rec)
		if err != nil {
			return false, err
		}
		chain = append(chain, crossCertificates(issuers, rec)...)
		if slices.EqualFunc(chain, c.iss.chain, bytes.Equal) {
			return false, nil
		}
	}
	iss, err := Load(ctx, c.d, c.cfg)
	if err != nil {
		return false, err
	}
	c.d.Log.InfoContext(ctx, "signing with a newly active intermediate", "issuer", iss.ActiveIssuerID(), "previous", c.iss.ActiveIssuerID())
	c.iss = iss
	return true, nil
}

// Issue issues with the current Issuer; see Issuer.Issue.
func (c *Current) Issue(ctx context.Context, r Request) (*Issued, error) {
	return c.Get(ctx).Issue(ctx, r)
}

// TrustAnchors returns the current Issuer's trust anchors; see
// Issuer.TrustAnchors.
func (c *Current) TrustAnchors(ctx context.Context) ([]*x509.Certificate, error) {
	return c.Get(ctx).TrustAnchors(ctx)
}

// loaded returns the loaded Issuer without rechecking.
func (c *Current) loaded() *Issuer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.iss
}

// ActiveIssuerID is the ID of the intermediate the loaded Issuer signs with
// (as of the last recheck; Issue and TrustAnchors recheck).
func (c *Current) ActiveIssuerID() string { return c.loaded().ActiveIssuerID() }

// Certificate is the loaded Issuer's certificate; see Issuer.Certificate.
func (c *Current) Certificate() *x509.Certificate { return c.loaded().Certificate() }

// Chain is the loaded Issuer's chain; see Issuer.Chain.
func (c *Current) Chain() [][]byte { return c.loaded().Chain() }
