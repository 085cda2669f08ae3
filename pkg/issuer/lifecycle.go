package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/lifecycle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// TickResult says what one Tick (or Activate) changed.
type TickResult struct {
	// Activated, Retiring and Retired list the issuer IDs this call moved.
	Activated, Retiring, Retired []string
	// Bundle is the latest bundle version after the call; Published is true
	// when this call stored it, Pinned when a rollback is being kept.
	Bundle            store.BundleVersion
	Published, Pinned bool
}

func (t TickResult) changed() bool {
	return len(t.Activated)+len(t.Retiring)+len(t.Retired) > 0
}

// ActivateOptions say who activates, and whether to skip the overlap.
type ActivateOptions struct {
	Actor, RequestID string
	// Force activates the prepared intermediate even if its root has not
	// been published for the overlap yet (an emergency: relying parties that
	// have not fetched the new root will reject the new leaves).
	Force bool
}

// Tick is the background step of rotation: it publishes the bundle (so
// prepared issuers are published even if Rotate's publish failed), activates
// a prepared intermediate that is ready, retires drained issuers, and
// republishes after changes. Safe to run on every replica at once.
func (r *Rotator) Tick(ctx context.Context) (TickResult, error) {
	var res TickResult
	if err := r.publish(ctx, &res, "system", "", "tick"); err != nil {
		return res, err
	}
	if err := r.activate(ctx, &res, ActivateOptions{Actor: "system"}); err != nil && !errors.Is(err, ErrNotReady) {
		return res, err
	}
	if err := r.retire(ctx, &res); err != nil {
		return res, err
	}
	if res.changed() {
		if err := r.publish(ctx, &res, "system", "", "issuer states changed"); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Activate activates the prepared intermediate now if it is ready (or
// o.Force), as Tick would, and republishes. ErrNotReady if nothing is ready.
func (r *Rotator) Activate(ctx context.Context, o ActivateOptions) (TickResult, error) {
	if o.Actor == "" {
		o.Actor = "system"
	}
	var res TickResult
	if err := r.activate(ctx, &res, o); err != nil {
		return res, err
	}
	if err := r.publish(ctx, &res, o.Actor, o.RequestID, "activate"); err != nil {
		return res, err
	}
	return res, nil
}

// Run calls Tick every interval until ctx ends, logging failures.
func (r *Rotator) Run(ctx context.Context, interval time.Duration) {
	lifecycle.Every(ctx, interval, func(ctx context.Context) {
		res, err := r.Tick(ctx)
		if err != nil {
			r.d.Log.ErrorContext(ctx, "rotation tick failed", "err", err)
		} else if res.changed() {
			r.d.Log.InfoContext(ctx, "rotation tick", "activated", res.Activated, "retiring", res.Retiring,
				"retired", res.Retired, "bundle_sequence", res.Bundle.Sequence)
		}
	})
}

// rule is the lifecycle timing of CA issuers: an intermediate activates
// once its root has been published for Overlap, and retires MaxTTL plus
// Grace after it stopped signing, not before its last leaf expires.
func (r *Rotator) rule() lifecycle.Rule {
	return lifecycle.Rule{Lead: r.rc.Overlap, MaxTTL: r.cfg.MaxTTL, Grace: r.rc.Grace}
}

func (r *Rotator) publish(ctx context.Context, res *TickResult, actor, requestID, reason string) error {
	pub, err := r.d.Bundles.Publish(ctx, bundle.PublishOptions{Actor: actor, RequestID: requestID, Reason: reason})
	if err != nil {
		return fmt.Errorf("issuer: publishing bundle: %w", err)
	}
	res.Bundle, res.Pinned = pub.Version, pub.Pinned
	res.Published = res.Published || pub.Changed
	return nil
}

// activate activates the newest ready prepared intermediate: its prepared
// ancestors and cross-certificates first, then itself, then the previously
// active intermediates (and their roots, if different) become retiring.
func (r *Rotator) activate(ctx context.Context, res *TickResult, o ActivateOptions) error {
	issuers, err := r.d.Store.ListIssuers(ctx)
	if err != nil {
		return fmt.Errorf("issuer: activate: listing issuers: %w", err)
	}
	now := r.d.Clock.Now()
	var cand store.Issuer
	var candRoot store.Issuer
	found := false
	for _, is := range issuers {
		if is.Kind != store.KindIntermediate || is.State != store.IssuerPrepared || is.CertDER == nil || is.KeyURI == "" {
			continue
		}
		_, root, err := chainOf(issuers, is)
		if err != nil {
			return err
		}
		if !o.Force {
			since, ok, err := r.d.Bundles.AnchorPublishedSince(ctx, root.CertDER)
			if err != nil {
				return fmt.Errorf("issuer: activate: %w", err)
			}
			k := lifecycle.Key{State: lifecycle.Prepared, Published: ok, PublishedSince: since, Created: is.CreatedAt}
			if r.rule().Due(k, now) != lifecycle.Activate {
				continue
			}
		}
		if !found || !is.NotBefore.Before(cand.NotBefore) {
			cand, candRoot, found = is, root, true
		}
	}
	if !found {
		return ErrNotReady
	}

	// Everything to move to active, ancestors and cross-certificates first so
	// the chain of the new intermediate is complete when it starts signing.
	var up []store.Issuer
	for _, is := range issuers {
		if is.State != store.IssuerPrepared || is.ID == cand.ID {
			continue
		}
		if is.ID == candRoot.ID || (is.KeyURI == "" && is.Kind == store.KindIntermediate && isCrossOf(is, cand)) {
			up = append(up, is)
		}
	}
	up = append(up, cand)
	var moved []string
	for _, is := range up {
		ok, err := r.move(ctx, is.ID, store.IssuerPrepared, store.IssuerActive, now)
		if err != nil {
			return err
		}
		if ok {
			moved = append(moved, is.ID)
		}
	}
	if len(moved) == 0 || moved[len(moved)-1] != cand.ID {
		return nil // another replica activated it
	}
	res.Activated = append(res.Activated, moved...)

	// The previous signers, and their roots if the root changed.
	var down []string
	oldRoots := map[string]bool{}
	for _, is := range issuers {
		if is.ID == cand.ID || is.Kind != store.KindIntermediate || is.State != store.IssuerActive || is.KeyURI == "" {
			continue
		}
		if ok, err := r.move(ctx, is.ID, store.IssuerActive, store.IssuerRetiring, now); err != nil {
			return err
		} else if ok {
			down = append(down, is.ID)
		}
		if _, root, err := chainOf(issuers, is); err == nil && root.ID != candRoot.ID {
			oldRoots[root.ID] = true
		}
	}
	for _, is := range issuers {
		if oldRoots[is.ID] && is.State == store.IssuerActive {
			if ok, err := r.move(ctx, is.ID, store.IssuerActive, store.IssuerRetiring, now); err != nil {
				return err
			} else if ok {
				down = append(down, is.ID)
			}
		}
	}
	res.Retiring = append(res.Retiring, down...)
	details := map[string]any{"activated": moved, "retiring": down, "forced": o.Force, "overlap": r.rc.Overlap.String()}
	if err := r.audit(ctx, "activate", cand.ID, o.Actor, o.RequestID, details, now); err != nil {
		return err
	}
	r.d.Log.InfoContext(ctx, "intermediate activated", "issuer", cand.ID, "activated", moved, "retiring", down,
		"forced", o.Force, "actor", o.Actor)
	return nil
}

// retire retires drained intermediates, then roots left without
// intermediates (with the cross-certificates they signed).
func (r *Rotator) retire(ctx context.Context, res *TickResult) error {
	issuers, err := r.d.Store.ListIssuers(ctx)
	if err != nil {
		return fmt.Errorf("issuer: retire: listing issuers: %w", err)
	}
	now := r.d.Clock.Now()
	retired := map[string]bool{}
	for _, is := range issuers {
		if is.Kind != store.KindIntermediate || is.State != store.IssuerRetiring || is.KeyURI == "" {
			continue
		}
		last, err := r.d.Store.MaxLeafNotAfter(ctx, is.ID)
		if err != nil {
			return fmt.Errorf("issuer: retire: last leaf of %q: %w", is.ID, err)
		}
		k := lifecycle.Key{State: lifecycle.Retiring, RetiringSince: is.UpdatedAt, LastExpiry: last}
		if r.rule().Due(k, now) != lifecycle.Retire {
			continue
		}
		ok, err := r.move(ctx, is.ID, store.IssuerRetiring, store.IssuerRetired, now)
		if err != nil {
			return err
		}
		if ok {
			retired[is.ID] = true
			res.Retired = append(res.Retired, is.ID)
			details := map[string]any{"last_leaf_not_after": last, "retiring_since": is.UpdatedAt}
			if err := r.audit(ctx, "retire", is.ID, "system", "", details, now); err != nil {
				return err
			}
			r.d.Log.InfoContext(ctx, "intermediate retired", "issuer", is.ID, "last_leaf_not_after", last)
		}
	}

	for _, root := range issuers {
		if root.Kind != store.KindRoot || root.State != store.IssuerRetiring {
			continue
		}
		var signedByRoot []store.Issuer // its non-retired intermediates
		busy := false
		for _, is := range issuers {
			if is.Kind != store.KindIntermediate || is.State == store.IssuerRetired || retired[is.ID] || is.CertDER == nil {
				continue
			}
			_, top, err := chainOf(issuers, is)
			if err != nil || top.ID != root.ID {
				continue
			}
			if is.KeyURI != "" {
				busy = true
				break
			}
			signedByRoot = append(signedByRoot, is)
		}
		if busy {
			continue
		}
		var ids []string
		for _, is := range signedByRoot {
			if ok, err := r.move(ctx, is.ID, is.State, store.IssuerRetired, now); err != nil {
				return err
			} else if ok {
				ids = append(ids, is.ID)
			}
		}
		ok, err := r.move(ctx, root.ID, store.IssuerRetiring, store.IssuerRetired, now)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		ids = append(ids, root.ID)
		res.Retired = append(res.Retired, ids...)
		if err := r.audit(ctx, "retire", root.ID, "system", "", map[string]any{"retired": ids}, now); err != nil {
			return err
		}
		r.d.Log.InfoContext(ctx, "root retired", "issuer", root.ID, "retired", ids)
	}
	return nil
}

// move is a conditional state change; ok is false if another replica moved
// the issuer first.
func (r *Rotator) move(ctx context.Context, id string, from, to store.IssuerState, now time.Time) (bool, error) {
	err := r.d.Store.SetIssuerState(ctx, id, from, to, now)
	if errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("issuer: moving %q from %s to %s: %w", id, from, to, err)
	}
	return true, nil
}

// isCrossOf reports whether x is a cross-certificate of inter: same subject
// and key, another issuer.
func isCrossOf(x, inter store.Issuer) bool {
	for _, der := range crossCertificates([]store.Issuer{x}, inter) {
		if string(der) == string(x.CertDER) {
			return true
		}
	}
	return false
}
