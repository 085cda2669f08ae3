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
// holds 20,000 certificates, and each certificate's first OCSP response
// written as the pre-signing publisher writes them: PutOCSPResponses of up
// to 32 recorded certificates at a time, from one goroutine. It reports CPU per enrollment, not wall time (a
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
	recorded := make(chan store.Certificate, 1024)
	published := make(chan error, 1)
	go func() { published <- publishOCSP(ctx, s, recorded) }()
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
				recorded <- c
				err = notHeld(c)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	close(recorded)
	if err := <-published; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((testkit.ProcessCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if postgres {
		b.ReportMetric((procstat.PostgresCPU()-pgStart)*1e9/float64(b.N), "pg-cpu-ns/op")
	}
}

// publishOCSP writes a good OCSP response for each certificate received, in
// batches of what arrived, up to 32, as the pre-signing publisher does.
func publishOCSP(ctx context.Context, s store.Store, recorded <-chan store.Certificate) error {
	batch := make([]store.OCSPResponse, 0, 32)
	for c := range recorded {
		batch = append(batch[:0], ocspFor(c))
	fill:
		for len(batch) < cap(batch) {
			select {
			case c, ok := <-recorded:
				if !ok {
					break fill
				}
				batch = append(batch, ocspFor(c))
			default:
				break fill
			}
		}
		errs, err := s.PutOCSPResponses(ctx, batch)
		if err != nil {
			return err
		}
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func ocspFor(c store.Certificate) store.OCSPResponse {
	return store.OCSPResponse{Serial: c.Serial, IssuerID: c.IssuerID, ThisUpdate: c.CreatedAt,
		NextUpdate: c.CreatedAt.Add(time.Hour), CertNotAfter: c.NotAfter, DER: make([]byte, 470)}
}
