package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// ErrNothingPrepared means Abandon found no prepared issuer (or not the one
// it was asked to abandon).
var ErrNothingPrepared = errors.New("issuer: no prepared issuer to abandon")

// AbandonOptions say what to abandon and who asks.
type AbandonOptions struct {
	// ID, when set, must name one of the prepared issuers: a guard against
	// abandoning a rotation other than the one the operator looked at.
	ID string
	// Actor and RequestID go into the audit entry; Actor defaults to "system".
	Actor, RequestID string
}

// AbandonResult is what Abandon did.
type AbandonResult struct {
	// Abandoned lists the issuers moved from prepared to retired.
	Abandoned []string
	// KeysDeleted lists the key URIs deleted from the key store; KeysLeft
	// those that could not be deleted (logged; delete them by hand).
	KeysDeleted, KeysLeft []string
	// Bundle is the latest bundle version after publishing.
	Bundle store.BundleVersion
}

// Abandon gives up the rotation in progress: every prepared issuer (a new
// root, its intermediate, a cross-certificate, or the leftovers of a failed
// rotation) becomes retired, with an "abandon" audit entry, in one
// transaction; then their keys are deleted from the key store (unless an
// issuer that is not abandoned names the same key) and the bundle is
// republished, so a prepared root leaves it. It holds the rotation lock, like
// Rotate. ErrNothingPrepared if nothing is prepared or o.ID is not prepared;
// ErrRotationInProgress if a Rotate is running.
func (r *Rotator) Abandon(ctx context.Context, o AbandonOptions) (AbandonResult, error) {
	if o.Actor == "" {
		o.Actor = "system"
	}
	ctx, release, err := r.lock(ctx)
	if err != nil {
		return AbandonResult{}, err
	}
	defer release()

	issuers, err := r.d.Store.ListIssuers(ctx)
	if err != nil {
		return AbandonResult{}, fmt.Errorf("issuer: abandon: listing issuers: %w", err)
	}
	var res AbandonResult
	var keys []string
	kept := map[string]bool{} // key URIs that issuers not abandoned still name
	for _, is := range issuers {
		if is.State != store.IssuerPrepared {
			if is.KeyURI != "" {
				kept[is.KeyURI] = true
			}
			continue
		}
		res.Abandoned = append(res.Abandoned, is.ID)
		if is.KeyURI != "" {
			keys = append(keys, is.KeyURI)
		}
	}
	if len(res.Abandoned) == 0 {
		return AbandonResult{}, ErrNothingPrepared
	}
	if o.ID != "" && !slices.Contains(res.Abandoned, o.ID) {
		return AbandonResult{}, fmt.Errorf("%w: %q is not prepared (prepared: %v)", ErrNothingPrepared, o.ID, res.Abandoned)
	}
	// A prepared intermediate may already have a delegated OCSP responder
	// (the publisher gives every non-retired intermediate one): its key goes
	// with the issuer.
	for _, id := range res.Abandoned {
		resp, err := r.d.Store.LatestOCSPResponder(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return AbandonResult{}, fmt.Errorf("issuer: abandon: reading %s's OCSP responder: %w", id, err)
		case resp.KeyURI != "":
			keys = append(keys, resp.KeyURI)
		}
	}
	keys = slices.DeleteFunc(keys, func(uri string) bool { return kept[uri] })

	now := r.d.Clock.Now()
	target := o.ID
	if target == "" {
		target = res.Abandoned[0]
	}
	e, err := auditEntry("abandon", target, o.Actor, o.RequestID, map[string]any{
		"abandoned": res.Abandoned, "keys": keys,
	}, now)
	if err != nil {
		return AbandonResult{}, err
	}
	if _, err := r.d.Store.AbandonIssuers(ctx, res.Abandoned, now, e); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return AbandonResult{}, fmt.Errorf("%w: an issuer changed state meanwhile: %w", ErrRotationInProgress, err)
		}
		return AbandonResult{}, fmt.Errorf("issuer: abandon: %w", err)
	}
	r.d.Log.WarnContext(ctx, "CA rotation abandoned", "issuers", res.Abandoned, "actor", o.Actor, "request_id", o.RequestID)

	// A responder recorded between the reads above and the commit (the
	// publisher runs on whichever replica leads, without the rotation lock)
	// is seen now: the store refuses responders for retired issuers and
	// serialises that check with the abandon.
	for _, id := range res.Abandoned {
		resp, err := r.d.Store.LatestOCSPResponder(ctx, id)
		if err == nil && resp.KeyURI != "" && !kept[resp.KeyURI] && !slices.Contains(keys, resp.KeyURI) {
			keys = append(keys, resp.KeyURI)
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			r.d.Log.ErrorContext(ctx, "abandon: could not re-read an OCSP responder; check the key store for its key",
				"issuer", id, "err", err)
		}
	}

	res.KeysLeft = r.discardKeys(context.WithoutCancel(ctx), keys, "rotation abandoned")
	for _, k := range keys {
		if !slices.Contains(res.KeysLeft, k) {
			res.KeysDeleted = append(res.KeysDeleted, k)
		}
	}
	pub, err := r.d.Bundles.Publish(ctx, bundle.PublishOptions{
		Actor: o.Actor, RequestID: o.RequestID, Reason: "abandon: " + target,
	})
	if err != nil {
		return res, fmt.Errorf("issuer: abandon: %v retired, but publishing the bundle failed (the next Tick retries): %w", res.Abandoned, err)
	}
	res.Bundle = pub.Version
	return res, nil
}
