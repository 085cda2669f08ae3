package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// benchOCSPRows is how many certificates, each with a stored response, the
// OCSP benchmarks read among.
const benchOCSPRows = 1000

// benchOCSPResponses records benchOCSPRows leaves and a good response for
// each, and returns their serials.
func benchOCSPResponses(b *testing.B, s store.Store) []string {
	ctx := context.Background()
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		b.Fatal(err)
	}
	serials := make([]string, benchOCSPRows)
	rs := make([]store.OCSPResponse, 0, 100)
	for i := range serials {
		c := leaf("root", "spiffe://example.org/bench", t0.Add(time.Duration(i)*time.Microsecond), time.Hour)
		if _, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt)); err != nil {
			b.Fatal(err)
		}
		serials[i] = c.Serial
		rs = append(rs, store.OCSPResponse{Serial: c.Serial, ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), DER: make([]byte, 300)})
		if len(rs) == cap(rs) {
			if _, err := s.PutOCSPResponses(ctx, rs); err != nil {
				b.Fatal(err)
			}
			rs = rs[:0]
		}
	}
	return serials
}

// BenchGetOCSPResponse measures GetOCSPResponse by serial among 1,000
// stored responses: an OCSP responder's hot path.
func BenchGetOCSPResponse(b *testing.B, s store.Store) {
	ctx := context.Background()
	serials := benchOCSPResponses(b, s)
	i := 0
	for b.Loop() {
		if _, err := s.GetOCSPResponse(ctx, serials[i%len(serials)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchPutOCSPResponses measures a publisher's batch: PutOCSPResponses of
// 100 newer responses over stored ones.
func BenchPutOCSPResponses(b *testing.B, s store.Store) {
	ctx := context.Background()
	serials := benchOCSPResponses(b, s)
	rs := make([]store.OCSPResponse, 100)
	n := 0
	for b.Loop() {
		n++
		for j := range rs {
			at := t0.Add(time.Duration(n) * time.Second)
			rs[j] = store.OCSPResponse{Serial: serials[(n*len(rs)+j)%len(serials)], ThisUpdate: at, NextUpdate: at.Add(time.Hour), DER: make([]byte, 300)}
		}
		errs, err := s.PutOCSPResponses(ctx, rs)
		if err != nil {
			b.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
