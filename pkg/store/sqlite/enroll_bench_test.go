package sqlite_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// BenchmarkEnrollmentWrites measures the group commit's cost per enrollment
// (one MarkTokenUsed, one RecordIssuance) from 16 goroutines against a file
// database that already holds 20,000 certificates, as CPU per enrollment
// (cpu-ns/op: the process's user and system time over the run, divided by
// b.N): wall time on a shared machine is noise, CPU is what issue 20 is about.
func BenchmarkEnrollmentWrites(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "ca.db")
	if err := storeopen.Migrate(ctx, "sqlite:"+path, "up"); err != nil {
		b.Fatal(err)
	}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.InsertIssuer(ctx, store.Issuer{ID: "int", Kind: store.KindRoot, KeyURI: "pkcs11:token=ca;object=int",
		CertDER: []byte{0x30, 0x82, 0x01, 0x00, 0x01}, SubjectKeyID: []byte{1, 2, 3, 4}, NotBefore: t0,
		NotAfter: t0.Add(10 * 365 * 24 * time.Hour), State: store.IssuerActive, CreatedAt: t0, UpdatedAt: t0}); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	cert := func() store.Certificate {
		n := seq.Add(1)
		created := t0.Add(time.Duration(n) * time.Millisecond)
		serial := randHex(16)
		der := make([]byte, 700)
		_, _ = rand.Read(der)
		repo := fmt.Sprintf("acme/repo-%d", n%500)
		return store.Certificate{
			Serial: serial, IssuerID: "int", SPIFFEID: fmt.Sprintf("spiffe://example.org/ci/%s/%d", repo, n%50),
			DNSNames:  []string{"a.internal"},
			NotBefore: created, NotAfter: created.Add(time.Hour), DER: der, PublicKeySHA256: randHex(32),
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
	if err := s.BulkLoadHistory(ctx, h); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16 / min(16, max(1, parallelProcs())))
	start := testkit.ProcessCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := cert()
			if err := s.MarkTokenUsed(ctx, randHex(16), c.CreatedAt.Add(time.Hour), c.CreatedAt); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.RecordIssuance(ctx, c, store.AuditEntry{Time: c.CreatedAt, Actor: c.SPIFFEID, Action: "issue",
				Target: c.Serial, Decision: "allow", PolicyVersion: "sha256:policy", RequestID: "req-" + c.Serial,
				Details: json.RawMessage(`{"rule":"any-repo-ci"}`)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((testkit.ProcessCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func parallelProcs() int { return runtime.GOMAXPROCS(0) }

func randHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}
