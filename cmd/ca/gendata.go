package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// bulkLoader is the Postgres store's COPY path (pkg/store/postgres).
type bulkLoader interface {
	BulkLoadCertificates(ctx context.Context, n int, gen func(i int) store.Certificate) (int64, error)
}

// errGendataNeedsPostgres: the generator only loads Postgres.
var errGendataNeedsPostgres = errors.New("ca gendata loads Postgres only (CA_DATABASE_URL=postgres://...)")

// cmdGendata runs `ca gendata --count N`: fill the configured Postgres
// database with N synthetic certificate rows (no audit entries) under the
// active issuer, for measuring the inventory API and dashboard at scale.
// Never run it against a production database.
func cmdGendata(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gendata", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	count := fs.Int("count", 1_000_000, "rows to add")
	batch := fs.Int("batch", 100_000, "rows per COPY transaction")
	seed := fs.Uint64("seed", 1, "random seed (serials still differ between runs)")
	identities := fs.Int("identities", 5000, "distinct workload identities (and repositories)")
	hp := historyPlan{}
	fs.IntVar(&hp.workloads, "workloads", 0, "history mode: workloads that enroll and renew over --span (Postgres or SQLite)")
	fs.DurationVar(&hp.renewEvery, "renew-every", time.Hour, "history mode: time between renewals of a workload")
	fs.DurationVar(&hp.span, "span", 365*24*time.Hour, "history mode: how far back the history begins (ending now)")
	fs.DurationVar(&hp.ttl, "ttl", 0, "history mode: certificate lifetime (default twice --renew-every: renewal at half-life)")
	fs.DurationVar(&hp.reauth, "reauthenticate-after", 30*24*time.Hour, "history mode: a workload enrolls again after this (the policy default)")
	fs.DurationVar(&hp.ocspValid, "ocsp-validity", 24*time.Hour, "history mode: OCSP responses' nextUpdate - thisUpdate")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if hp.workloads > 0 {
		if hp.ttl == 0 {
			hp.ttl = 2 * hp.renewEvery
		}
		if fs.NArg() > 0 || hp.renewEvery <= 0 || hp.span < hp.renewEvery || hp.reauth < hp.renewEvery || hp.ocspValid <= 0 || *batch < 1 {
			return fmt.Errorf("%w: ca gendata --workloads N [--renew-every 1h] [--span 8760h] [--ttl D] [--reauthenticate-after 720h] [--batch N]", errUsage)
		}
		hp.batch, hp.seed = min(*batch, 20_000), *seed
		return cmdGendataHistory(ctx, *cfgPath, getenv, hp, stdout, stderr)
	}
	if fs.NArg() > 0 || *count < 1 || *batch < 1 || *identities < 1 {
		return fmt.Errorf("%w: ca gendata [--count N] [--batch N] [--identities N] [--seed N]", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if cfg.DatabaseDriver() != "postgres" {
		return fmt.Errorf("%w", errGendataNeedsPostgres)
	}
	st, err := openStore(ctx, cfg, newLogger(cfg, stderr), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	bl, ok := st.(bulkLoader)
	if !ok {
		return errGendataNeedsPostgres
	}
	issuers, err := st.ListIssuers(ctx)
	if err != nil {
		return err
	}
	issuerID := ""
	for _, is := range issuers {
		if is.Kind == store.KindIntermediate && is.State == store.IssuerActive {
			issuerID = is.ID
		}
	}
	if issuerID == "" {
		return fmt.Errorf("no active intermediate; run `ca init` first")
	}
	now := time.Now().UTC()
	runID := uint64(now.UnixNano())
	g := &synthetic{rng: rand.New(rand.NewPCG(*seed, runID)), issuerID: issuerID, now: now, identities: *identities,
		domain: cfg.TrustDomain, run: runID}
	start := time.Now()
	var total int64
	for total < int64(*count) {
		n := min(*batch, *count-int(total))
		got, err := bl.BulkLoadCertificates(ctx, n, g.cert)
		if err != nil {
			return err
		}
		total += got
		fmt.Fprintf(stdout, "%d/%d rows (%.0f rows/s)\n", total, *count, float64(total)/time.Since(start).Seconds())
	}
	fmt.Fprintf(stdout, "added %d synthetic certificates under issuer %s in %s\n", total, issuerID, time.Since(start).Round(time.Millisecond))
	return nil
}

// cmdGendataHistory runs `ca gendata --workloads N`: a history of
// enrollments and renewals (see genHistory) under the active intermediate,
// on Postgres or SQLite. Never run it against a production database.
func cmdGendataHistory(ctx context.Context, cfgPath string, getenv env, hp historyPlan, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(cfgPath, getenv)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, newLogger(cfg, stderr), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	issuers, err := st.ListIssuers(ctx)
	if err != nil {
		return err
	}
	var active *store.Issuer
	for i, is := range issuers {
		if is.Kind == store.KindIntermediate && is.State == store.IssuerActive {
			active = &issuers[i]
		}
	}
	if active == nil {
		return fmt.Errorf("no active intermediate; run `ca init` first")
	}
	return genHistory(ctx, st, hp, *active, cfg.PublicURL, cfg.TrustDomain, stdout)
}

// synthetic makes plausible inventory rows: issued over the last 30 days,
// lifetimes from 15 minutes to 30 days, about 2% revoked, a few renewals.
type synthetic struct {
	rng        *rand.Rand
	issuerID   string
	now        time.Time
	identities int
	domain     string
	run        uint64
	n          uint64
	last       string
}

var syntheticTTLs = []time.Duration{15 * time.Minute, time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}

func (g *synthetic) cert(int) store.Certificate {
	g.n++
	serial := fmt.Sprintf("%016x%016x", g.run|1<<63, g.n)
	svc := g.rng.IntN(g.identities)
	repo := fmt.Sprintf("acme/svc-%04d", svc)
	created := g.now.Add(-time.Duration(g.rng.Int64N(int64(30 * 24 * time.Hour)))).Truncate(time.Microsecond)
	ttl := syntheticTTLs[g.rng.IntN(len(syntheticTTLs))]
	sum := sha256.Sum256([]byte(serial))
	c := store.Certificate{
		Serial: serial, IssuerID: g.issuerID, SPIFFEID: fmt.Sprintf("spiffe://%s/ci/%s", g.domain, repo),
		DNSNames:  []string{fmt.Sprintf("svc-%04d.internal", svc)},
		NotBefore: created.Add(-time.Minute), NotAfter: created.Add(ttl), DER: []byte{0x30, 0x00},
		PublicKeySHA256: hex.EncodeToString(sum[:]), Status: store.CertActive,
		Provenance: []byte(fmt.Sprintf(`{"token_issuer":"github","iss":"https://token.actions.githubusercontent.com","sub":"repo:%s:ref:refs/heads/main","shape":"github","claims":{"repository":"%s","ref":"refs/heads/main","sha":"%040x","run_id":"%d"},"policy_rule":"github-acme","policy_version":"synthetic"}`,
			repo, repo, g.rng.Uint64(), g.rng.IntN(1e9))),
		PolicyRule: "github-acme", PolicyVersion: "synthetic", CreatedAt: created,
	}
	if g.rng.IntN(50) == 0 {
		c.Status, c.RevokedAt, c.RevocationReason = store.CertRevoked, created.Add(time.Minute), "keyCompromise"
	}
	if g.last != "" && g.rng.IntN(10) == 0 {
		c.RenewedFrom = g.last
	}
	g.last = serial
	return c
}
