package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// enrolled is a recorded enrollment with the provenance columns set.
func enrolled(t *testing.T, s store.Store, at time.Time) store.Certificate {
	t.Helper()
	c := leaf("root", "spiffe://example.org/prod/payments", at, time.Hour)
	c.Repository, c.TokenIssuer, c.Subject = "acme/payments", "github", "repo:acme/payments:ref:refs/heads/main"
	mustRecord(t, s, c)
	return c
}

// renewal is an unrecorded renewal of prev whose provenance columns are
// deliberately wrong: the store must take them from prev.
func renewal(prev store.Certificate, at time.Time) store.Certificate {
	c := leaf("root", prev.SPIFFEID, at, time.Hour)
	c.RenewedFrom = prev.Serial
	c.Lineage, c.Repository, c.TokenIssuer, c.Subject = "bogus", "evil/repo", "other", "someone"
	c.LineageStartedAt = at
	return c
}

func testLineageInherited(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	first := enrolled(t, s, t0)
	r1 := renewal(first, t0.Add(time.Minute))
	mustRecord(t, s, r1)
	r2 := renewal(r1, t0.Add(2*time.Minute))
	mustRecord(t, s, r2)
	other := enrolled(t, s, t0.Add(3*time.Minute))

	for _, c := range []store.Certificate{r1, r2} {
		got, err := s.GetCertificate(ctx, c.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if got.Lineage != first.Serial || got.Repository != "acme/payments" || got.TokenIssuer != "github" ||
			got.Subject != first.Subject || !got.LineageStartedAt.Equal(us(t0)) || got.RenewedFrom != c.RenewedFrom {
			t.Errorf("renewal %s: lineage %q repository %q issuer %q subject %q started %v renewed_from %q; want the lineage of %s",
				c.Serial, got.Lineage, got.Repository, got.TokenIssuer, got.Subject, got.LineageStartedAt, got.RenewedFrom, first.Serial)
		}
	}
	for _, p := range []struct{ serial, by string }{{first.Serial, r1.Serial}, {r1.Serial, r2.Serial}, {r2.Serial, ""}, {other.Serial, ""}} {
		got, err := s.GetCertificate(ctx, p.serial)
		if err != nil {
			t.Fatal(err)
		}
		if got.SupersededBy != p.by {
			t.Errorf("%s superseded by %q, want %q", p.serial, got.SupersededBy, p.by)
		}
	}
	page, _, err := s.ListCertificates(ctx, store.CertificateFilter{Lineage: first.Serial})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := serials(page), []string{r2.Serial, r1.Serial, first.Serial}; !reflect.DeepEqual(got, want) {
		t.Errorf("lineage %s lists %v, want %v (newest first)", first.Serial, got, want)
	}
	page, _, err = s.ListCertificates(ctx, store.CertificateFilter{Repository: "acme/payments", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := serials(page), []string{other.Serial, r2.Serial}; !reflect.DeepEqual(got, want) {
		t.Errorf("repository page %v, want %v", got, want)
	}
}

func testRenewOnce(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	first := enrolled(t, s, t0)
	mustRecord(t, s, renewal(first, t0.Add(time.Minute)))
	before := len(allAudit(t, s))

	again := renewal(first, t0.Add(2*time.Minute))
	_, err := s.RecordIssuance(ctx, again, auditFor("renew", again.Serial, again.CreatedAt))
	wantErr(t, "renewing a superseded certificate", err, store.ErrSuperseded)
	if errors.Is(err, store.ErrConflict) {
		t.Errorf("ErrSuperseded must not look like a serial collision: %v", err)
	}
	_, err = s.GetCertificate(ctx, again.Serial)
	wantErr(t, "the refused renewal's row", err, store.ErrNotFound)
	if n := len(allAudit(t, s)); n != before {
		t.Errorf("the refused renewal appended %d audit entries", n-before)
	}

	orphan := renewal(store.Certificate{Serial: "abcdef0123", SPIFFEID: first.SPIFFEID}, t0)
	_, err = s.RecordIssuance(ctx, orphan, auditFor("renew", orphan.Serial, t0))
	wantErr(t, "renewing an unknown certificate", err, store.ErrNotFound)
}

func testRenewOnceConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	first := enrolled(t, s, t0)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c := renewal(first, t0.Add(time.Minute))
			_, errs[i] = s.RecordIssuance(ctx, c, auditFor("renew", c.Serial, c.CreatedAt))
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrSuperseded):
			t.Errorf("renewal %d: %v, want ErrSuperseded or success", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent renewals of one certificate succeeded, want exactly 1", won)
	}
	page, _, err := s.ListCertificates(ctx, store.CertificateFilter{Lineage: first.Serial})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 {
		t.Errorf("lineage holds %d certificates, want 2", len(page))
	}
	verifyChain(t, allAudit(t, s))
}

func testRevokeMany(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	first := enrolled(t, s, t0)
	r1 := renewal(first, t0.Add(time.Minute))
	mustRecord(t, s, r1)
	r2 := renewal(r1, t0.Add(2*time.Minute))
	mustRecord(t, s, r2)
	other := enrolled(t, s, t0.Add(3*time.Minute))
	seq0, err := s.RevocationSeq(ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(10 * time.Minute)
	e := store.AuditEntry{Time: at, Actor: "ops", Action: "revoke", Decision: "allow", RequestID: "req-many"}

	certs, entries, err := s.RevokeMany(ctx, store.RevokeScope{Serial: r1.Serial, Descendants: true}, at, "keyCompromise", e)
	if err != nil {
		t.Fatalf("RevokeMany: %v", err)
	}
	want := []string{r1.Serial, r2.Serial}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if got := serials(certs); !reflect.DeepEqual(got, want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}
	if len(entries) != 2 {
		t.Fatalf("%d audit entries, want 2", len(entries))
	}
	for i, c := range certs {
		if c.Status != store.CertRevoked || c.RevocationReason != "keyCompromise" || !c.RevokedAt.Equal(us(at)) {
			t.Errorf("returned %s: status %s reason %q at %v", c.Serial, c.Status, c.RevocationReason, c.RevokedAt)
		}
		if entries[i].Target != c.Serial || entries[i].Action != "revoke" || entries[i].Seq == 0 {
			t.Errorf("audit entry %d: %+v, want target %s", i, entries[i], c.Serial)
		}
	}
	if entries[1].Seq != entries[0].Seq+1 || !bytesEq(entries[1].PrevHash, entries[0].Hash) {
		t.Errorf("entries are not chained one after the other: %+v", entries)
	}
	verifyChain(t, allAudit(t, s))
	for serial, st := range map[string]store.CertStatus{first.Serial: store.CertActive, r1.Serial: store.CertRevoked,
		r2.Serial: store.CertRevoked, other.Serial: store.CertActive} {
		got, err := s.GetCertificate(ctx, serial)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != st {
			t.Errorf("%s is %s, want %s", serial, got.Status, st)
		}
	}
	if seq, err := s.RevocationSeq(ctx, "root"); err != nil || seq != seq0+2 {
		t.Errorf("revocation counter %d (%v), want %d: CRL publishers would miss the revocations", seq, err, seq0+2)
	}

	// Without Descendants only the one certificate; already revoked ones
	// are left alone.
	certs, _, err = s.RevokeMany(ctx, store.RevokeScope{Serial: first.Serial}, at.Add(time.Minute), "superseded", e)
	if err != nil || len(certs) != 1 || certs[0].Serial != first.Serial {
		t.Fatalf("RevokeMany of one: %v, %v", serials(certs), err)
	}
	certs, entries, err = s.RevokeMany(ctx, store.RevokeScope{Serial: first.Serial, Descendants: true}, at.Add(2*time.Minute), "keyCompromise", e)
	if err != nil || len(certs) != 0 || len(entries) != 0 {
		t.Errorf("RevokeMany of a revoked lineage: %v, %d entries, %v; want nothing", serials(certs), len(entries), err)
	}
	if got, _ := s.GetCertificate(ctx, r2.Serial); got.RevocationReason != "keyCompromise" || !got.RevokedAt.Equal(us(at)) {
		t.Errorf("an earlier revocation changed: %s at %v", got.RevocationReason, got.RevokedAt)
	}

	_, _, err = s.RevokeMany(ctx, store.RevokeScope{Serial: "abcdef0123", Descendants: true}, at, "keyCompromise", e)
	wantErr(t, "RevokeMany of an unknown serial", err, store.ErrNotFound)
	_, _, err = s.RevokeMany(ctx, store.RevokeScope{Serial: first.Serial, SPIFFEID: "spiffe://example.org/prod/payments"}, at, "keyCompromise", e)
	wantErr(t, "RevokeMany of a serial and an identity at once", err, store.ErrInvalidQuery)
	_, _, err = s.RevokeMany(ctx, store.RevokeScope{SPIFFEID: "spiffe://example.org/prod/payments", Descendants: true}, at, "keyCompromise", e)
	wantErr(t, "RevokeMany of an identity's descendants", err, store.ErrInvalidQuery)
	_, _, err = s.RevokeMany(ctx, store.RevokeScope{}, at, "keyCompromise", e)
	wantErr(t, "RevokeMany of nothing", err, store.ErrInvalidQuery)
}
