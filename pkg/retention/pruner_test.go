package retention_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/retention"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var t0 = time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)

var stores = []struct {
	name string
	open func(testing.TB) store.Store
}{
	{"postgres", testkit.Postgres},
	{"sqlite", testkit.SQLite},
}

var defaultCfg = retention.Config{
	Certificates: 90 * 24 * time.Hour, OCSPResponses: time.Hour, AuthzReports: 30 * 24 * time.Hour, Interval: 10 * time.Minute,
	BatchSize: 3, BatchPause: 0, MaxRun: time.Minute,
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func serial() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[0] = b[0]&0x7f | 0x10
	return hex.EncodeToString(b[:])
}

type fixture struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
}

func newFixture(t *testing.T, s store.Store) *fixture {
	f := &fixture{t: t, s: s, ctx: ctxT(t)}
	err := s.InsertIssuer(f.ctx, store.Issuer{
		ID: "int", Kind: store.KindRoot, KeyURI: "soft:int", CertDER: []byte{0x30}, SubjectKeyID: []byte{1},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour), State: store.IssuerActive,
		CreatedAt: t0.Add(-24 * time.Hour), UpdatedAt: t0.Add(-24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// cert records a certificate issued at `at` for ttl, with its OCSP response.
func (f *fixture) cert(at time.Time, ttl time.Duration, renewedFrom string) store.Certificate {
	f.t.Helper()
	c := store.Certificate{
		Serial: serial(), IssuerID: "int", SPIFFEID: "spiffe://example.org/w", NotBefore: at, NotAfter: at.Add(ttl),
		DER: []byte("der"), PublicKeySHA256: "ab", Status: store.CertActive, Provenance: json.RawMessage(`{}`),
		RenewedFrom: renewedFrom, CreatedAt: at,
	}
	if _, err := f.s.RecordIssuance(f.ctx, c, store.AuditEntry{Time: at, Actor: "w", Action: "issue", Target: c.Serial, Decision: "allow"}); err != nil {
		f.t.Fatal(err)
	}
	f.ocsp(c, at)
	return c
}

func (f *fixture) ocsp(c store.Certificate, at time.Time) {
	f.t.Helper()
	err := f.s.PutOCSPResponse(f.ctx, store.OCSPResponse{Serial: c.Serial, IssuerID: "int", Revoked: c.Status == store.CertRevoked,
		ThisUpdate: at, NextUpdate: at.Add(time.Hour), CertNotAfter: c.NotAfter, DER: []byte("ocsp")})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) exists(serial string) bool {
	_, err := f.s.GetCertificate(f.ctx, serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.t.Fatal(err)
	}
	return err == nil
}

func (f *fixture) hasOCSP(serial string) bool {
	_, err := f.s.GetOCSPResponse(f.ctx, serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.t.Fatal(err)
	}
	return err == nil
}

func (f *fixture) pruneEntries() []store.AuditEntry {
	f.t.Helper()
	var out []store.AuditEntry
	var after int64
	for {
		page, err := f.s.AuditEntries(f.ctx, after, 500)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, e := range page {
			if e.Action == retention.ActionPrune {
				out = append(out, e)
			}
		}
		if len(page) < 500 {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

func TestPruneFollowsRetentionOnBothStores(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, st.open(t))
			clk := clock.NewFake(t0)
			reg := prometheus.NewRegistry()
			p, err := retention.New(retention.Deps{Store: f.s, Clock: clk, Log: quiet(), Metrics: reg}, defaultCfg)
			if err != nil {
				t.Fatal(err)
			}
			// Seven hourly renewals of one workload (expired by t0+8h) and a
			// live last one; a revoked certificate that expires much later.
			var chain []store.Certificate
			prev := ""
			for i := 0; i < 8; i++ {
				c := f.cert(t0.Add(time.Duration(i)*time.Hour), time.Hour+10*time.Minute, prev)
				chain, prev = append(chain, c), c.Serial
			}
			live := f.cert(t0.Add(8*time.Hour), 200*24*time.Hour, prev) // outlives every cut-off below
			revoked := f.cert(t0, 100*24*time.Hour, "")
			if _, _, err := f.s.RevokeCertificate(f.ctx, revoked.Serial, t0.Add(time.Minute), "keyCompromise",
				store.AuditEntry{Time: t0.Add(time.Minute), Actor: "op", Action: "revoke", Target: revoked.Serial, Decision: "allow"}); err != nil {
				t.Fatal(err)
			}
			revoked.Status = store.CertRevoked
			f.ocsp(revoked, t0.Add(time.Minute))
			if err := f.s.MarkTokenUsed(f.ctx, "tok", t0.Add(5*time.Minute), t0); err != nil {
				t.Fatal(err)
			}
			if err := f.s.CreateSession(f.ctx, store.DashboardSession{IDHash: "h", Actor: "a", Claims: json.RawMessage(`{}`),
				CreatedAt: t0, ExpiresAt: t0.Add(8 * time.Hour), IdleExpiresAt: t0.Add(30 * time.Minute)}); err != nil {
				t.Fatal(err)
			}

			// At t0+9h: OCSP responses of certificates expired over an hour
			// ago go (the first six: NotAfter <= t0+6h10m < t0+8h); no
			// certificate is pruned yet.
			clk.Set(t0.Add(9 * time.Hour))
			res, err := p.Once(f.ctx)
			if err != nil || !res.Leader || !res.Complete {
				t.Fatalf("Once = %+v, %v", res, err)
			}
			if res.Pruned["ocsp_responses"] != 7 || res.Pruned["certificates"] != 0 {
				t.Fatalf("pruned %v at t0+9h; want 7 OCSP responses (NotAfter before t0+8h), no certificates", res.Pruned)
			}
			for i, c := range chain {
				if want := c.NotAfter.Before(t0.Add(8 * time.Hour)); f.hasOCSP(c.Serial) == want {
					t.Errorf("renewal %d (NotAfter %s): OCSP response kept = %v at t0+9h", i, c.NotAfter, !want)
				}
				if !f.exists(c.Serial) {
					t.Errorf("renewal %d pruned before its retention", i)
				}
			}
			if res.Pruned["used_tokens"] != 1 || res.Pruned["dashboard_sessions"] != 1 {
				t.Errorf("pruned %v: want the expired used token and dashboard session", res.Pruned)
			}

			// Just before the certificates' retention ends: still none.
			clk.Set(chain[0].NotAfter.Add(defaultCfg.Certificates))
			if res, err = p.Once(f.ctx); err != nil || res.Pruned["certificates"] != 0 {
				t.Fatalf("at the first certificate's cut-off exactly: %v, %v; want none pruned", res.Pruned, err)
			}
			// After the last renewal's retention: all eight expired ones
			// go, in batches of 3; the live renewal and the unexpired
			// revoked certificate stay.
			clk.Set(chain[7].NotAfter.Add(defaultCfg.Certificates + time.Second))
			if res, err = p.Once(f.ctx); err != nil || res.Pruned["certificates"] != 8 || !res.Complete {
				t.Fatalf("after the retention: %+v, %v; want 8 certificates pruned", res, err)
			}
			for i, c := range chain {
				if f.exists(c.Serial) {
					t.Errorf("renewal %d kept after its retention", i)
				}
			}
			if !f.exists(live.Serial) || !f.hasOCSP(live.Serial) {
				t.Errorf("the live renewal or its OCSP response was pruned")
			}
			if !f.exists(revoked.Serial) {
				t.Fatalf("a revoked certificate was pruned before it expired")
			}
			// The live renewal still lists in its lineage, whose first
			// serial is gone.
			page, _, err := f.s.ListCertificates(f.ctx, store.CertificateFilter{Lineage: chain[0].Serial})
			if err != nil || len(page) != 1 || page[0].Serial != live.Serial {
				t.Errorf("lineage listing after the prune: %d, %v; want the live renewal", len(page), err)
			}
			// Once the revoked certificate expired it leaves the CRL's
			// entries, and after its retention the store.
			expiredAt := revoked.NotAfter.Add(time.Second)
			if e, err := f.s.RevokedEntries(f.ctx, "int", expiredAt); err != nil || len(e) != 0 {
				t.Errorf("CRL entries after the revoked certificate expired: %v, %v; want none", e, err)
			}
			clk.Set(revoked.NotAfter.Add(defaultCfg.Certificates + time.Second))
			if res, err = p.Once(f.ctx); err != nil || res.Pruned["certificates"] < 1 || f.exists(revoked.Serial) {
				t.Fatalf("after the revoked certificate's retention: %v, %v", res.Pruned, err)
			}

			// Every run is audited with its counts and cut-offs, and the
			// chain verifies across the prunes.
			entries := f.pruneEntries()
			if len(entries) != 4 {
				t.Fatalf("%d prune audit entries, want 4 (one per run)", len(entries))
			}
			var d struct {
				Pruned   map[string]int64  `json:"pruned"`
				Cutoffs  map[string]string `json:"cutoffs"`
				Complete bool              `json:"complete"`
			}
			if err := json.Unmarshal(entries[2].Details, &d); err != nil {
				t.Fatal(err)
			}
			wantCut := chain[7].NotAfter.Add(time.Second).UTC().Format(time.RFC3339Nano)
			if d.Pruned["certificates"] != 8 || d.Cutoffs["certificates"] != wantCut || !d.Complete {
				t.Errorf("audit details %s; want 8 certificates and cut-off %s", entries[2].Details, wantCut)
			}
			if _, err := audit.Verify(f.ctx, f.s, audit.Options{}); err != nil {
				t.Fatalf("audit chain after pruning: %v", err)
			}
			// Metrics: rows pruned per table, oldest retained, table sizes.
			if got := gauge(t, reg, "ca_retention_pruned_rows_total", "certificates"); got != 9 {
				t.Errorf("ca_retention_pruned_rows_total{certificates} = %v, want 9", got)
			}
			if got := gauge(t, reg, "ca_retention_oldest_certificate_not_after_timestamp_seconds", ""); got != float64(live.NotAfter.Unix()) {
				t.Errorf("oldest retained certificate gauge = %v, want %v", got, live.NotAfter.Unix())
			}
			if got := gauge(t, reg, "ca_store_table_rows", "certificates"); got != 1 {
				t.Errorf("ca_store_table_rows{certificates} = %v, want 1", got)
			}
		})
	}
}

// gauge reads one sample of name (with table="table" unless table is "").
func gauge(t *testing.T, reg *prometheus.Registry, name, table string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := table == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" && l.GetValue() == table {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sample of %s{table=%q}", name, table)
	return 0
}

// blockingStore holds the first batch of OCSP responses until released, so
// that a second run starts while the first holds the leadership.
type blockingStore struct {
	retention.Store
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error) {
	b.once.Do(func() {
		close(b.entered)
		<-b.release
	})
	return b.Store.PruneOCSPResponses(ctx, before, limit)
}

func TestOnlyTheLeaderPrunes(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, st.open(t))
			for i := 0; i < 5; i++ {
				f.cert(t0, time.Hour, "")
			}
			clk := clock.NewFake(t0.Add(100 * 24 * time.Hour))
			bs := &blockingStore{Store: f.s, entered: make(chan struct{}), release: make(chan struct{})}
			first, err := retention.New(retention.Deps{Store: bs, Clock: clk, Log: quiet()}, defaultCfg)
			if err != nil {
				t.Fatal(err)
			}
			second, err := retention.New(retention.Deps{Store: f.s, Clock: clk, Log: quiet()}, defaultCfg)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan retention.Result, 1)
			go func() {
				res, err := first.Once(f.ctx)
				if err != nil {
					t.Error(err)
				}
				done <- res
			}()
			<-bs.entered
			res2, err := second.Once(f.ctx)
			if err != nil || res2.Leader || len(res2.Pruned) != 0 {
				t.Fatalf("a run concurrent with the leader's: %+v, %v; want no leadership, nothing pruned", res2, err)
			}
			close(bs.release)
			res1 := <-done
			if !res1.Leader || res1.Pruned["certificates"] != 5 {
				t.Fatalf("the leader's run: %+v; want 5 certificates pruned", res1)
			}
			if n := len(f.pruneEntries()); n != 1 {
				t.Fatalf("%d prune audit entries, want 1 (only the leader's run)", n)
			}
		})
	}
}

// slowStore answers each certificate batch only once the run's time is up.
type slowStore struct{ retention.Store }

func (s slowStore) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error) {
	n, err := s.Store.PruneExpiredCertificates(ctx, before, limit)
	if err != nil {
		return n, err
	}
	<-ctx.Done() // the run's MaxRun
	return n, nil
}

func TestARunStopsAtMaxRunAndIsAuditedAsPartial(t *testing.T) {
	f := newFixture(t, testkit.SQLite(t))
	for i := 0; i < 7; i++ {
		f.cert(t0, time.Hour, "")
	}
	cfg := defaultCfg
	cfg.MaxRun = 2 * time.Second // the OCSP batches finish well within it; the first certificate batch outlasts it
	p, err := retention.New(retention.Deps{Store: slowStore{f.s}, Clock: clock.NewFake(t0.Add(100 * 24 * time.Hour)), Log: quiet()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Once(f.ctx)
	if err != nil || res.Complete || res.Pruned["certificates"] != 3 {
		t.Fatalf("Once = %+v, %v; want one batch of 3 and an incomplete run", res, err)
	}
	entries := f.pruneEntries()
	if len(entries) != 1 {
		t.Fatalf("%d prune audit entries, want 1", len(entries))
	}
	var d struct {
		Pruned   map[string]int64 `json:"pruned"`
		Complete bool             `json:"complete"`
	}
	if err := json.Unmarshal(entries[0].Details, &d); err != nil || d.Complete || d.Pruned["certificates"] != 3 {
		t.Fatalf("audit details %s (%v); want 3 certificates, complete false", entries[0].Details, err)
	}
}

func TestNewRefusesAnInvalidConfiguration(t *testing.T) {
	d := retention.Deps{Store: testkit.SQLite(t), Clock: clock.NewFake(t0), Log: quiet()}
	bad := defaultCfg
	bad.OCSPResponses = bad.Certificates + time.Hour
	if _, err := retention.New(d, bad); err == nil {
		t.Error("OCSP responses kept longer than their certificates were accepted")
	}
	bad = defaultCfg
	bad.BatchSize = 0
	if _, err := retention.New(d, bad); err == nil {
		t.Error("a zero batch size was accepted")
	}
	if _, err := retention.New(retention.Deps{Clock: d.Clock, Log: d.Log}, defaultCfg); err == nil {
		t.Error("a pruner without a store was accepted")
	}
}
