package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// benchInventory records rows certificates of 50 identities, one a
// microsecond apart, and returns the time after the last.
func benchInventory(b *testing.B, s store.Store, rows int) time.Time {
	ctx := context.Background()
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		b.Fatal(err)
	}
	for i := range rows {
		c := leaf("root", fmt.Sprintf("spiffe://example.org/bench/%02d", i%50), t0.Add(time.Duration(i)*time.Microsecond), time.Hour)
		if _, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt)); err != nil {
			b.Fatal(err)
		}
	}
	return t0.Add(time.Duration(rows) * time.Microsecond)
}

// BenchListCertificates measures ListCertificates pages of 100 among 2,000
// rows: the newest active ones, and an identity prefix.
func BenchListCertificates(b *testing.B, s store.Store) {
	now := benchInventory(b, s, 2000)
	ctx := context.Background()
	for _, f := range []struct {
		name string
		f    store.CertificateFilter
	}{
		{"active newest first", store.CertificateFilter{Status: store.CertActive, Now: now, Limit: 100}},
		{"identity prefix", store.CertificateFilter{IdentityPrefix: "spiffe://example.org/bench/1", Limit: 100}},
	} {
		b.Run(f.name, func(b *testing.B) {
			for b.Loop() {
				page, _, err := s.ListCertificates(ctx, f.f)
				if err != nil || len(page) != 100 {
					b.Fatalf("ListCertificates: %d rows, %v; want 100", len(page), err)
				}
			}
		})
	}
}

// BenchDenials measures Denials over 2,000 denied decisions in 100 groups.
func BenchDenials(b *testing.B, s store.Store) {
	ctx := context.Background()
	for i := range 2000 {
		e := auditFor("enroll", fmt.Sprintf("w%d", i), t0.Add(time.Duration(i)*time.Millisecond))
		e.Decision, e.Actor, e.Reason = "deny", fmt.Sprintf("actor-%d", i%100), "policy_denied"
		if _, err := s.AppendAudit(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		groups, err := s.Denials(ctx, store.DenialQuery{Since: t0, Actions: []string{"enroll", "renew"}})
		if err != nil || len(groups) != 100 {
			b.Fatalf("Denials: %d groups, %v; want 100", len(groups), err)
		}
	}
}

// BenchRevokeMany measures RevokeMany of an identity's 20 active
// certificates (recording them is not timed).
func BenchRevokeMany(b *testing.B, s store.Store) {
	ctx := context.Background()
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		id := fmt.Sprintf("spiffe://example.org/revoke/%d", i)
		for range 20 {
			c := leaf("root", id, t0, time.Hour)
			if _, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt)); err != nil {
				b.Fatal(err)
			}
		}
		i++
		b.StartTimer()
		certs, _, err := s.RevokeMany(ctx, store.RevokeScope{SPIFFEID: id}, t0.Add(time.Minute), "keyCompromise", auditFor("revoke", id, t0.Add(time.Minute)))
		if err != nil || len(certs) != 20 {
			b.Fatalf("RevokeMany: %d revoked, %v; want 20", len(certs), err)
		}
	}
}
