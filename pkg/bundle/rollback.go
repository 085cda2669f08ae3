package bundle

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// ErrRollbackUnsafe means a rollback's content would break verification or
// resurrect a retired key; *UnsafeRollbackError says how. RollbackOptions.Force
// overrides it.
var ErrRollbackUnsafe = errors.New("bundle: rollback unsafe")

// UnsafeRollbackError lists what a refused rollback would have broken.
type UnsafeRollbackError struct {
	// ToSequence is the version the rollback would have republished.
	ToSequence int64
	// Problems are sentences, one per problem, naming issuer IDs, JWT kids
	// and certificate fingerprints (nothing secret).
	Problems []string
}

func (e *UnsafeRollbackError) Error() string {
	return fmt.Sprintf("bundle: rollback to version %d refused: it would %s (force to override)", e.ToSequence, strings.Join(e.Problems, "; "))
}

// Unwrap makes errors.Is(err, ErrRollbackUnsafe) true.
func (e *UnsafeRollbackError) Unwrap() error { return ErrRollbackUnsafe }

// RollbackOptions say what to roll back to and who asks.
type RollbackOptions struct {
	// ToSequence is the earlier version whose content is republished.
	ToSequence int64
	// Actor and RequestID go into the audit entry; Actor defaults to "system".
	Actor, RequestID string
	// Force republishes the content even when it is unsafe (see Rollback);
	// the audit entry records what was overridden.
	Force bool
}

// Rollback republishes the content of the earlier version o.ToSequence as a
// new version with a higher sequence, RolledBackFrom set, and a "rollback"
// audit entry whose details list the anchors and JWT kids it adds and
// removes. It changes no issuer state; the rollback stays pinned until the
// issuers change or someone publishes with Force.
//
// Unless o.Force, a rollback is refused with an *UnsafeRollbackError
// (ErrRollbackUnsafe), audited as a denied "rollback", when its content
// would leave an active intermediate's leaves without a trust anchor (no
// path from the intermediate, or one of its cross-certificates, to an anchor
// of the content), drop an active or retiring JWT-SVID key, or bring back a
// retired root or JWT key. ErrInvalidRollback if o.ToSequence is not an
// earlier stored version, ErrNoBundle if nothing was ever published.
func (p *Publisher) Rollback(ctx context.Context, o RollbackOptions) (store.BundleVersion, error) {
	if o.Actor == "" {
		o.Actor = "system"
	}
	toSequence := o.ToSequence
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		latest, err := p.st.LatestBundleVersion(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: %w", ErrNoBundle)
		}
		if err != nil {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: reading latest version: %w", err)
		}
		if toSequence <= 0 || toSequence >= latest.Sequence {
			return store.BundleVersion{}, fmt.Errorf("%w: %d is not earlier than the current version %d", ErrInvalidRollback, toSequence, latest.Sequence)
		}
		target, err := p.st.GetBundleVersion(ctx, toSequence)
		if errors.Is(err, store.ErrNotFound) {
			return store.BundleVersion{}, fmt.Errorf("%w: version %d does not exist", ErrInvalidRollback, toSequence)
		}
		if err != nil {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: reading version %d: %w", toSequence, err)
		}
		content, err := ParseContent(target.Content)
		if err != nil {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: version %d: %w", toSequence, err)
		}
		current, err := ParseContent(latest.Content)
		if err != nil {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: version %d: %w", latest.Sequence, err)
		}
		issuers, err := p.st.ListIssuers(ctx)
		if err != nil {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: listing issuers: %w", err)
		}
		keys, err := p.st.ListJWTKeys(ctx)
		if err != nil {
			return store.BundleVersion{}, fmt.Errorf("bundle: rollback: listing JWT keys: %w", err)
		}
		now := p.clock.Now()
		details := diffDetails(current, content)
		details["forced"] = o.Force
		problems := RollbackProblems(content, issuers, keys, now)
		if len(problems) > 0 {
			if !o.Force {
				return store.BundleVersion{}, p.refuseRollback(ctx, o, latest.Sequence, problems, details, now)
			}
			details["overridden"] = problems
		}
		_, digest, err := p.compute(ctx)
		if err != nil {
			return store.BundleVersion{}, err
		}
		v := store.BundleVersion{
			CreatedAt: now, Content: target.Content, Reason: "rollback", Actor: o.Actor,
			RolledBackFrom: toSequence, SourceDigest: digest,
		}
		got, err := p.append(ctx, latest.Sequence, v, "rollback", o.Actor, o.RequestID, content, toSequence, details)
		if errors.Is(err, store.ErrConflict) {
			if err := raceBackoff(ctx, attempt); err != nil {
				return store.BundleVersion{}, fmt.Errorf("bundle: rollback: %w", err)
			}
			continue
		}
		if err != nil {
			return store.BundleVersion{}, err
		}
		p.log.WarnContext(ctx, "trust bundle rolled back", "sequence", got.Sequence, "rolled_back_from", toSequence,
			"replaced", latest.Sequence, "forced", o.Force, "overridden", len(problems), "actor", o.Actor, "request_id", o.RequestID)
		return got, nil
	}
	return store.BundleVersion{}, fmt.Errorf("bundle: rollback: still racing after %d attempts: %w", publishAttempts, store.ErrConflict)
}

// refuseRollback audits a refused rollback and returns its error.
func (p *Publisher) refuseRollback(ctx context.Context, o RollbackOptions, latest int64, problems []string, details map[string]any, now time.Time) error {
	details["problems"] = problems
	details["to_sequence"] = o.ToSequence
	details["current"] = latest
	dj, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("bundle: encoding audit details: %w", err)
	}
	if _, err := p.st.AppendAudit(ctx, store.AuditEntry{
		Time: now, Actor: o.Actor, Action: "rollback", Target: fmt.Sprintf("bundle/%d", o.ToSequence),
		Decision: "deny", Reason: "rollback_unsafe", RequestID: o.RequestID, Details: dj,
	}); err != nil {
		return fmt.Errorf("bundle: rollback refused, but the audit append failed: %w", err)
	}
	p.log.WarnContext(ctx, "unsafe trust bundle rollback refused", "to_sequence", o.ToSequence,
		"problems", problems, "actor", o.Actor, "request_id", o.RequestID)
	return &UnsafeRollbackError{ToSequence: o.ToSequence, Problems: problems}
}

// RollbackProblems says why publishing c now would be unsafe, given the
// issuers and JWT keys as recorded (empty if it is safe):
//   - an active intermediate that signs (has a key) whose certificate, and
//     every cross-certificate of it, fails to chain (at now) to an anchor
//     of c through the non-retired intermediates: its leaves would not verify;
//   - an active or retiring JWT-SVID key missing from c: tokens it signed
//     would not verify;
//   - a retired root (not also recorded as a non-retired issuer) or a
//     retired JWT-SVID key in c: a key taken out of service would be trusted
//     again.
func RollbackProblems(c Content, issuers []store.Issuer, keys []store.JWTKey, now time.Time) []string {
	var problems []string
	roots := x509.NewCertPool()
	anchors, err := c.Anchors()
	if err != nil {
		return []string{"publish content whose anchors do not parse"}
	}
	for _, a := range anchors {
		roots.AddCert(a)
	}
	inters := x509.NewCertPool()
	type parsed struct {
		rec  store.Issuer
		cert *x509.Certificate
	}
	var all []parsed
	live := map[string]bool{} // DER of non-retired issuers
	for _, is := range issuers {
		if is.CertDER == nil {
			continue
		}
		cert, err := x509.ParseCertificate(is.CertDER)
		if err != nil {
			problems = append(problems, fmt.Sprintf("leave issuer %s unchecked (its certificate does not parse)", is.ID))
			continue
		}
		all = append(all, parsed{is, cert})
		if is.State != store.IssuerRetired {
			live[string(is.CertDER)] = true
			if is.Kind == store.KindIntermediate {
				inters.AddCert(cert)
			}
		}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, p := range all {
		if p.rec.Kind != store.KindIntermediate || p.rec.State != store.IssuerActive || p.rec.KeyURI == "" {
			continue
		}
		anchored := false
		for _, q := range all {
			if q.rec.Kind != store.KindIntermediate || q.rec.State == store.IssuerRetired ||
				string(q.cert.RawSubject) != string(p.cert.RawSubject) ||
				string(q.cert.RawSubjectPublicKeyInfo) != string(p.cert.RawSubjectPublicKeyInfo) {
				continue // neither p nor a cross-certificate of it
			}
			if _, err := q.cert.Verify(opts); err == nil {
				anchored = true
				break
			}
		}
		if !anchored {
			problems = append(problems, fmt.Sprintf("leave the leaves of the active issuer %s without a trust anchor", p.rec.ID))
		}
	}
	for _, p := range all {
		if p.rec.Kind == store.KindRoot && p.rec.State == store.IssuerRetired && c.HasAnchor(p.rec.CertDER) && !live[string(p.rec.CertDER)] {
			problems = append(problems, fmt.Sprintf("bring back the retired root %s (sha256 %s)", p.rec.ID, fingerprint(p.rec.CertDER)))
		}
	}
	published := map[string]bool{}
	for _, k := range c.JWTAuthorities {
		published[k.KeyID] = true
	}
	for _, k := range keys {
		switch {
		case (k.State == store.JWTKeyActive || k.State == store.JWTKeyRetiring) && !published[k.KeyID]:
			problems = append(problems, fmt.Sprintf("drop the %s JWT-SVID key %s", k.State, k.KeyID))
		case k.State == store.JWTKeyRetired && published[k.KeyID]:
			problems = append(problems, fmt.Sprintf("bring back the retired JWT-SVID key %s", k.KeyID))
		}
	}
	return problems
}

// diffDetails lists what publishing to instead of from adds and removes.
func diffDetails(from, to Content) map[string]any {
	added, removed := []string{}, []string{}
	for _, der := range to.X509Authorities {
		if !from.HasAnchor(der) {
			added = append(added, fingerprint(der))
		}
	}
	for _, der := range from.X509Authorities {
		if !to.HasAnchor(der) {
			removed = append(removed, fingerprint(der))
		}
	}
	kids := func(c Content) []string {
		out := make([]string, 0, len(c.JWTAuthorities))
		for _, k := range c.JWTAuthorities {
			out = append(out, k.KeyID)
		}
		return out
	}
	fromKids, toKids := kids(from), kids(to)
	kidsAdded, kidsRemoved := []string{}, []string{}
	for _, k := range toKids {
		if !slices.Contains(fromKids, k) {
			kidsAdded = append(kidsAdded, k)
		}
	}
	for _, k := range fromKids {
		if !slices.Contains(toKids, k) {
			kidsRemoved = append(kidsRemoved, k)
		}
	}
	return map[string]any{
		"anchors_added": added, "anchors_removed": removed,
		"jwt_kids_added": kidsAdded, "jwt_kids_removed": kidsRemoved,
	}
}

func fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}
