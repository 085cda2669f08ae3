package bundle_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// safetyRig is the production shape: Postgres, a SoftHSM token, an
// initialised CA, the JWT-SVID key manager and the rotator, all publishing
// through one bundle publisher. After newSafetyRig, version 1 holds root-1
// only and version 2 adds the first JWT key, which is active.
type safetyRig struct {
	t   *testing.T
	ctx context.Context
	clk *clock.Fake
	st  store.Store
	pub *bundle.Publisher
	jwt *jwtkeys.Manager
	rot *issuer.Rotator
	kid string // the first JWT key
}

func newSafetyRig(t *testing.T) *safetyRig {
	t.Helper()
	ctx := context.Background()
	keys, st := testkit.SoftHSMKeyStore(t), testkit.Postgres(t)
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	cfg := cafixture.New(t, keys, st, clk, nil).Config
	pub, err := bundle.NewPublisher(bundle.Deps{Store: st, JWTKeys: jwtkeys.NewPublished(st), Clock: clk, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if v := mustPublish(t, pub, bundle.PublishOptions{Reason: "init"}).Version; v.Sequence != 1 {
		t.Fatalf("first version %d", v.Sequence)
	}
	mgr, err := jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: keys, Store: st, Bundles: pub, Clock: clk},
		jwtkeys.Config{RotateEvery: time.Hour, PublishLead: 10 * time.Minute, MaxTTL: 10 * time.Minute, Grace: time.Minute, Recheck: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	tick, err := mgr.Tick(ctx)
	if err != nil || len(tick.Activated) != 1 {
		t.Fatalf("first JWT key: %+v, %v", tick, err)
	}
	rot, err := issuer.NewRotator(issuer.RotatorDeps{Keys: keys, Store: st, Bundles: pub, Clock: clk}, cfg, issuer.RotationConfig{Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := &safetyRig{t: t, ctx: ctx, clk: clk, st: st, pub: pub, jwt: mgr, rot: rot, kid: tick.Activated[0]}
	if latest := r.latest(); latest.Sequence != 2 {
		t.Fatalf("the first JWT key was published as version %d, want 2", latest.Sequence)
	}
	return r
}

func (r *safetyRig) latest() store.BundleVersion {
	r.t.Helper()
	v, err := r.st.LatestBundleVersion(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// refused checks that rolling back to seq is refused as unsafe for each of
// the wanted problems, audited as a denial, and publishes nothing.
func (r *safetyRig) refused(seq int64, wantProblems ...string) {
	r.t.Helper()
	before := r.latest()
	r.clk.Advance(time.Second)
	_, err := r.pub.Rollback(r.ctx, bundle.RollbackOptions{ToSequence: seq, Actor: "admin", RequestID: "req-unsafe"})
	var unsafe *bundle.UnsafeRollbackError
	if !errors.As(err, &unsafe) || !errors.Is(err, bundle.ErrRollbackUnsafe) {
		r.t.Fatalf("Rollback(%d): %v; want an *UnsafeRollbackError", seq, err)
	}
	if len(unsafe.Problems) != len(wantProblems) {
		r.t.Errorf("problems %q; want %d: %q", unsafe.Problems, len(wantProblems), wantProblems)
	}
	for _, w := range wantProblems {
		if !slices.ContainsFunc(unsafe.Problems, func(p string) bool { return strings.Contains(p, w) }) {
			r.t.Errorf("problems %q; want one saying %q", unsafe.Problems, w)
		}
	}
	if after := r.latest(); after.Sequence != before.Sequence {
		r.t.Errorf("a refused rollback published version %d", after.Sequence)
	}
	e := r.lastAudit()
	if e.Action != "rollback" || e.Decision != "deny" || e.Reason != "rollback_unsafe" || e.Actor != "admin" || e.RequestID != "req-unsafe" {
		r.t.Errorf("audit of the refusal = %+v", e)
	}
}

// forced rolls back to seq with force and returns the audit details.
func (r *safetyRig) forced(seq int64) map[string]any {
	r.t.Helper()
	r.clk.Advance(time.Second)
	v, err := r.pub.Rollback(r.ctx, bundle.RollbackOptions{ToSequence: seq, Actor: "admin", Force: true})
	if err != nil {
		r.t.Fatalf("forced Rollback(%d): %v", seq, err)
	}
	if v.RolledBackFrom != seq {
		r.t.Errorf("forced rollback = %+v", v)
	}
	e := r.lastAudit()
	var d map[string]any
	if err := json.Unmarshal(e.Details, &d); err != nil || e.Decision != "allow" || d["forced"] != true {
		r.t.Fatalf("audit of the forced rollback = %+v (%v)", e, err)
	}
	if o, _ := d["overridden"].([]any); len(o) == 0 {
		r.t.Errorf("the forced rollback's audit does not say what it overrode: %s", e.Details)
	}
	return d
}

func (r *safetyRig) lastAudit() store.AuditEntry {
	r.t.Helper()
	entries, err := r.st.AuditEntries(r.ctx, 0, 1000)
	if err != nil || len(entries) == 0 {
		r.t.Fatalf("AuditEntries: %d, %v", len(entries), err)
	}
	return entries[len(entries)-1]
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestRollbackToTheFirstVersionWouldDropTheActiveJWTKey(t *testing.T) {
	r := newSafetyRig(t)
	r.refused(1, "drop the active JWT-SVID key "+r.kid)
	d := r.forced(1)
	if got := strs(d["jwt_kids_removed"]); !slices.Equal(got, []string{r.kid}) || len(strs(d["anchors_removed"])) != 0 {
		t.Errorf("forced rollback details %v; want the active kid removed and no anchor change", d)
	}
}

func TestRollbackAfterAnEmergencyJWTRotation(t *testing.T) {
	r := newSafetyRig(t)
	r.clk.Advance(time.Minute)
	res, err := r.jwt.Rotate(r.ctx, jwtkeys.RotateOptions{Emergency: true, Actor: "admin"})
	if err != nil || !slices.Equal(res.Retired, []string{r.kid}) {
		t.Fatalf("emergency rotation = %+v, %v", res, err)
	}
	// Version 2 has only the retired key: it would bring it back and drop
	// the active one.
	r.refused(2, "bring back the retired JWT-SVID key "+r.kid, "drop the active JWT-SVID key "+res.KeyID)
	d := r.forced(2)
	if !slices.Equal(strs(d["jwt_kids_added"]), []string{r.kid}) || !slices.Equal(strs(d["jwt_kids_removed"]), []string{res.KeyID}) {
		t.Errorf("forced rollback details %v", d)
	}
}

func TestRollbackPastARootRotation(t *testing.T) {
	r := newSafetyRig(t)
	r.clk.Advance(time.Minute)
	rot, err := r.rot.Rotate(r.ctx, issuer.RotateOptions{Root: true, Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	both := rot.Bundle.Sequence // root-1, root-2 and the JWT key
	if _, err := r.rot.Activate(r.ctx, issuer.ActivateOptions{Force: true, Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	xc := rot.CrossCertificate.ID

	// The new intermediate is active under root-2, but its
	// cross-certificate chains to root-1: version 2 still anchors its leaves.
	r.clk.Advance(time.Second)
	if _, err := r.pub.Rollback(r.ctx, bundle.RollbackOptions{ToSequence: 2, Actor: "admin"}); err != nil {
		t.Fatalf("Rollback to root-1 only, with the cross-certificate active: %v", err)
	}
	e := r.lastAudit()
	var d map[string]any
	_ = json.Unmarshal(e.Details, &d)
	if e.Action != "rollback" || d["forced"] != false || len(strs(d["anchors_removed"])) != 1 || len(strs(d["anchors_added"])) != 0 {
		t.Errorf("rollback audit %+v %s; want one anchor removed, none added, not forced", e, e.Details)
	}
	if _, err := r.pub.Publish(r.ctx, bundle.PublishOptions{Force: true, Actor: "admin"}); err != nil {
		t.Fatal(err)
	}

	// Once the cross-certificate is retired, nothing in version 2 anchors
	// the active intermediate.
	if err := r.st.SetIssuerState(r.ctx, xc, store.IssuerActive, store.IssuerRetired, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, r.pub, bundle.PublishOptions{})
	r.refused(2, "leave the leaves of the active issuer "+rot.Intermediate.ID+" without a trust anchor")

	// With root-1 retired too, a version that still has it would bring it
	// back, even one that also anchors the active intermediate.
	if err := r.st.SetIssuerState(r.ctx, "root-1", store.IssuerRetiring, store.IssuerRetired, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, r.pub, bundle.PublishOptions{})
	r.refused(both, "bring back the retired root root-1")
	r.refused(2, "bring back the retired root root-1", "without a trust anchor")
	r.forced(both)
}
