package storetest

import (
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func testRecordIssuance(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	c := leaf("root", "spiffe://example.org/prod/payments", t0, time.Hour)
	c.Repository, c.TokenIssuer, c.Subject = "acme/payments", "github", "repo:acme/payments:ref:refs/heads/main"
	in := auditFor("issue", c.Serial, t0)
	e, err := s.RecordIssuance(ctx, c, in)
	if err != nil {
		t.Fatalf("RecordIssuance: %v", err)
	}
	if e.Seq != 1 || e.PrevHash != nil || e.Target != c.Serial || string(e.Details) != string(in.Details) {
		t.Errorf("first audit entry = %+v", e)
	}
	if h := store.AuditHash(nil, e); !bytesEq(h, e.Hash) {
		t.Errorf("returned hash %x, recomputed %x", e.Hash, h)
	}
	got, err := s.GetCertificate(ctx, c.Serial)
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	sameCert(t, got, c)

	bare := leaf("root", "spiffe://example.org/bare", t0, time.Hour)
	bare.DNSNames, bare.Provenance, bare.Status, bare.PolicyRule = nil, nil, "", ""
	mustRecord(t, s, bare)
	got, err = s.GetCertificate(ctx, bare.Serial)
	if err != nil {
		t.Fatal(err)
	}
	sameCert(t, got, bare)

	_, err = s.GetCertificate(ctx, "ffff")
	wantErr(t, "GetCertificate of an unknown serial", err, store.ErrNotFound)
}

func testDuplicateSerial(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	first := leaf("root", "spiffe://example.org/a", t0, time.Hour)
	mustRecord(t, s, first)
	dup := leaf("root", "spiffe://example.org/b", t0.Add(time.Minute), time.Hour)
	dup.Serial = first.Serial
	_, err := s.RecordIssuance(ctx, dup, auditFor("issue", dup.Serial, dup.CreatedAt))
	wantErr(t, "RecordIssuance with a taken serial", err, store.ErrConflict)
	got, err := s.GetCertificate(ctx, first.Serial)
	if err != nil {
		t.Fatal(err)
	}
	sameCert(t, got, first)
	if n := len(allAudit(t, s)); n != 1 {
		t.Errorf("audit log has %d entries after a refused duplicate, want 1", n)
	}
}

func testIssuanceAtomic(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	cases := []struct {
		name string
		mod  func(c *store.Certificate)
		want error
	}{
		{"a certificate of an unknown issuer is not found", func(c *store.Certificate) { c.IssuerID = "nobody" }, store.ErrNotFound},
		{"a certificate with an invalid status is refused", func(c *store.Certificate) { c.Status = "bogus" }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := leaf("root", "spiffe://example.org/x", t0, time.Hour)
			tc.mod(&c)
			_, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, t0))
			if err == nil {
				t.Fatal("RecordIssuance succeeded")
			}
			if tc.want != nil {
				wantErr(t, tc.name, err, tc.want)
			}
			_, err = s.GetCertificate(ctx, c.Serial)
			wantErr(t, "the failed certificate's row", err, store.ErrNotFound)
			if n := len(allAudit(t, s)); n != 0 {
				t.Errorf("audit log has %d entries after a failed issuance, want 0", n)
			}
		})
	}
	// A later successful issuance still starts the chain at 1.
	if e := mustRecord(t, s, leaf("root", "spiffe://example.org/y", t0, time.Hour)); e.Seq != 1 {
		t.Errorf("first successful issuance got seq %d, want 1", e.Seq)
	}
}

func testRevoke(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	c := leaf("root", "spiffe://example.org/a", t0, time.Hour)
	mustRecord(t, s, c)
	at := t0.Add(10 * time.Minute)

	got, e, err := s.RevokeCertificate(ctx, c.Serial, at, "keyCompromise", auditFor("revoke", c.Serial, at))
	if err != nil {
		t.Fatalf("RevokeCertificate: %v", err)
	}
	want := c
	want.Status, want.RevokedAt, want.RevocationReason = store.CertRevoked, at, "keyCompromise"
	sameCert(t, got, want)
	if e.Seq != 2 || e.Action != "revoke" {
		t.Errorf("revocation audit entry = %+v, want seq 2", e)
	}
	stored, _ := s.GetCertificate(ctx, c.Serial)
	sameCert(t, stored, want)

	later := at.Add(time.Minute)
	again, e2, err := s.RevokeCertificate(ctx, c.Serial, later, "superseded", auditFor("revoke", c.Serial, later))
	wantErr(t, "revoking twice", err, store.ErrConflict)
	sameCert(t, again, want) // the existing revocation, unchanged
	if e2.Seq != 0 {
		t.Errorf("a refused revocation returned audit entry %+v", e2)
	}
	stored, _ = s.GetCertificate(ctx, c.Serial)
	sameCert(t, stored, want)

	_, _, err = s.RevokeCertificate(ctx, "ffff", at, "keyCompromise", auditFor("revoke", "ffff", at))
	wantErr(t, "revoking an unknown serial", err, store.ErrNotFound)

	entries := allAudit(t, s)
	if len(entries) != 2 {
		t.Fatalf("audit log has %d entries, want issue + one revoke", len(entries))
	}
	verifyChain(t, entries)
}

func testRevokedCertificates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	mustIssuer(t, s, "other")
	now := t0.Add(2 * time.Hour)
	revoke := func(c store.Certificate) {
		t.Helper()
		if _, _, err := s.RevokeCertificate(ctx, c.Serial, c.CreatedAt.Add(time.Minute), "keyCompromise",
			auditFor("revoke", c.Serial, c.CreatedAt)); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := 0; i < 3; i++ { // revoked, valid at now: listed
		c := leaf("root", "spiffe://example.org/r", t0, 3*time.Hour)
		mustRecord(t, s, c)
		revoke(c)
		want = append(want, c.Serial)
	}
	expired := leaf("root", "spiffe://example.org/r", t0, time.Hour) // revoked, expired at now
	mustRecord(t, s, expired)
	revoke(expired)
	edge := leaf("root", "spiffe://example.org/r", t0, 2*time.Hour) // revoked, NotAfter == now
	mustRecord(t, s, edge)
	revoke(edge)
	mustRecord(t, s, leaf("root", "spiffe://example.org/a", t0, 3*time.Hour)) // active
	otherC := leaf("other", "spiffe://example.org/r", t0, 3*time.Hour)        // other issuer
	mustRecord(t, s, otherC)
	revoke(otherC)

	list, err := s.RevokedCertificates(ctx, "root", now)
	if err != nil {
		t.Fatalf("RevokedCertificates: %v", err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.Serial)
		if c.Status != store.CertRevoked || c.RevocationReason != "keyCompromise" || c.RevokedAt.IsZero() {
			t.Errorf("listed certificate is not a complete revoked record: %+v", c)
		}
	}
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RevokedCertificates = %v, want %v (by serial)", got, want)
	}
}
