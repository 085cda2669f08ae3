package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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
//
// No lock is held across the query or the load's key lookup on the signing
// path: the loaded state is an atomic pointer, swapped after a load; one
// caller at a time rechecks (reloading), and the callers that find a recheck
// under way sign with the loaded Issuer instead of queueing behind it, which
// is what they would have done a moment earlier, within the recheck bound.
type Current struct {
	d       Deps
	cfg     Config
	recheck time.Duration

	// reloading is held by the one caller rechecking or reloading; Get
	// only tries it, Reload waits for it.
	reloading sync.Mutex
	state     atomic.Pointer[currentState]
}

// currentState is what a Current has loaded and when it last checked; it is
// replaced whole, never changed.
type currentState struct {
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
	c := &Current{d: d, cfg: cfg, recheck: recheck}
	c.state.Store(&currentState{iss: iss, checked: d.Clock.Now()})
	return c, nil
}

// fresh reports whether st was checked within the recheck interval of now
// (a clock that went back counts as stale).
func (c *Current) fresh(st *currentState, now time.Time) bool {
	return now.Sub(st.checked) < c.recheck && !now.Before(st.checked)
}

// Get returns the Issuer to sign with now, reloading first if the recheck
// interval has passed and the active intermediate changed. While another
// caller rechecks, it returns the loaded Issuer without waiting.
func (c *Current) Get(ctx context.Context) *Issuer {
	now := c.d.Clock.Now()
	st := c.state.Load()
	if c.fresh(st, now) {
		return st.iss
	}
	if !c.reloading.TryLock() {
		return st.iss
	}
	defer c.reloading.Unlock()
	if st = c.state.Load(); c.fresh(st, now) {
		return st.iss // rechecked by the caller that held reloading before
	}
	iss, _, err := c.reload(ctx, st.iss)
	if err != nil {
		c.d.Log.WarnContext(ctx, "checking for a newly active intermediate failed; signing with the loaded one",
			"issuer", st.iss.ActiveIssuerID(), "err", err)
		iss = st.iss
	}
	c.state.Store(&currentState{iss: iss, checked: now})
	return iss
}

// Reload checks at once whether the active intermediate (or its chain)
// changed and, if so, loads it; changed says whether it did. It waits for a
// recheck under way to finish first.
func (c *Current) Reload(ctx context.Context) (changed bool, err error) {
	c.reloading.Lock()
	defer c.reloading.Unlock()
	st := c.state.Load()
	iss, changed, err := c.reload(ctx, st.iss)
	if err != nil {
		return false, err
	}
	c.state.Store(&currentState{iss: iss, checked: c.d.Clock.Now()})
	return changed, nil
}

// reload returns the Issuer to sign with: cur if the signing intermediate
// and its chain are unchanged, else a newly loaded one. The caller holds
// reloading and stores the result.
func (c *Current) reload(ctx context.Context, cur *Issuer) (*Issuer, bool, error) {
	issuers, err := c.d.Store.ListIssuers(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("issuer: reload: listing issuers: %w", err)
	}
	rec, ok := signingIntermediate(issuers)
	if !ok {
		return nil, false, ErrNotInitialized
	}
	if rec.ID == cur.rec.ID {
		chain, _, err := chainOf(issuers, rec)
		if err != nil {
			return nil, false, err
		}
		chain = append(chain, crossCertificates(issuers, rec)...)
		if slices.EqualFunc(chain, cur.chain, bytes.Equal) {
			return cur, false, nil
		}
	}
	iss, err := Load(ctx, c.d, c.cfg)
	if err != nil {
		return nil, false, err
	}
	c.d.Log.InfoContext(ctx, "signing with a newly active intermediate", "issuer", iss.ActiveIssuerID(), "previous", cur.ActiveIssuerID())
	return iss, true, nil
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
func (c *Current) loaded() *Issuer { return c.state.Load().iss }

// ActiveIssuerID is the ID of the intermediate the loaded Issuer signs with
// (as of the last recheck; Issue and TrustAnchors recheck).
func (c *Current) ActiveIssuerID() string { return c.loaded().ActiveIssuerID() }

// Certificate is the loaded Issuer's certificate; see Issuer.Certificate.
func (c *Current) Certificate() *x509.Certificate { return c.loaded().Certificate() }

// Chain is the loaded Issuer's chain; see Issuer.Chain.
func (c *Current) Chain() [][]byte { return c.loaded().Chain() }
