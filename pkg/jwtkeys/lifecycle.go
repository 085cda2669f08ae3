package jwtkeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/lifecycle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Audit actions of key rotation.
const (
	ActionRotate   = "jwt_rotate"   // a key was prepared (by schedule or operator), or an emergency rotation
	ActionActivate = "jwt_activate" // a key started signing
	ActionRetire   = "jwt_retire"   // a key left the bundle
)

// leadershipName is the store leadership Tick takes, so that one replica at
// a time generates keys.
const leadershipName = "jwt-keys"

// ManagerStore is what rotation needs from persistence; store.Store
// satisfies it.
type ManagerStore interface {
	store.JWTKeyStore
	ListBundleVersions(ctx context.Context, before int64, limit int) ([]store.BundleVersion, error)
	TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error)
}

// BundlePublisher publishes the trust bundle; *bundle.Publisher satisfies
// it (its JWT key source should be a Published over the same store).
type BundlePublisher interface {
	Publish(ctx context.Context, o bundle.PublishOptions) (bundle.PublishResult, error)
}

// ManagerDeps are the Manager's collaborators. Keys, Store and Bundles are
// required; a nil Clock is clock.Real{}, a nil Log discards.
type ManagerDeps struct {
	Keys    KeyStore
	Store   ManagerStore
	Bundles BundlePublisher
	Clock   clock.Clock
	Log     *slog.Logger
}

// Manager rotates the JWT-SVID signing keys. It holds no state of its own:
// every decision is made from the store, so any replica may run it.
type Manager struct {
	d   ManagerDeps
	cfg Config
}

// NewManager checks d and fills and validates cfg.
func NewManager(d ManagerDeps, cfg Config) (*Manager, error) {
	switch {
	case d.Keys == nil:
		return nil, errors.New("jwtkeys: ManagerDeps.Keys is required")
	case d.Store == nil:
		return nil, errors.New("jwtkeys: ManagerDeps.Store is required")
	case d.Bundles == nil:
		return nil, errors.New("jwtkeys: ManagerDeps.Bundles is required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Manager{d: d, cfg: cfg}, nil
}

// Config returns the effective configuration (defaults filled in).
func (m *Manager) Config() Config { return m.cfg }

// TickResult says what one Tick or Rotate changed, by kid.
type TickResult struct {
	Prepared, Activated, Retired []string
	// Skipped is true when another replica held the rotation leadership.
	Skipped bool
	// Bundle is the latest bundle version after the call.
	Bundle store.BundleVersion
}

func (r TickResult) changed() bool { return len(r.Prepared)+len(r.Activated)+len(r.Retired) > 0 }

// Tick is the scheduled step, safe to run on every replica (one at a time
// acts, by store leadership; the others skip): it creates the first key of
// a fresh CA as active; prepares the next key PublishLead before the active
// key's RotateEvery is up; activates a prepared key once it has been
// published for PublishLead (the active key becomes retiring); retires
// retiring keys once every token they signed has expired; and publishes
// the bundle, so that prepared keys are out and retired ones gone.
func (m *Manager) Tick(ctx context.Context) (TickResult, error) {
	var res TickResult
	// A lease, not a plain lock: its context ends if this replica loses
	// the database, so a cut-off replica stops generating keys before the
	// next leader starts.
	lease, release, ok, err := m.d.Store.TryLease(ctx, leadershipName)
	if err != nil {
		return res, fmt.Errorf("jwtkeys: tick: taking leadership: %w", err)
	}
	if !ok {
		res.Skipped = true
		return res, nil
	}
	defer release()
	ctx = lease

	// Publish first: a key prepared by Rotate whose publish failed goes out
	// now, and the activation check below sees the bundle as it is.
	if err := m.publish(ctx, &res, "system", "", "jwt keys: tick"); err != nil {
		return res, err
	}
	keys, err := m.d.Store.ListJWTKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("jwtkeys: tick: listing keys: %w", err)
	}
	active, prepared := find(keys, store.JWTKeyActive), find(keys, store.JWTKeyPrepared)
	now := m.d.Clock.Now()

	switch {
	case active == nil && prepared == nil:
		k, err := m.insertNew(ctx, store.JWTKeyActive, ActionActivate, "system", "", map[string]any{"first_key": true}, now)
		if err != nil {
			return res, err
		}
		res.Activated = append(res.Activated, k.KeyID)
	case active == nil:
		// Nothing signs, so nothing is gained by waiting.
		if err := m.activate(ctx, *prepared, store.JWTKeyRetiring, "system", "", map[string]any{"reason": "no active key"}, now); err != nil {
			return res, err
		}
		res.Activated = append(res.Activated, prepared.KeyID)
	case prepared == nil:
		if m.rule().Due(lifecycle.Key{State: lifecycle.Active, ActiveSince: active.ActivatedAt}, now) == lifecycle.PrepareSuccessor {
			k, err := m.insertNew(ctx, store.JWTKeyPrepared, ActionRotate, "system", "",
				map[string]any{"scheduled": true, "replaces": active.KeyID}, now)
			if err != nil {
				return res, err
			}
			res.Prepared = append(res.Prepared, k.KeyID)
		}
	default:
		since, ok, err := m.publishedSince(ctx, prepared.KeyID)
		if err != nil {
			return res, err
		}
		if m.rule().Due(lifecycle.Key{State: lifecycle.Prepared, Published: ok, PublishedSince: since}, now) == lifecycle.Activate {
			details := map[string]any{"previous": active.KeyID, "published_since": since}
			if err := m.activate(ctx, *prepared, store.JWTKeyRetiring, "system", "", details, now); err != nil {
				return res, err
			}
			res.Activated = append(res.Activated, prepared.KeyID)
		}
	}

	if err := m.retire(ctx, keys, now, &res); err != nil {
		return res, err
	}
	if res.changed() {
		if err := m.publish(ctx, &res, "system", "", "jwt keys changed"); err != nil {
			return res, err
		}
	}
	return res, nil
}

// retire moves retiring keys whose tokens have all expired to retired.
func (m *Manager) retire(ctx context.Context, keys []store.JWTKey, now time.Time, res *TickResult) error {
	for _, k := range keys {
		if k.State != store.JWTKeyRetiring {
			continue
		}
		if m.rule().Due(lifecycle.Key{State: lifecycle.Retiring, RetiringSince: k.RetiringAt}, now) != lifecycle.Retire {
			continue
		}
		details := map[string]any{"retiring_at": k.RetiringAt, "max_ttl": m.cfg.MaxTTL.String(), "grace": m.cfg.Grace.String()}
		_, err := m.d.Store.RetireJWTKey(ctx, k.KeyID, now, m.entry(ActionRetire, k.KeyID, "system", "", details, now))
		if errors.Is(err, store.ErrConflict) {
			continue // retired concurrently
		}
		if err != nil {
			return fmt.Errorf("jwtkeys: retiring %s: %w", k.KeyID, err)
		}
		m.d.Log.InfoContext(ctx, "JWT signing key retired", "kid", k.KeyID)
		res.Retired = append(res.Retired, k.KeyID)
	}
	return nil
}

// RotateOptions say who rotates and how.
type RotateOptions struct {
	// Emergency activates a new key now (a prepared key if there is one,
	// else a fresh one) and retires the active key at once: its tokens stop
	// verifying as soon as relying parties refresh the bundle. Without it,
	// Rotate prepares a key that Tick activates after PublishLead.
	Emergency bool
	// Actor and RequestID go into the audit entries; Actor defaults to
	// "system".
	Actor, RequestID string
}

// RotateResult is what Rotate did.
type RotateResult struct {
	TickResult
	// KeyID is the new (prepared or, in an emergency, active) key.
	KeyID string
	// ActivateAfter is the earliest time Tick activates it; zero in an
	// emergency.
	ActivateAfter time.Time
}

// Rotate is the operator's rotation (`ca jwt-keys rotate`): it prepares the
// next key now, audited as jwt_rotate, and publishes it; Tick activates it
// once it has been published for PublishLead. ErrRotationInProgress if a
// prepared key exists already. With o.Emergency, see RotateOptions.
func (m *Manager) Rotate(ctx context.Context, o RotateOptions) (RotateResult, error) {
	if o.Actor == "" {
		o.Actor = "system"
	}
	keys, err := m.d.Store.ListJWTKeys(ctx)
	if err != nil {
		return RotateResult{}, fmt.Errorf("jwtkeys: rotate: listing keys: %w", err)
	}
	active, prepared := find(keys, store.JWTKeyActive), find(keys, store.JWTKeyPrepared)
	now := m.d.Clock.Now()
	var res RotateResult
	details := map[string]any{"emergency": o.Emergency}
	if active != nil {
		details["replaces"] = active.KeyID
	}
	if prepared != nil && !o.Emergency {
		return res, fmt.Errorf("%w: key %s", ErrRotationInProgress, prepared.KeyID)
	}
	var next store.JWTKey
	if prepared != nil {
		next = *prepared
	} else {
		next, err = m.insertNew(ctx, store.JWTKeyPrepared, ActionRotate, o.Actor, o.RequestID, details, now)
		if err != nil {
			return res, err
		}
		res.Prepared = append(res.Prepared, next.KeyID)
	}
	res.KeyID = next.KeyID
	if o.Emergency {
		if err := m.activate(ctx, next, store.JWTKeyRetired, o.Actor, o.RequestID, details, now); err != nil {
			return res, err
		}
		res.Activated = append(res.Activated, next.KeyID)
		if active != nil {
			res.Retired = append(res.Retired, active.KeyID)
		}
		m.d.Log.WarnContext(ctx, "emergency JWT key rotation: the previous key is retired at once",
			"kid", next.KeyID, "retired", res.Retired, "actor", o.Actor)
	} else {
		res.ActivateAfter, _ = m.rule().ActivateAt(lifecycle.Key{Published: true, PublishedSince: now})
	}
	if err := m.publish(ctx, &res.TickResult, o.Actor, o.RequestID, "jwt keys: rotate"); err != nil {
		return res, fmt.Errorf("%w (key %s is recorded; the next Tick publishes it)", err, next.KeyID)
	}
	return res, nil
}

// Run calls Tick every interval until ctx ends, logging failures.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	lifecycle.Every(ctx, interval, func(ctx context.Context) {
		res, err := m.Tick(ctx)
		switch {
		case err != nil:
			m.d.Log.ErrorContext(ctx, "JWT key rotation tick failed", "err", err)
		case res.changed():
			m.d.Log.InfoContext(ctx, "JWT key rotation tick", "prepared", res.Prepared, "activated", res.Activated,
				"retired", res.Retired, "bundle_sequence", res.Bundle.Sequence)
		}
	})
}

// rule is the lifecycle timing of JWT keys: a key activates once it has
// been published for PublishLead, its successor is prepared PublishLead
// before it has signed for RotateEvery, and it retires MaxTTL plus Grace
// after it stopped signing.
func (m *Manager) rule() lifecycle.Rule {
	return lifecycle.Rule{Lead: m.cfg.PublishLead, MaxTTL: m.cfg.MaxTTL, Grace: m.cfg.Grace, RotateEvery: m.cfg.RotateEvery}
}

// Keys returns every recorded key, oldest first.
func (m *Manager) Keys(ctx context.Context) ([]store.JWTKey, error) {
	keys, err := m.d.Store.ListJWTKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("jwtkeys: listing keys: %w", err)
	}
	return keys, nil
}

// insertNew generates a key and records it in state with its audit entry.
// A lost race (another replica recorded a key in that state) is
// ErrRotationInProgress; the generated key then stays unused in the key
// store, and its URI is logged.
func (m *Manager) insertNew(ctx context.Context, state store.JWTKeyState, action, actor, requestID string, details map[string]any, now time.Time) (store.JWTKey, error) {
	k, err := newKey(ctx, m.d.Keys, m.cfg.KeyType, state, now)
	if err != nil {
		return store.JWTKey{}, err
	}
	d := map[string]any{"kid": k.KeyID, "alg": k.Alg, "key_uri": k.KeyURI, "state": string(state)}
	for key, v := range details {
		d[key] = v
	}
	_, err = m.d.Store.InsertJWTKey(ctx, k, m.entry(action, k.KeyID, actor, requestID, d, now))
	if errors.Is(err, store.ErrConflict) {
		m.d.Log.WarnContext(ctx, "JWT key recorded concurrently; the generated key stays unused", "key_uri", k.KeyURI)
		return store.JWTKey{}, fmt.Errorf("%w: another %s key was recorded concurrently", ErrRotationInProgress, state)
	}
	if err != nil {
		return store.JWTKey{}, fmt.Errorf("jwtkeys: recording key %s: %w", k.KeyID, err)
	}
	m.d.Log.InfoContext(ctx, "JWT signing key created", "kid", k.KeyID, "state", state, "alg", k.Alg, "actor", actor)
	return k, nil
}

// activate makes the prepared key k active; the active key becomes previous.
func (m *Manager) activate(ctx context.Context, k store.JWTKey, previous store.JWTKeyState, actor, requestID string, details map[string]any, now time.Time) error {
	d := map[string]any{"kid": k.KeyID, "previous_becomes": string(previous)}
	for key, v := range details {
		d[key] = v
	}
	_, err := m.d.Store.ActivateJWTKey(ctx, k.KeyID, now, previous, m.entry(ActionActivate, k.KeyID, actor, requestID, d, now))
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: key %s was activated concurrently", ErrRotationInProgress, k.KeyID)
	}
	if err != nil {
		return fmt.Errorf("jwtkeys: activating %s: %w", k.KeyID, err)
	}
	m.d.Log.InfoContext(ctx, "JWT signing key activated", "kid", k.KeyID, "previous_becomes", previous, "actor", actor)
	return nil
}

// publishedSince tells since when kid has been in every published bundle
// version up to the latest: the CreatedAt of the oldest version of that
// unbroken run. ok is false if the latest version does not carry it.
func (m *Manager) publishedSince(ctx context.Context, kid string) (since time.Time, ok bool, err error) {
	const page = 50
	before := int64(0)
	for {
		list, err := m.d.Store.ListBundleVersions(ctx, before, page)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("jwtkeys: reading bundle versions: %w", err)
		}
		for _, v := range list {
			c, err := bundle.ParseContent(v.Content)
			if err != nil {
				return time.Time{}, false, fmt.Errorf("jwtkeys: bundle version %d: %w", v.Sequence, err)
			}
			if !hasKid(c, kid) {
				return since, ok, nil
			}
			since, ok = v.CreatedAt, true
		}
		if len(list) < page {
			return since, ok, nil
		}
		before = list[len(list)-1].Sequence
	}
}

func hasKid(c bundle.Content, kid string) bool {
	for _, a := range c.JWTAuthorities {
		if a.KeyID == kid {
			return true
		}
	}
	return false
}

func (m *Manager) publish(ctx context.Context, res *TickResult, actor, requestID, reason string) error {
	pub, err := m.d.Bundles.Publish(ctx, bundle.PublishOptions{Actor: actor, RequestID: requestID, Reason: reason})
	if err != nil {
		return fmt.Errorf("jwtkeys: publishing the bundle: %w", err)
	}
	res.Bundle = pub.Version
	return nil
}

func (m *Manager) entry(action, kid, actor, requestID string, details map[string]any, now time.Time) store.AuditEntry {
	dj, err := json.Marshal(details)
	if err != nil {
		dj = nil // details are plain strings, bools and times; cannot fail
	}
	return store.AuditEntry{
		Time: now, Actor: actor, Action: action, Target: "jwt-key/" + kid, Decision: "allow",
		RequestID: requestID, Details: dj,
	}
}

// find returns the (at most one) key in state.
func find(keys []store.JWTKey, state store.JWTKeyState) *store.JWTKey {
	for i := range keys {
		if keys[i].State == state {
			return &keys[i]
		}
	}
	return nil
}
