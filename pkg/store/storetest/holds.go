package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunHolds runs the identity-revocation and hold conformance tests
// (RevokeMany with a SPIFFE ID scope, and store.HoldStore). open is as for
// Run.
func RunHolds(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"revoking an identity revokes its unexpired active certificates, each audited", testRevokeIdentity},
		{"revoking an identity is all or nothing", testRevokeIdentityAtomic},
		{"revoke many refuses an empty scope, a mixed scope and no time", testRevokeManyScopes},
		{"holds apply until they end or are released", testHolds},
		{"releasing holds is audited and needs a hold in force", testReleaseHolds},
		{"malformed holds are refused", testHoldInvalid},
	}
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

func testRevokeIdentity(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	mustIssuer(t, s, "b")
	const id = "spiffe://example.org/prod/payments"
	live1 := leaf("a", id, t0, 3*time.Hour)
	live2 := leaf("b", id, t0.Add(time.Minute), 3*time.Hour)
	expired := leaf("a", id, t0, time.Hour)
	already := leaf("a", id, t0, 3*time.Hour)
	prefix := leaf("a", id+"-canary", t0, 3*time.Hour)
	child := leaf("a", id+"/child", t0, 3*time.Hour)
	for _, c := range []store.Certificate{live1, live2, expired, already, prefix, child} {
		mustRecord(t, s, c)
	}
	earlier := t0.Add(10 * time.Minute)
	mustRevoke(t, s, already, earlier, "superseded")
	seqA, _ := s.RevocationSeq(ctx, "a")
	seqB, _ := s.RevocationSeq(ctx, "b")
	before := allAudit(t, s)

	at := t0.Add(2 * time.Hour) // expired has ended; live1, live2 have not
	e := auditFor("revoke", "", at)
	e.Actor = "corp-idp:alice"
	certs, entries, err := s.RevokeMany(ctx, store.RevokeScope{SPIFFEID: id}, at, "keyCompromise", e)
	if err != nil {
		t.Fatalf("RevokeMany: %v", err)
	}
	want := map[string]bool{live1.Serial: true, live2.Serial: true}
	if len(certs) != 2 || len(entries) != 2 {
		t.Fatalf("RevokeMany revoked %d certificates with %d entries, want 2 and 2 (expired, already revoked and other identities left alone)", len(certs), len(entries))
	}
	if certs[0].Serial > certs[1].Serial {
		t.Errorf("certificates not ordered by serial: %s, %s", certs[0].Serial, certs[1].Serial)
	}
	for i, c := range certs {
		if !want[c.Serial] {
			t.Errorf("revoked %s, which the scope does not select", c.Serial)
		}
		if c.Status != store.CertRevoked || !c.RevokedAt.Equal(us(at)) || c.RevocationReason != "keyCompromise" || c.SPIFFEID != id {
			t.Errorf("returned record %+v is not revoked at %v for keyCompromise", c, us(at))
		}
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil || got.Status != store.CertRevoked || got.RevocationReason != "keyCompromise" {
			t.Errorf("stored record of %s = %+v, %v", c.Serial, got, err)
		}
		en := entries[i]
		if en.Target != c.Serial || en.Action != "revoke" || en.Actor != "corp-idp:alice" || en.Seq == 0 {
			t.Errorf("entry %d = %+v, want a revoke entry by the actor targeting %s", i, en, c.Serial)
		}
	}
	after := allAudit(t, s)
	if len(after) != len(before)+2 {
		t.Fatalf("audit log grew by %d entries, want 2", len(after)-len(before))
	}
	verifyChain(t, after)
	for _, keep := range []store.Certificate{expired, prefix, child} {
		got, err := s.GetCertificate(ctx, keep.Serial)
		if err != nil || got.Status != store.CertActive {
			t.Errorf("%s (%s) = %v, %v; want untouched", keep.Serial, keep.SPIFFEID, got.Status, err)
		}
	}
	got, _ := s.GetCertificate(ctx, already.Serial)
	if got.RevocationReason != "superseded" || !got.RevokedAt.Equal(us(earlier)) {
		t.Errorf("the earlier revocation changed: %+v", got)
	}
	// The CRL counters moved in the same transaction, once per revocation.
	if n, _ := s.RevocationSeq(ctx, "a"); n != seqA+1 {
		t.Errorf("issuer a counter = %d, want %d", n, seqA+1)
	}
	if n, _ := s.RevocationSeq(ctx, "b"); n != seqB+1 {
		t.Errorf("issuer b counter = %d, want %d", n, seqB+1)
	}
	// Again: nothing left to revoke is not an error, and appends nothing.
	certs, entries, err = s.RevokeMany(ctx, store.RevokeScope{SPIFFEID: id}, at.Add(time.Second), "keyCompromise", e)
	if err != nil || len(certs) != 0 || len(entries) != 0 {
		t.Errorf("second RevokeMany = %d certs, %d entries, %v; want none, nil", len(certs), len(entries), err)
	}
	if n := len(allAudit(t, s)); n != len(after) {
		t.Errorf("an empty bulk revocation appended %d entries", n-len(after))
	}
}

func testRevokeIdentityAtomic(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	const id = "spiffe://example.org/atomic"
	c1, c2 := leaf("a", id, t0, time.Hour), leaf("a", id, t0, time.Hour)
	mustRecord(t, s, c1)
	mustRecord(t, s, c2)
	before := allAudit(t, s)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.RevokeMany(cctx, store.RevokeScope{SPIFFEID: id}, t0.Add(time.Minute), "keyCompromise", auditFor("revoke", "", t0)); err == nil {
		t.Fatal("RevokeMany with a cancelled context succeeded")
	}
	for _, c := range []store.Certificate{c1, c2} {
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil || got.Status != store.CertActive {
			t.Errorf("after a failed bulk revocation %s = %v, %v; want active", c.Serial, got.Status, err)
		}
	}
	if n := len(allAudit(t, s)); n != len(before) {
		t.Errorf("a failed bulk revocation appended %d entries", n-len(before))
	}
}

func testRevokeManyScopes(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	c := leaf("a", "spiffe://example.org/x", t0, time.Hour)
	mustRecord(t, s, c)
	e := auditFor("revoke", "", t0)
	for name, sc := range map[string]store.RevokeScope{
		"empty":                   {},
		"both a serial and an ID": {Serial: c.Serial, SPIFFEID: c.SPIFFEID},
	} {
		if _, _, err := s.RevokeMany(ctx, sc, t0.Add(time.Minute), "keyCompromise", e); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s scope: err = %v, want ErrInvalidQuery", name, err)
		}
	}
	if _, _, err := s.RevokeMany(ctx, store.RevokeScope{SPIFFEID: c.SPIFFEID}, time.Time{}, "keyCompromise", e); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("zero time: err = %v, want ErrInvalidQuery", err)
	}
	if got, _ := s.GetCertificate(ctx, c.Serial); got.Status != store.CertActive {
		t.Errorf("a refused scope revoked %s", c.Serial)
	}
}

func mustHold(t *testing.T, s store.Store, id string, placed time.Time, d time.Duration) store.Hold {
	t.Helper()
	h, e, err := s.PlaceHold(ctxT(t), store.Hold{
		SPIFFEID: id, Reason: "keyCompromise", PlacedBy: "corp-idp:alice", PlacedAt: placed, Until: placed.Add(d),
	}, auditFor("identity_hold", id, placed))
	if err != nil {
		t.Fatalf("PlaceHold(%s): %v", id, err)
	}
	if h.ID == 0 || e.Seq == 0 || e.Target != id {
		t.Fatalf("PlaceHold returned %+v, %+v", h, e)
	}
	return h
}

func testHolds(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const id, other = "spiffe://example.org/held", "spiffe://example.org/free"
	if _, err := s.ActiveHold(ctx, id, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActiveHold with none placed: %v", err)
	}
	short := mustHold(t, s, id, t0, time.Hour)
	long := mustHold(t, s, id, t0.Add(time.Minute), 24*time.Hour)
	otherHold := mustHold(t, s, other+"/x", t0, 2*time.Hour)
	want := store.Hold{ID: short.ID, SPIFFEID: id, Reason: "keyCompromise", PlacedBy: "corp-idp:alice", PlacedAt: us(t0), Until: us(t0.Add(time.Hour))}
	if short != want {
		t.Errorf("PlaceHold returned\n %+v\nwant\n %+v", short, want)
	}
	got, err := s.ActiveHold(ctx, id, t0.Add(30*time.Minute))
	if err != nil || got.ID != long.ID {
		t.Errorf("ActiveHold = %+v, %v; want the one ending last (%d)", got, err, long.ID)
	}
	if !got.InForce(t0.Add(30 * time.Minute)) {
		t.Errorf("active hold %+v not in force", got)
	}
	if _, err := s.ActiveHold(ctx, other, t0.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a hold on %s/x holds %s: %v", other, other, err)
	}
	// At the end instant a hold no longer applies.
	if _, err := s.ActiveHold(ctx, id, long.Until); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ActiveHold at its end: %v, want ErrNotFound", err)
	}
	list, err := s.ActiveHolds(ctx, t0.Add(90*time.Minute), 0)
	if err != nil {
		t.Fatalf("ActiveHolds: %v", err)
	}
	if len(list) != 2 || list[0].ID != otherHold.ID || list[1].ID != long.ID {
		t.Errorf("ActiveHolds after the short one ended = %+v; want the 2h then the 24h hold", list)
	}
	list, err = s.ActiveHolds(ctx, t0.Add(30*time.Minute), 1)
	if err != nil || len(list) != 1 || list[0].ID != short.ID {
		t.Errorf("ActiveHolds limit 1 = %+v, %v; want the soonest-ending", list, err)
	}
	if list, err := s.ActiveHolds(ctx, t0.Add(48*time.Hour), 0); err != nil || len(list) != 0 {
		t.Errorf("ActiveHolds after all ended = %+v, %v", list, err)
	}
}

func testReleaseHolds(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const id = "spiffe://example.org/held"
	h1 := mustHold(t, s, id, t0, time.Hour)
	h2 := mustHold(t, s, id, t0, 2*time.Hour)
	ended := mustHold(t, s, id, t0.Add(-2*time.Hour), time.Hour)
	before := allAudit(t, s)
	at := t0.Add(10 * time.Minute)
	list, e, err := s.ReleaseHolds(ctx, id, at, "corp-idp:bob", auditFor("identity_release", id, at))
	if err != nil {
		t.Fatalf("ReleaseHolds: %v", err)
	}
	if len(list) != 2 || list[0].ID != h1.ID || list[1].ID != h2.ID {
		t.Fatalf("released %+v, want holds %d and %d (not the ended %d)", list, h1.ID, h2.ID, ended.ID)
	}
	for _, h := range list {
		if !h.ReleasedAt.Equal(us(at)) || h.ReleasedBy != "corp-idp:bob" || h.InForce(at) {
			t.Errorf("released hold %+v", h)
		}
	}
	if e.Seq != before[len(before)-1].Seq+1 || e.Action != "identity_release" {
		t.Errorf("release entry %+v", e)
	}
	if _, err := s.ActiveHold(ctx, id, at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ActiveHold after release: %v", err)
	}
	after := allAudit(t, s)
	verifyChain(t, after)
	_, _, err = s.ReleaseHolds(ctx, id, at.Add(time.Minute), "corp-idp:bob", auditFor("identity_release", id, at))
	wantErr(t, "releasing again", err, store.ErrNotFound)
	if n := len(allAudit(t, s)); n != len(after) {
		t.Errorf("a refused release appended %d entries", n-len(after))
	}
	// A hold placed after a release applies again.
	h3 := mustHold(t, s, id, at.Add(time.Minute), time.Hour)
	if got, err := s.ActiveHold(ctx, id, at.Add(2*time.Minute)); err != nil || got.ID != h3.ID {
		t.Errorf("ActiveHold after a new hold = %+v, %v", got, err)
	}
}

func testHoldInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	e := auditFor("identity_hold", "x", t0)
	for name, h := range map[string]store.Hold{
		"no identity":        {Reason: "unspecified", PlacedBy: "a", PlacedAt: t0, Until: t0.Add(time.Hour)},
		"ending when placed": {SPIFFEID: "spiffe://example.org/x", PlacedBy: "a", PlacedAt: t0, Until: t0},
		"ending before":      {SPIFFEID: "spiffe://example.org/x", PlacedBy: "a", PlacedAt: t0, Until: t0.Add(-time.Second)},
		"no placement time":  {SPIFFEID: "spiffe://example.org/x", PlacedBy: "a", Until: t0},
	} {
		if _, _, err := s.PlaceHold(ctx, h, e); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s: err = %v, want ErrInvalidQuery", name, err)
		}
	}
	if n := len(allAudit(t, s)); n != 0 {
		t.Errorf("refused holds appended %d entries", n)
	}
}
