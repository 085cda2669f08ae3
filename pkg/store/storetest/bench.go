package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// BenchRecordIssuance measures RecordIssuance (certificate row plus audit
// append, one transaction) on an empty, migrated store.
func BenchRecordIssuance(b *testing.B, s store.Store) {
	ctx := context.Background()
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		c := leaf("root", "spiffe://example.org/bench", t0.Add(time.Duration(i)*time.Microsecond), time.Hour)
		if _, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchGetCertificate measures GetCertificate by serial among 1,000 rows.
func BenchGetCertificate(b *testing.B, s store.Store) {
	ctx := context.Background()
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		b.Fatal(err)
	}
	const rows = 1000
	serials := make([]string, rows)
	for i := range serials {
		c := leaf("root", "spiffe://example.org/bench", t0.Add(time.Duration(i)*time.Microsecond), time.Hour)
		if _, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt)); err != nil {
			b.Fatal(err)
		}
		serials[i] = c.Serial
	}
	i := 0
	for b.Loop() {
		if _, err := s.GetCertificate(ctx, serials[i%rows]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchRecordIssuanceParallel measures RecordIssuance from many goroutines
// at once (GOMAXPROCS x 8), the shape of an enrollment load: stores that
// group concurrent calls into one commit show it here.
func BenchRecordIssuanceParallel(b *testing.B, s store.Store) {
	ctx := context.Background()
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := leaf("root", "spiffe://example.org/bench", t0, time.Hour)
			if _, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
