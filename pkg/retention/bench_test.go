package retention_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/retention"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// bulkLoader is the Postgres store's COPY path (what `ca gendata` uses).
type bulkLoader interface {
	BulkLoadCertificates(ctx context.Context, n int, gen func(i int) store.Certificate) (int64, error)
}

// benchRows is how many expired rows BenchmarkIssuanceDuringPrunePostgres
// prunes: WCA_RETENTION_BENCH_ROWS, default 200000 (the issue's 1,000,000
// takes minutes to load; set it for the full figure).
func benchRows(b *testing.B) int {
	if v := os.Getenv("WCA_RETENTION_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("WCA_RETENTION_BENCH_ROWS=%q", v)
		}
		return n
	}
	return 200_000
}

// realisticCert is a row the size of a real one: an 800-byte DER and the
// provenance an enrollment records (as `ca gendata` writes it).
func realisticCert(issuerID string, created time.Time, ttl time.Duration, i int) store.Certificate {
	var der [800]byte
	_, _ = rand.Read(der[:])
	s := serial()
	sum := sha256.Sum256([]byte(s))
	repo := fmt.Sprintf("acme/svc-%04d", i%5000)
	return store.Certificate{
		Serial: s, IssuerID: issuerID, SPIFFEID: "spiffe://example.org/ci/" + repo,
		DNSNames: []string{fmt.Sprintf("svc-%04d.internal", i%5000)}, NotBefore: created.Add(-time.Minute), NotAfter: created.Add(ttl),
		DER: der[:], PublicKeySHA256: hex.EncodeToString(sum[:]), Status: store.CertActive,
		Provenance: []byte(fmt.Sprintf(`{"token_issuer":"github","iss":"https://token.actions.githubusercontent.com","sub":"repo:%s:ref:refs/heads/main","claims":{"repository":"%s","ref":"refs/heads/main","sha":"%x"}}`, repo, repo, sum[:20])),
		PolicyRule: "github-acme", PolicyVersion: "sha256:bench", CreatedAt: created,
	}
}

// issueFor records issuances from workers until stop is closed and returns
// each one's latency.
func issueFor(ctx context.Context, b *testing.B, s store.Store, workers int, now time.Time, stop <-chan struct{}) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := realisticCert("int", now, time.Hour, w*1_000_000+i)
				start := time.Now()
				_, err := s.RecordIssuance(ctx, c, store.AuditEntry{Time: now, Actor: "repo:acme/x", Action: "issue", Target: c.Serial, Decision: "allow"})
				d := time.Since(start)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	return lat
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkIssuanceDuringPrunePostgres measures the store side of
// enrollment (RecordIssuance: the certificate row and its audit entry,
// committed) from 4 concurrent workers, first alone for 15 s, then while the leader
// prunes benchRows expired certificates and their OCSP responses with the
// default batches (1000 rows, 50 ms pauses). It reports both p99s, their
// ratio (the issue's bound is 1.5), and the prune's rows per second.
func BenchmarkIssuanceDuringPrunePostgres(b *testing.B) {
	ctx := context.Background()
	url := testkit.PostgresURL(b)
	s, err := storeopen.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.InsertIssuer(ctx, store.Issuer{ID: "int", Kind: store.KindRoot, KeyURI: "soft:int", CertDER: []byte{0x30}, SubjectKeyID: []byte{1},
		NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(3650 * 24 * time.Hour), State: store.IssuerActive,
		CreatedAt: now.Add(-400 * 24 * time.Hour), UpdatedAt: now.Add(-400 * 24 * time.Hour)}); err != nil {
		b.Fatal(err)
	}
	bl, ok := s.(bulkLoader)
	if !ok {
		b.Skip("the Postgres store has no bulk loader")
	}
	rows := benchRows(b)
	// Expired 91 to 121 days ago: past the default 90-day retention.
	old := now.Add(-121 * 24 * time.Hour)
	for done := 0; done < rows; {
		n := min(50_000, rows-done)
		base := done
		if _, err := bl.BulkLoadCertificates(ctx, n, func(i int) store.Certificate {
			return realisticCert("int", old.Add(time.Duration(base+i)*30*24*time.Hour/time.Duration(rows)), time.Hour, base+i)
		}); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	// One pre-signed OCSP response (~1 KB) per certificate, as the
	// publisher keeps them.
	if _, err := conn.Exec(ctx, `INSERT INTO ocsp_responses (serial, issuer_id, revoked, this_update, next_update, cert_not_after, der)
		SELECT serial, issuer_id, false, not_after - interval '1 hour', not_after, not_after, decode(repeat(md5(serial), 62), 'hex')
		FROM certificates`); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE certificates; `); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE ocsp_responses`); err != nil {
		b.Fatal(err)
	}
	before, err := s.RetentionStats(ctx)
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Baseline: issuance alone.
		stop := make(chan struct{})
		time.AfterFunc(15*time.Second, func() { close(stop) })
		base := issueFor(ctx, b, s, 4, now, stop)

		// The same load while the leader prunes.
		p, err := retention.New(retention.Deps{Store: s, Clock: clock.Real{}, Log: quiet()}, retention.Config{
			Certificates: 90 * 24 * time.Hour, OCSPResponses: time.Hour, AuthzReports: 30 * 24 * time.Hour, Interval: time.Hour,
			BatchSize: 1000, BatchPause: 50 * time.Millisecond, MaxRun: time.Hour,
		})
		if err != nil {
			b.Fatal(err)
		}
		stop = make(chan struct{})
		latc := make(chan []time.Duration, 1)
		go func() { latc <- issueFor(ctx, b, s, 4, now, stop) }()
		res, err := p.Once(ctx)
		close(stop)
		during := <-latc
		if err != nil || !res.Complete || res.Pruned["certificates"] != int64(rows) {
			b.Fatalf("prune: %+v, %v; want %d certificates", res.Pruned, err, rows)
		}
		b.ReportMetric(float64(pct(base, 0.99).Microseconds())/1000, "p99-alone-ms")
		b.ReportMetric(float64(pct(during, 0.99).Microseconds())/1000, "p99-pruning-ms")
		b.ReportMetric(float64(pct(base, 0.5).Microseconds())/1000, "p50-alone-ms")
		b.ReportMetric(float64(pct(during, 0.5).Microseconds())/1000, "p50-pruning-ms")
		b.ReportMetric(float64(pct(during, 0.99))/float64(pct(base, 0.99)), "p99-ratio")
		b.ReportMetric(res.Duration.Seconds(), "prune-s")
		b.ReportMetric(float64(res.Pruned["certificates"]+res.Pruned["ocsp_responses"])/res.Duration.Seconds(), "rows-pruned/s")
		b.Logf("pruned %v in %s; issuances alone %d (p50 %s p99 %s), while pruning %d (p50 %s p99 %s)",
			res.Pruned, res.Duration.Round(time.Millisecond), len(base), pct(base, 0.5), pct(base, 0.99),
			len(during), pct(during, 0.5), pct(during, 0.99))
	}
	b.StopTimer()
	after, err := s.RetentionStats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for i, t := range before.Tables[:2] {
		b.Logf("%s: %d rows, %d bytes (%.0f B/row) before; %d rows, %d bytes after the prune (before VACUUM)",
			t.Table, t.Rows, t.Bytes, float64(t.Bytes)/float64(max(t.Rows, 1)), after.Tables[i].Rows, after.Tables[i].Bytes)
	}
}

// BenchmarkStorageBytesPerCertificateSQLite records realistic certificates
// with their audit entries and OCSP responses on the embedded default and
// reports the bytes per certificate of each table, then prunes them all and
// reports what is left (SQLite keeps freed pages for reuse).
func BenchmarkStorageBytesPerCertificateSQLite(b *testing.B) {
	ctx := context.Background()
	s := testkit.SQLite(b)
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.InsertIssuer(ctx, store.Issuer{ID: "int", Kind: store.KindRoot, KeyURI: "soft:int", CertDER: []byte{0x30}, SubjectKeyID: []byte{1},
		NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(3650 * 24 * time.Hour), State: store.IssuerActive,
		CreatedAt: now.Add(-400 * 24 * time.Hour), UpdatedAt: now.Add(-400 * 24 * time.Hour)}); err != nil {
		b.Fatal(err)
	}
	const n = 3000
	for i := 0; i < b.N; i++ {
		var batch []store.OCSPResponse
		var ocspDER [1000]byte
		for j := 0; j < n; j++ {
			c := realisticCert("int", now.Add(-200*24*time.Hour), time.Hour, j)
			if _, err := s.RecordIssuance(ctx, c, store.AuditEntry{Time: c.CreatedAt, Actor: "repo:acme/x", Action: "issue", Target: c.Serial, Decision: "allow",
				Details: []byte(`{"spiffe_id":"` + c.SPIFFEID + `","not_after":"` + c.NotAfter.Format(time.RFC3339) + `"}`)}); err != nil {
				b.Fatal(err)
			}
			_, _ = rand.Read(ocspDER[:])
			batch = append(batch, store.OCSPResponse{Serial: c.Serial, IssuerID: "int", ThisUpdate: c.CreatedAt, NextUpdate: c.NotAfter,
				CertNotAfter: c.NotAfter, DER: slices.Clone(ocspDER[:])})
			if len(batch) == 500 {
				if _, err := s.PutOCSPResponses(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = nil
			}
		}
	}
	b.StopTimer()
	before, err := s.RetentionStats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p, err := retention.New(retention.Deps{Store: s, Clock: clock.NewFake(now), Log: quiet()}, retention.Config{
		Certificates: 90 * 24 * time.Hour, OCSPResponses: time.Hour, AuthzReports: 30 * 24 * time.Hour, Interval: time.Hour, BatchSize: 1000, MaxRun: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	res, err := p.Once(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("pruned %v in %s (1000-row batches, each followed by a pause as long as it took)", res.Pruned, res.Duration.Round(time.Millisecond))
	after, err := s.RetentionStats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for i, t := range before.Tables[:3] {
		per := float64(t.Bytes) / float64(max(t.Rows, 1))
		b.Logf("%s: %d rows, %d bytes (%.0f B/row) before the prune; %d rows, %d bytes after", t.Table, t.Rows, t.Bytes, per,
			after.Tables[i].Rows, after.Tables[i].Bytes)
		b.ReportMetric(per, t.Table+"-B/row")
	}
}
