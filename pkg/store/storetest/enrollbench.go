package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/procstat"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// HistoryLoader is a store's bulk path (both stores have one).
type HistoryLoader interface {
	BulkLoadHistory(ctx context.Context, h store.History) error
}

// BenchEnrollmentWrites measures the store's work per enrollment as `ca
// serve` does it: MarkTokenUsed, RecordIssuance (grouped with the other
// callers'), the hold check after recording (one ActiveHold: an upper
// bound, since `ca serve` shares those reads between concurrent
// enrollments, hold.Holds.Recheck; the check before issuing answers from
// hold.Holds' snapshot), from 16 goroutines, against a store that already
// holds 20,000 certificates. The OCSP pre-sign's batched write is not in it
// (BenchPutOCSPResponses). It reports CPU per enrollment, not wall time (a
// shared machine makes wall time noise; an fsync's wait is not work):
// cpu-ns/op is this process's; with postgres set, pg-cpu-ns/op is the
// postgres processes' on this machine over the run (/proc, 10 ms ticks).
func BenchEnrollmentWrites(b *testing.B, s store.Store, postgres bool) {
	ctx := context.Background()
	loader, ok := s.(HistoryLoader)
	if !ok {
		b.Fatalf("%T has no BulkLoadHistory", s)
	}
	if err := s.InsertIssuer(ctx, rootIssuer("int")); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	cert := func() store.Certificate {
		n := seq.Add(1)
		created := t0.Add(time.Duration(n) * time.Millisecond)
		serial := randSerial()
		der := make([]byte, 700)
		copy(der, serial)
		repo := fmt.Sprintf("acme/repo-%d", n%500)
		return store.Certificate{
			Serial: serial, IssuerID: "int", SPIFFEID: fmt.Sprintf("spiffe://example.org/ci/%s/%d", repo, n%50),
			DNSNames:  []string{"a.internal"},
			NotBefore: created, NotAfter: created.Add(time.Hour), DER: der, PublicKeySHA256: randSerial() + randSerial(),
			Status:     store.CertActive,
			Provenance: json.RawMessage(`{"claims":{"repository":"` + repo + `","ref":"refs/heads/main"},"sub":"repo:` + repo + `","token_issuer":"github"}`),
			PolicyRule: "any-repo-ci", PolicyVersion: "sha256:policy", CreatedAt: created,
			Repository: repo, TokenIssuer: "github", Subject: "repo:" + repo,
		}
	}
	var h store.History
	for range 20000 {
		h.Certificates = append(h.Certificates, cert())
	}
	if err := loader.BulkLoadHistory(ctx, h); err != nil {
		b.Fatal(err)
	}
	notHeld := func(c store.Certificate) error {
		if _, err := s.ActiveHold(ctx, c.SPIFFEID, c.CreatedAt); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("hold check: %v", err)
		}
		return nil
	}
	b.SetParallelism(16 / min(16, max(1, runtime.GOMAXPROCS(0))))
	start, pgStart := testkit.ProcessCPU(), procstat.PostgresCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := cert()
			err := s.MarkTokenUsed(ctx, randSerial(), c.CreatedAt.Add(time.Hour), c.CreatedAt)
			if err == nil {
				_, err = s.RecordIssuance(ctx, c, store.AuditEntry{Time: c.CreatedAt, Actor: c.SPIFFEID, Action: "issue",
					Target: c.Serial, Decision: "allow", PolicyVersion: "sha256:policy", RequestID: "req-" + c.Serial,
					Details: json.RawMessage(`{"rule":"any-repo-ci"}`)})
			}
			if err == nil {
				err = notHeld(c)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((testkit.ProcessCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if postgres {
		b.ReportMetric((procstat.PostgresCPU()-pgStart)*1e9/float64(b.N), "pg-cpu-ns/op")
	}
}
