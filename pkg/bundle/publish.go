package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Store is what publishing needs from persistence; store.Store satisfies it.
type Store interface {
	ListIssuers(ctx context.Context) ([]store.Issuer, error)
	AppendBundleVersion(ctx context.Context, prev int64, v store.BundleVersion, e store.AuditEntry) (store.BundleVersion, store.AuditEntry, error)
	LatestBundleVersion(ctx context.Context) (store.BundleVersion, error)
	GetBundleVersion(ctx context.Context, sequence int64) (store.BundleVersion, error)
	ListBundleVersions(ctx context.Context, before int64, limit int) ([]store.BundleVersion, error)
	// ListJWTKeys and AppendAudit serve rollback safety (rollback.go): the
	// JWT keys' states, and the audit entry of a refused rollback.
	ListJWTKeys(ctx context.Context) ([]store.JWTKey, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// JWTKeySource yields the JWT-SVID signing keys to publish. The JWT-SVID
// issuer implements it; until then Deps.JWTKeys is nil and no keys are
// published.
type JWTKeySource interface {
	JWTAuthorities(ctx context.Context) ([]JWTAuthority, error)
}

// Deps are the Publisher's collaborators. Store is required; a nil Clock is
// clock.Real{}, a nil Log discards, a nil JWTKeys publishes no JWT keys.
type Deps struct {
	Store   Store
	JWTKeys JWTKeySource
	Clock   clock.Clock
	Log     *slog.Logger
}

// Errors of publishing and rollback, tested with errors.Is. Store errors are
// wrapped with %w (store.ErrUnavailable stays recognisable).
var (
	// ErrNoBundle means no bundle version has been published yet.
	ErrNoBundle = errors.New("bundle: no bundle published")
	// ErrInvalidRollback means the rollback target is not an earlier stored
	// version (unknown, current or in the future).
	ErrInvalidRollback = errors.New("bundle: invalid rollback target")
)

// publishAttempts bounds retries after another replica published between our
// read of the latest version and our append.
const publishAttempts = 8

// raceBackoff waits a random time, growing with the attempt (up to 10 ms per
// attempt), before a publisher that lost a race recomputes: without it two
// replicas publishing in a tight loop can make the same one lose every time
// (seen under -race on a loaded machine). It returns ctx's error if ctx ends
// first. Real time, not the injected clock: it spaces database round trips.
func raceBackoff(ctx context.Context, attempt int) error {
	return clock.Sleep(ctx, rand.N(time.Duration(attempt)*10*time.Millisecond))
}

// Publisher computes the bundle from the issuers table and stores new
// versions. It holds no state; any number of replicas may publish at once.
type Publisher struct {
	st    Store
	jwt   JWTKeySource
	clock clock.Clock
	log   *slog.Logger
}

// NewPublisher checks d and fills defaults.
func NewPublisher(d Deps) (*Publisher, error) {
	if d.Store == nil {
		return nil, errors.New("bundle: Deps.Store is required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Publisher{st: d.Store, jwt: d.JWTKeys, clock: d.Clock, log: d.Log}, nil
}

// PublishOptions say who publishes and why.
type PublishOptions struct {
	// Actor and RequestID go into the audit entry; Actor defaults to "system".
	Actor, RequestID string
	// Reason is stored with the version; default "issuers changed".
	Reason string
	// Force publishes the computed bundle even while a rollback is pinned.
	Force bool
}

// PublishResult is the latest version after Publish.
type PublishResult struct {
	Version store.BundleVersion
	// Changed is true when this call stored Version.
	Changed bool
	// Pinned is true when the latest version is a rollback that automatic
	// publication left in place (the issuers have not changed since).
	Pinned bool
}

// Publish computes the bundle from the issuers (AnchorsOf) and the JWT keys
// and, if its content differs from the latest version's, stores it as the
// next version with a "publish" audit entry in the same transaction. If the
// latest version is a rollback and the issuers and keys are unchanged since
// it was made, nothing is published unless o.Force (see the package doc).
// Concurrent publishers on any replica are safe: a lost race is retried on
// the fresh state, so sequences never repeat and identical content is stored
// once.
func (p *Publisher) Publish(ctx context.Context, o PublishOptions) (PublishResult, error) {
	if o.Actor == "" {
		o.Actor = "system"
	}
	if o.Reason == "" {
		o.Reason = "issuers changed"
	}
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		latest, err := p.st.LatestBundleVersion(ctx)
		hasLatest := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return PublishResult{}, fmt.Errorf("bundle: publish: reading latest version: %w", err)
		}
		content, digest, err := p.compute(ctx)
		if err != nil {
			return PublishResult{}, err
		}
		if hasLatest {
			if latest.RolledBackFrom != 0 && !o.Force && latest.SourceDigest == digest {
				return PublishResult{Version: latest, Pinned: true}, nil
			}
			if bytes.Equal(latest.Content, content.Marshal()) {
				return PublishResult{Version: latest}, nil
			}
		}
		now := p.clock.Now()
		v := store.BundleVersion{
			CreatedAt: now, Content: content.Marshal(), Reason: o.Reason, Actor: o.Actor, SourceDigest: digest,
		}
		got, err := p.append(ctx, latest.Sequence, v, "publish", o.Actor, o.RequestID, content, 0, nil)
		if errors.Is(err, store.ErrConflict) {
			p.log.DebugContext(ctx, "bundle published concurrently, recomputing", "attempt", attempt)
			if err := raceBackoff(ctx, attempt); err != nil {
				return PublishResult{}, fmt.Errorf("bundle: publish: %w", err)
			}
			continue
		}
		if err != nil {
			return PublishResult{}, err
		}
		p.log.InfoContext(ctx, "trust bundle published", "sequence", got.Sequence,
			"anchors", len(content.X509Authorities), "jwt_keys", len(content.JWTAuthorities),
			"reason", o.Reason, "actor", o.Actor)
		return PublishResult{Version: got, Changed: true}, nil
	}
	return PublishResult{}, fmt.Errorf("bundle: publish: still racing after %d attempts: %w", publishAttempts, store.ErrConflict)
}

// AnchorPublishedSince tells since when the certificate der has been a trust
// anchor of every published version up to the latest: the CreatedAt of the
// oldest version of that unbroken run. ok is false if the latest version
// does not carry it (or nothing is published). Rotation uses it to activate
// a new issuer only after relying parties have had time to fetch its root.
func (p *Publisher) AnchorPublishedSince(ctx context.Context, der []byte) (since time.Time, ok bool, err error) {
	const page = 50
	before := int64(0)
	for {
		list, err := p.st.ListBundleVersions(ctx, before, page)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bundle: reading versions: %w", err)
		}
		for _, v := range list {
			c, err := ParseContent(v.Content)
			if err != nil {
				return time.Time{}, false, fmt.Errorf("bundle: version %d: %w", v.Sequence, err)
			}
			if !c.HasAnchor(der) {
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

// compute reads the issuers and JWT keys and builds the content and digest.
func (p *Publisher) compute(ctx context.Context) (Content, string, error) {
	issuers, err := p.st.ListIssuers(ctx)
	if err != nil {
		return Content{}, "", fmt.Errorf("bundle: listing issuers: %w", err)
	}
	var jwt []JWTAuthority
	if p.jwt != nil {
		if jwt, err = p.jwt.JWTAuthorities(ctx); err != nil {
			return Content{}, "", fmt.Errorf("bundle: JWT authorities: %w", err)
		}
	}
	anchors, err := AnchorsOf(issuers)
	if err != nil {
		return Content{}, "", err
	}
	c, err := NewContent(anchors, jwt)
	if err != nil {
		return Content{}, "", err
	}
	return c, SourceDigest(issuers, jwt), nil
}

// append stores v after prev with its audit entry.
// extra is added to the audit details.
func (p *Publisher) append(ctx context.Context, prev int64, v store.BundleVersion, action, actor, requestID string, c Content, from int64, extra map[string]any) (store.BundleVersion, error) {
	fps := make([]string, 0, len(c.X509Authorities))
	for _, der := range c.X509Authorities {
		h := sha256.Sum256(der)
		fps = append(fps, hex.EncodeToString(h[:]))
	}
	kids := make([]string, 0, len(c.JWTAuthorities))
	for _, k := range c.JWTAuthorities {
		kids = append(kids, k.KeyID)
	}
	details := map[string]any{
		"sequence": prev + 1, "previous": prev, "anchors_sha256": fps, "jwt_kids": kids, "reason": v.Reason,
	}
	if from != 0 {
		details["rolled_back_from"] = from
	}
	for k, x := range extra {
		details[k] = x
	}
	dj, err := json.Marshal(details)
	if err != nil {
		return store.BundleVersion{}, fmt.Errorf("bundle: encoding audit details: %w", err)
	}
	e := store.AuditEntry{
		Time: v.CreatedAt, Actor: actor, Action: action, Target: fmt.Sprintf("bundle/%d", prev+1),
		Decision: "allow", RequestID: requestID, Details: dj,
	}
	got, _, err := p.st.AppendBundleVersion(ctx, prev, v, e)
	if err != nil {
		return store.BundleVersion{}, fmt.Errorf("bundle: storing version %d: %w", prev+1, err)
	}
	return got, nil
}
