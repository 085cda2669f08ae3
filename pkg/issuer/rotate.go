package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/lifecycle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Rotation in three steps, each safe to run on every replica at once (state
// changes are conditional updates; the loser of a race skips, only the
// winner audits):
//
//  1. Rotate prepares: a new intermediate key in the key store and its
//     certificate, signed by the current root (or, with Root, by a new root
//     that is itself prepared, plus a cross-certificate, see below), all in
//     state prepared, then publishes the bundle, which carries every
//     non-retired root, so a new root reaches relying parties now. Rotate
//     (and Abandon, which gives a prepared rotation up) run one at a time
//     across replicas, and record a generation whole or not at all.
//  2. Tick activates a prepared intermediate once its root has been in every
//     published bundle version for at least Overlap (and the intermediate
//     exists for as long): it and its prepared ancestors and
//     cross-certificates become active, the previously active intermediates
//     (and, after a root rotation, their root) become retiring. Load and
//     Current pick the newest active intermediate, so signing moves at once.
//  3. Tick retires a retiring intermediate once its last leaf has expired
//     (and at least MaxTTL plus Grace after it stopped being active, which
//     covers replicas that still signed with it until their next reload); a
//     retiring root is retired, with the cross-certificates it signed, once
//     no intermediate under it is left. Each change republishes the bundle,
//     so a retired root leaves it.
//
// When steps 2 and 3 are due is pkg/lifecycle's Rule, the one the JWT keys
// follow too; this package does the moves.
//
// Cross-signing on root rotation: the old root was created with pathlen 1,
// so a certificate for the new root signed by the old root would put two CA
// certificates under the old root and fail path-length checks (crypto/x509
// counts them). The cross-certificate is therefore issued for the new
// intermediate instead: same subject and key as the new intermediate, signed
// by the old root. Leaves of the new intermediate carry both certificates in
// their chain, and verify for a relying party that has only the old root
// (leaf, cross-certificate, old root) and for one that has only the new root
// (leaf, new intermediate, new root).

// Errors of rotation, tested with errors.Is.
var (
	// ErrRotationInProgress means a prepared issuer already exists (activate
	// or abandon it first), or another Rotate or Abandon is running on some
	// replica.
	ErrRotationInProgress = errors.New("issuer: a rotation is already in progress")
	// ErrOfflineRoot means the current root's key is not online, so a new
	// intermediate cannot be signed here; use the offline-root CSR flow.
	ErrOfflineRoot = errors.New("issuer: the current root is offline")
	// ErrNotReady means no prepared issuer has been published for the
	// overlap yet; Activate with Force overrides.
	ErrNotReady = errors.New("issuer: no prepared issuer is ready for activation")
)

// DefaultOverlap is RotationConfig.Overlap when zero.
const DefaultOverlap = time.Hour

// DefaultRetireGrace is RotationConfig.Grace when zero.
const DefaultRetireGrace = time.Minute

// RotationConfig tunes rotation.
type RotationConfig struct {
	// Overlap is how long a prepared issuer's root must have been published
	// in the bundle before the issuer is activated (default 1h). Make it at
	// least twice the bundle refresh hint.
	Overlap time.Duration
	// Grace is added to Config.MaxTTL after an intermediate stops being
	// active before it may be retired (default 1m): other replicas may sign
	// with it until they notice the activation (see Current).
	Grace time.Duration
}

// BundlePublisher is what rotation needs from trust-bundle publication;
// *bundle.Publisher satisfies it.
type BundlePublisher interface {
	Publish(ctx context.Context, o bundle.PublishOptions) (bundle.PublishResult, error)
	AnchorPublishedSince(ctx context.Context, der []byte) (since time.Time, ok bool, err error)
}

// RotationStore is what rotation needs from persistence; store.Store
// satisfies it.
type RotationStore interface {
	Store
	MaxLeafNotAfter(ctx context.Context, issuerID string) (time.Time, error)
	TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error)
	// LatestOCSPResponder finds the delegated OCSP responder key an
	// abandoned issuer may have been given (Abandon deletes it too).
	LatestOCSPResponder(ctx context.Context, issuerID string) (store.OCSPResponder, error)
	store.IssuerRotation
}

// RotatorDeps are the Rotator's collaborators. Keys, Store and Bundles are
// required; a nil Clock is clock.Real{}, a nil Log discards.
type RotatorDeps struct {
	Keys    KeyStore
	Store   RotationStore
	Bundles BundlePublisher
	Clock   clock.Clock
	Log     *slog.Logger
}

// Rotator runs CA rotation. It holds no state of its own.
type Rotator struct {
	d   RotatorDeps
	cfg Config
	rc  RotationConfig
}

// NewRotator validates cfg and rc and checks d.
func NewRotator(d RotatorDeps, cfg Config, rc RotationConfig) (*Rotator, error) {
	switch {
	case d.Keys == nil:
		return nil, errors.New("issuer: RotatorDeps.Keys is required")
	case d.Store == nil:
		return nil, errors.New("issuer: RotatorDeps.Store is required")
	case d.Bundles == nil:
		return nil, errors.New("issuer: RotatorDeps.Bundles is required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rc.Overlap == 0 {
		rc.Overlap = DefaultOverlap
	}
	if rc.Grace == 0 {
		rc.Grace = DefaultRetireGrace
	}
	if rc.Overlap < 0 || rc.Grace < 0 {
		return nil, &ConfigError{Field: "Overlap", Problem: "must not be negative"}
	}
	return &Rotator{d: d, cfg: cfg, rc: rc}, nil
}

// RotateOptions say what to rotate and who asks.
type RotateOptions struct {
	// Root rotates the root too: a new self-signed root, a new intermediate
	// under it, and a cross-certificate of the new intermediate signed by
	// the old root.
	Root bool
	// Actor and RequestID go into the audit entry; Actor defaults to "system".
	Actor, RequestID string
}

// RotateResult is what Rotate prepared.
type RotateResult struct {
	Intermediate store.Issuer
	// Root and CrossCertificate are set by a root rotation.
	Root, CrossCertificate *store.Issuer
	// Bundle is the latest bundle version after publishing.
	Bundle store.BundleVersion
	// ActivateAfter is the earliest time Tick activates the new intermediate.
	ActivateAfter time.Time
}

// rotationLock names the leadership (a Postgres advisory lock across
// replicas) that Rotate and Abandon hold while they run, so that at most one
// of them generates keys and records issuers at a time.
const rotationLock = "issuer-rotation"

// Rotate prepares a new intermediate (and with o.Root a new root and a
// cross-certificate), in state prepared, and publishes the bundle.
//
// It is atomic and serialised: it holds the rotation lock across replicas
// while it runs (ErrRotationInProgress at once if another Rotate or Abandon
// holds it), generates and signs everything first, and then records the
// issuers and the "rotate" audit entry in one transaction
// (store.IssuerRotation), which is refused if an issuer is prepared. If
// anything fails before that transaction commits, nothing is recorded and
// the keys this call generated are deleted from the key store again (a key
// that cannot be deleted is logged, with its URI, at error level).
//
// ErrRotationInProgress if a prepared issuer exists, ErrNotInitialized
// without an active intermediate, ErrOfflineRoot if the signing root's key
// is not online. If publishing fails the issuers stay prepared (the error
// says so) and the next Tick publishes them.
func (r *Rotator) Rotate(ctx context.Context, o RotateOptions) (res RotateResult, err error) {
	if o.Actor == "" {
		o.Actor = "system"
	}
	ctx, release, err := r.lock(ctx)
	if err != nil {
		return RotateResult{}, err
	}
	defer release()

	issuers, err := r.d.Store.ListIssuers(ctx)
	if err != nil {
		return RotateResult{}, fmt.Errorf("issuer: rotate: listing issuers: %w", err)
	}
	for _, is := range issuers {
		if is.State == store.IssuerPrepared {
			return RotateResult{}, fmt.Errorf("%w: issuer %q is prepared (activate it, or abandon it)", ErrRotationInProgress, is.ID)
		}
	}
	cur, ok := signingIntermediate(issuers)
	if !ok {
		return RotateResult{}, ErrNotInitialized
	}
	_, oldRoot, err := chainOf(issuers, cur)
	if err != nil {
		return RotateResult{}, err
	}
	if oldRoot.KeyURI == "" {
		return RotateResult{}, fmt.Errorf("%w: root %q has no key here", ErrOfflineRoot, oldRoot.ID)
	}
	oldRootCert, err := x509.ParseCertificate(oldRoot.CertDER)
	if err != nil {
		return RotateResult{}, fmt.Errorf("issuer: rotate: parsing root %q: %w", oldRoot.ID, err)
	}
	oldRootKey, err := r.d.Keys.Find(ctx, oldRoot.KeyURI)
	if err != nil {
		return RotateResult{}, fmt.Errorf("issuer: rotate: finding key of root %q: %w", oldRoot.ID, err)
	}
	if !publicKeysEqual(oldRootKey.Signer.Public(), oldRootCert.PublicKey) {
		return RotateResult{}, fmt.Errorf("issuer: rotate: key %s does not match root %q", oldRoot.KeyURI, oldRoot.ID)
	}

	// Keys generated from here on are deleted again unless the rotation is
	// recorded.
	var made []string
	recorded := false
	defer func() {
		if !recorded {
			r.discardKeys(context.WithoutCancel(ctx), made, "rotation failed")
		}
	}()

	gen := nextGeneration(issuers)
	now := r.d.Clock.Now()
	parent, parentCert, parentSigner := oldRoot, oldRootCert, oldRootKey.Signer
	var recs []store.Issuer

	if o.Root {
		rec, cert, signer, err := r.newRoot(ctx, gen, now, &made)
		if err != nil {
			return RotateResult{}, err
		}
		res.Root = &rec
		recs = append(recs, rec)
		parent, parentCert, parentSigner = rec, cert, signer
	}

	name, err := keyName("int", now)
	if err != nil {
		return RotateResult{}, err
	}
	key, err := r.d.Keys.Generate(ctx, name, r.cfg.KeyType)
	if err != nil {
		return RotateResult{}, fmt.Errorf("issuer: rotate: generating intermediate key: %w", err)
	}
	made = append(made, key.URI)
	interCert, err := signIntermediate(r.cfg, gen, key.Signer.Public(), now, parentCert, parentSigner)
	if err != nil {
		return RotateResult{}, err
	}
	inter := issuerRecord(fmt.Sprintf("int-%d", gen), store.KindIntermediate, parent.ID, key.URI, interCert, now)
	inter.State = store.IssuerPrepared
	res.Intermediate = inter
	recs = append(recs, inter)

	if o.Root {
		// The cross-certificate: the new intermediate's subject and key,
		// signed by the old root. It has no key of its own here.
		xc, err := signIntermediate(r.cfg, gen, key.Signer.Public(), now, oldRootCert, oldRootKey.Signer)
		if err != nil {
			return RotateResult{}, err
		}
		if !bytes.Equal(xc.RawSubject, interCert.RawSubject) {
			return RotateResult{}, errors.New("issuer: rotate: cross-certificate subject differs from the intermediate's")
		}
		rec := issuerRecord(fmt.Sprintf("xc-%d", gen), store.KindIntermediate, oldRoot.ID, "", xc, now)
		rec.State = store.IssuerPrepared
		res.CrossCertificate = &rec
		recs = append(recs, rec)
	}

	details := map[string]any{
		"root_rotation": o.Root, "new_intermediate": inter.ID, "old_intermediate": cur.ID,
		"old_root": oldRoot.ID, "parent": parent.ID, "overlap": r.rc.Overlap.String(), "keys": made,
	}
	if res.Root != nil {
		details["new_root"] = res.Root.ID
		details["cross_certificate"] = res.CrossCertificate.ID
	}
	e, err := auditEntry("rotate", inter.ID, o.Actor, o.RequestID, details, now)
	if err != nil {
		return RotateResult{}, err
	}
	if _, err := r.d.Store.RecordRotation(ctx, recs, e); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return RotateResult{}, fmt.Errorf("%w: another rotation was recorded concurrently: %w", ErrRotationInProgress, err)
		}
		return RotateResult{}, fmt.Errorf("issuer: rotate: recording %s: %w", inter.ID, err)
	}
	recorded = true
	r.d.Log.InfoContext(ctx, "CA rotation prepared", "intermediate", inter.ID, "root_rotation", o.Root,
		"parent", parent.ID, "actor", o.Actor, "request_id", o.RequestID)

	pub, err := r.d.Bundles.Publish(ctx, bundle.PublishOptions{
		Actor: o.Actor, RequestID: o.RequestID, Reason: "rotate: prepared " + inter.ID,
	})
	if err != nil {
		return res, fmt.Errorf("issuer: rotate: %s prepared, but publishing the bundle failed (the next Tick retries): %w", inter.ID, err)
	}
	res.Bundle = pub.Version
	// Published now, and created now: the earliest activation.
	res.ActivateAfter, _ = r.rule().ActivateAt(lifecycle.Key{Published: true, PublishedSince: now, Created: now})
	return res, nil
}

// lock takes the rotation lock, or fails with ErrRotationInProgress if
// another Rotate or Abandon, on any replica, holds it. The lock is a store
// lease: the context it returns (use it for the work under the lock) ends
// if the lease is lost, e.g. when this replica is cut off from the
// database, so a partitioned replica stops instead of racing the next one.
func (r *Rotator) lock(ctx context.Context) (context.Context, func(), error) {
	lease, release, ok, err := r.d.Store.TryLease(ctx, rotationLock)
	if err != nil {
		return nil, nil, fmt.Errorf("issuer: taking the rotation lock: %w", err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: another rotation or abandon is running", ErrRotationInProgress)
	}
	return lease, release, nil
}

// discardKeys deletes keys no recorded issuer names. A key that cannot be
// deleted is logged with its URI, so an operator can remove it by hand.
func (r *Rotator) discardKeys(ctx context.Context, uris []string, why string) (left []string) {
	for _, uri := range uris {
		if err := r.d.Keys.Delete(ctx, uri); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			r.d.Log.ErrorContext(ctx, "could not delete an unused CA key; delete it from the key store by hand",
				"key", uri, "why", why, "err", err)
			left = append(left, uri)
			continue
		}
		r.d.Log.InfoContext(ctx, "unused CA key deleted", "key", uri, "why", why)
	}
	return left
}

// newRoot generates and self-signs a root of generation gen, in state
// prepared, appending its key's URI to made.
func (r *Rotator) newRoot(ctx context.Context, gen int, now time.Time, made *[]string) (store.Issuer, *x509.Certificate, crypto.Signer, error) {
	name, err := keyName("root", now)
	if err != nil {
		return store.Issuer{}, nil, nil, err
	}
	key, err := r.d.Keys.Generate(ctx, name, r.cfg.KeyType)
	if err != nil {
		return store.Issuer{}, nil, nil, fmt.Errorf("issuer: rotate: generating root key: %w", err)
	}
	*made = append(*made, key.URI)
	tmpl, err := caTemplate(r.cfg, fmt.Sprintf("%s Root CA %d", r.cfg.TrustDomain, gen), key.Signer.Public(), now, r.cfg.RootLifetime)
	if err != nil {
		return store.Issuer{}, nil, nil, err
	}
	tmpl.MaxPathLen = 1
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Signer.Public(), key.Signer)
	if err != nil {
		return store.Issuer{}, nil, nil, fmt.Errorf("issuer: rotate: signing root: %w", err)
	}
	cert, err := lintCA(der)
	if err != nil {
		return store.Issuer{}, nil, nil, err
	}
	rec := issuerRecord(fmt.Sprintf("root-%d", gen), store.KindRoot, "", key.URI, cert, now)
	rec.State = store.IssuerPrepared
	return rec, cert, key.Signer, nil
}

// signIntermediate signs an online intermediate of generation gen for pub
// under parent, and lints it.
func signIntermediate(cfg Config, gen int, pub crypto.PublicKey, now time.Time, parent *x509.Certificate, signer crypto.Signer) (*x509.Certificate, error) {
	tmpl, err := intermediateTemplate(cfg, gen, pub, now, parent.NotAfter)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("issuer: rotate: signing intermediate under %q: %w", parent.Subject.CommonName, err)
	}
	return lintCA(der)
}

var generationID = regexp.MustCompile(`^(?:root|int|xc)-(\d+)$`)

// nextGeneration is one more than both the highest generation in an issuer
// ID and the number of intermediates (the numbering Init and
// NewIntermediateCSR use), so the new IDs collide with nothing but a
// concurrent Rotate.
func nextGeneration(issuers []store.Issuer) int {
	n := 0
	for _, is := range issuers {
		if is.Kind == store.KindIntermediate {
			n++
		}
	}
	for _, is := range issuers {
		if m := generationID.FindStringSubmatch(is.ID); m != nil {
			if g, err := strconv.Atoi(m[1]); err == nil && g > n {
				n = g
			}
		}
	}
	return n + 1
}

func (r *Rotator) audit(ctx context.Context, action, target, actor, requestID string, details map[string]any, now time.Time) error {
	e, err := auditEntry(action, target, actor, requestID, details, now)
	if err != nil {
		return err
	}
	if _, err := r.d.Store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("issuer: %s %s done, but the audit append failed: %w", action, target, err)
	}
	return nil
}

// auditEntry builds an allowed lifecycle decision's audit entry.
func auditEntry(action, target, actor, requestID string, details map[string]any, now time.Time) (store.AuditEntry, error) {
	dj, err := json.Marshal(details)
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("issuer: encoding audit details: %w", err)
	}
	return store.AuditEntry{
		Time: now, Actor: actor, Action: action, Target: target, Decision: "allow", RequestID: requestID, Details: dj,
	}, nil
}

// crossCertificates returns the DER of the non-retired certificates that
// share rec's subject and key but were issued by someone else: the
// cross-certificates a root rotation made for rec.
func crossCertificates(issuers []store.Issuer, rec store.Issuer) [][]byte {
	own, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, is := range issuers {
		if is.ID == rec.ID || is.Kind != store.KindIntermediate || is.CertDER == nil || is.State == store.IssuerRetired {
			continue
		}
		c, err := x509.ParseCertificate(is.CertDER)
		if err != nil {
			continue
		}
		if bytes.Equal(c.RawSubject, own.RawSubject) && bytes.Equal(c.RawSubjectPublicKeyInfo, own.RawSubjectPublicKeyInfo) &&
			!bytes.Equal(c.RawIssuer, own.RawIssuer) {
			out = append(out, c.Raw)
		}
	}
	return out
}
