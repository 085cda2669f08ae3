package lifecycle

import (
	"context"
	"time"
)

// State is where a key is in its lifecycle. store.IssuerState and
// store.JWTKeyState hold the same strings.
type State string

// The states, in order. A key only moves forward: prepared -> active ->
// retiring -> retired; a key that is given up (an abandoned rotation, an
// emergency) goes to retired directly.
const (
	// Prepared: published in the trust bundle, not yet signing.
	Prepared State = "prepared"
	// Active: signing.
	Active State = "active"
	// Retiring: no longer signing, still published until what it signed
	// has expired.
	Retiring State = "retiring"
	// Retired: gone from the bundle.
	Retired State = "retired"
)

// Rule is the timing of the lifecycle.
type Rule struct {
	// Lead is how long a prepared key must have been published before it
	// becomes active (pkg/issuer: RotationConfig.Overlap; pkg/jwtkeys:
	// Config.PublishLead), so that relying parties know it before they see
	// anything it signed.
	Lead time.Duration
	// MaxTTL plus Grace is how long a retiring key stays published after it
	// stopped signing: nothing it signed lives longer than MaxTTL, and Grace
	// covers replicas that still sign with it until they reload.
	MaxTTL, Grace time.Duration
	// RotateEvery, when positive, is how long a key is active before its
	// successor takes over; the successor is prepared Lead before that.
	// Zero: rotation is by operator only.
	RotateEvery time.Duration
}

// Key is what a Rule reads of one key. A zero time is "not known" where
// the field says so.
type Key struct {
	State State
	// Published says the latest published bundle carries the key (or the
	// anchor it chains to), and every version since PublishedSince has.
	Published      bool
	PublishedSince time.Time
	// Created, if not zero, is the earliest time the key counts as
	// published from: it must exist for Lead too.
	Created time.Time
	// ActiveSince is when the key became active.
	ActiveSince time.Time
	// RetiringSince is when the key stopped signing.
	RetiringSince time.Time
	// LastExpiry, if not zero, is when the last thing the key signed
	// expires; the key is not retired before it.
	LastExpiry time.Time
}

// Change is a move a Rule finds due for a key.
type Change int

// The changes Due reports.
const (
	// None: nothing is due.
	None Change = iota
	// Activate: the prepared key becomes active (and the key it replaces,
	// retiring).
	Activate
	// Retire: the retiring key becomes retired.
	Retire
	// PrepareSuccessor: the active key's successor is to be prepared now
	// (only with RotateEvery).
	PrepareSuccessor
)

// String names the change, for logs and test failures.
func (c Change) String() string {
	switch c {
	case Activate:
		return "activate"
	case Retire:
		return "retire"
	case PrepareSuccessor:
		return "prepare successor"
	default:
		return "none"
	}
}

// ActivateAt is the earliest time a prepared k becomes active: Lead after
// it was first published (and created); ok is false while the latest
// bundle does not carry it.
func (r Rule) ActivateAt(k Key) (at time.Time, ok bool) {
	if !k.Published {
		return time.Time{}, false
	}
	since := k.PublishedSince
	if k.Created.After(since) {
		since = k.Created
	}
	return since.Add(r.Lead), true
}

// RetireAt is the earliest time a retiring k becomes retired: MaxTTL plus
// Grace after it stopped signing, and not before LastExpiry.
func (r Rule) RetireAt(k Key) time.Time {
	at := k.RetiringSince.Add(r.MaxTTL + r.Grace)
	if k.LastExpiry.After(at) {
		at = k.LastExpiry
	}
	return at
}

// SuccessorAt is the earliest time the successor of an active k is
// prepared: Lead before k has been active for RotateEvery. ok is false
// without RotateEvery.
func (r Rule) SuccessorAt(k Key) (at time.Time, ok bool) {
	if r.RotateEvery <= 0 {
		return time.Time{}, false
	}
	return k.ActiveSince.Add(r.RotateEvery - r.Lead), true
}

// Due is the transition rule: what is due for k at now. A prepared key is
// activated at ActivateAt, a retiring key retired at RetireAt, and an
// active key's successor prepared at SuccessorAt; a retired key never
// moves. An active key becomes retiring only when its successor is
// activated, which the caller does with the Activate it is given.
func (r Rule) Due(k Key, now time.Time) Change {
	switch k.State {
	case Prepared:
		if at, ok := r.ActivateAt(k); ok && !now.Before(at) {
			return Activate
		}
	case Retiring:
		if !now.Before(r.RetireAt(k)) {
			return Retire
		}
	case Active:
		if at, ok := r.SuccessorAt(k); ok && !now.Before(at) {
			return PrepareSuccessor
		}
	}
	return None
}

// Every calls tick at once and then every interval until ctx ends: the
// background loop of a rotation (Rotator.Run, Manager.Run). A tick that
// falls due while the previous one still runs is dropped, as with
// time.Ticker; tick reports its own failures.
func Every(ctx context.Context, interval time.Duration, tick func(ctx context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
