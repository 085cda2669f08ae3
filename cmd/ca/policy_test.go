package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/config"
)

func TestPolicyTestRunsTheCasesAndFailsOnAnyFailure(t *testing.T) {
	const pol = "../../pkg/policy/testdata/policy.yaml"
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"policy", "test", pol, "--cases", "../../pkg/policy/testdata/cases.yaml"}, config.MapEnv(nil), &out, &errOut)
	if code != exitOK || !strings.Contains(out.String(), "PASS payments main branch gets the prod identity") || !strings.Contains(out.String(), "0 failed") {
		t.Fatalf("passing cases: exit %d\n%s%s", code, &out, &errOut)
	}

	bad := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(bad, []byte("cases:\n  - name: evil gets prod\n    issuer: github\n    claims: {repository: evil/x, repository_owner: evil}\n    expect: {spiffe_id: spiffe://example.org/prod/payments}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), []string{"policy", "test", "--cases", bad, pol}, config.MapEnv(nil), &out, &errOut)
	if code != exitError || !strings.Contains(out.String(), "FAIL evil gets prod") || !strings.Contains(errOut.String(), "1 of 1 policy test cases failed") {
		t.Fatalf("failing case: exit %d\n%s%s", code, &out, &errOut)
	}
	if code := run(context.Background(), []string{"policy", "test", pol}, config.MapEnv(nil), &out, &errOut); code != exitUsage {
		t.Errorf("without --cases: exit %d", code)
	}
}

func TestPolicyTestShowsAOneSegmentPlaceholderRefusingASlash(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	cases := filepath.Join(dir, "cases.yaml")
	if err := os.WriteFile(pol, []byte(`trust_domain: example.org
token_issuers:
  - {name: github, issuer: "https://token.actions.githubusercontent.com", audience: "https://ca.example.org"}
rules:
  - {name: ci, issuer: github, when: "true", spiffe_id: "spiffe://example.org/ci/{{claims.repository}}", max_ttl: 15m}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cases, []byte("cases:\n  - name: owner/repo\n    issuer: github\n    claims: {repository: acme/payments}\n    expect: {spiffe_id: spiffe://example.org/ci/acme/payments}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"policy", "test", pol, "--cases", cases}, config.MapEnv(nil), &out, &errOut)
	if code != exitError || !strings.Contains(out.String(), "FAIL owner/repo") || !strings.Contains(out.String(), "spiffe_id_segment") || !strings.Contains(out.String(), "|path}}") {
		t.Fatalf("exit %d; want the case to fail naming the spiffe_id_segment check and the |path marker:\n%s%s", code, &out, &errOut)
	}
}

func TestDevTokensEnrollUnderTheGeneratedDevelopmentPolicy(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	ds, created, err := ensureDevSetup(cfg)
	if err != nil || !created {
		t.Fatalf("%v %v", created, err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, devKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dev key mode: %v %v", fi, err)
	}
	again, created, err := ensureDevSetup(cfg)
	if err != nil || created || again.key.KeyID != ds.key.KeyID {
		t.Errorf("second setup: created %v, kid %s vs %s, %v", created, again.key.KeyID, ds.key.KeyID, err)
	}
	ps, err := loadPolicy(cfg, discardLogger(), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	iss, ok := ps.holder.Load().IssuerByURL(DevTokenIssuer)
	if !ok || iss.JWKSFile != filepath.Join(cfg.DataDir, devJWKSFile) {
		t.Fatalf("dev issuer %+v", iss)
	}

	prod := config.Default()
	prod.DataDir = t.TempDir()
	prod.DatabaseURL = "postgres://db.invalid/ca"
	if _, _, err := ensureDevSetup(prod); err == nil {
		t.Error("the development setup was created in production mode")
	}
	ps, err = loadPolicy(prod, discardLogger(), &bytes.Buffer{})
	if err != nil || len(ps.holder.Load().TokenIssuers()) != 0 {
		t.Errorf("production without a policy file trusts issuers: %v", err)
	}
	if entries, _ := os.ReadDir(prod.DataDir); len(entries) != 0 {
		t.Errorf("production wrote into the data dir: %v", entries)
	}
}

func TestRenewAtIsTwoThirdsIntoTheLifetimeWithBoundedJitter(t *testing.T) {
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(90 * time.Minute)}
	for _, tt := range []struct {
		jitter float64
		want   time.Duration
	}{{0.5, 60 * time.Minute}, {0, 60*time.Minute - 270*time.Second}, {1, 60*time.Minute + 270*time.Second}} {
		if got := renewAt(c, nb, nb, tt.jitter).Sub(nb); got != tt.want {
			t.Errorf("jitter %v: renew after %v, want %v", tt.jitter, got, tt.want)
		}
	}
	if got := renewAt(c, nb, nb.Add(80*time.Minute), 0.5); !got.Equal(nb.Add(80 * time.Minute)) {
		t.Errorf("an overdue renewal is not immediate: %v", got)
	}

	// The CA backdates notBefore by 5 minutes: the lifetime counts from
	// when the certificate was obtained, max(notBefore, obtained).
	now := nb.Add(5 * time.Minute)
	short := &x509.Certificate{NotBefore: nb, NotAfter: now.Add(2 * time.Minute)}
	for _, tt := range []struct {
		name     string
		c        *x509.Certificate
		obtained time.Time
		jitter   float64
		want     time.Duration // after now
	}{
		{"a 2-minute certificate obtained now is renewed after 80s, not at once", short, now, 0.5, 80 * time.Second},
		{"its jitter is 5% of the 2 minutes, not of the backdated 7", short, now, 0, 80*time.Second - 6*time.Second},
		{"the upper jitter bound of a 2-minute certificate", short, now, 1, 80*time.Second + 6*time.Second},
		{"a 1-hour certificate obtained now is renewed after 40 minutes", &x509.Certificate{NotBefore: nb, NotAfter: now.Add(time.Hour)}, now, 0.5, 40 * time.Minute},
		{"obtained a minute ago (the file's mtime), it is renewed 20s sooner", short, now.Add(-time.Minute), 0.5, 80*time.Second - 20*time.Second},
		{"an obtained time before notBefore counts from notBefore", &x509.Certificate{NotBefore: now, NotAfter: now.Add(3 * time.Minute)}, nb, 0.5, 2 * time.Minute},
		{"obtained after it expired, it is renewed at once", short, now.Add(3 * time.Minute), 0.5, 0},
	} {
		if got := renewAt(tt.c, tt.obtained, now, tt.jitter).Sub(now); got != tt.want {
			t.Errorf("%s: renew after %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAgentHealthCallsARenewalOverdueOnlyPastThreeQuartersOfTheUnbackdatedLifetime(t *testing.T) {
	issued := time.Date(2030, 1, 1, 0, 5, 0, 0, time.UTC)
	// A 2-minute certificate as the CA issues it: notBefore backdated 5 minutes.
	short := &x509.Certificate{NotBefore: issued.Add(-5 * time.Minute), NotAfter: issued.Add(2 * time.Minute)}
	for _, tt := range []struct {
		name string
		c    *x509.Certificate
		at   time.Duration // after issue
		want bool
	}{
		{"a 2-minute SVID 30s after issue is not overdue (renewal is due at 80s)", short, 30 * time.Second, false},
		{"a 2-minute SVID 85s after issue is not overdue", short, 85 * time.Second, false},
		{"a 2-minute SVID 95s after issue is overdue", short, 95 * time.Second, true},
		{"a 1-hour SVID 40 minutes after issue is not overdue", &x509.Certificate{NotBefore: issued.Add(-5 * time.Minute), NotAfter: issued.Add(time.Hour)}, 40 * time.Minute, false},
		{"a 1-hour SVID 46 minutes after issue is overdue", &x509.Certificate{NotBefore: issued.Add(-5 * time.Minute), NotAfter: issued.Add(time.Hour)}, 46 * time.Minute, true},
		{"a 3-minute SVID without backdating 2m10s after issue is not overdue", &x509.Certificate{NotBefore: issued, NotAfter: issued.Add(3 * time.Minute)}, 130 * time.Second, false},
		{"a 3-minute SVID without backdating 2m20s after issue is overdue", &x509.Certificate{NotBefore: issued, NotAfter: issued.Add(3 * time.Minute)}, 140 * time.Second, true},
	} {
		if got := renewalOverdue(tt.c, issued.Add(tt.at)); got != tt.want {
			t.Errorf("%s: overdue %v, want %v", tt.name, got, tt.want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
