package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// A replica cut off from Postgres by a partition (packets dropped, nothing
// refused or reset) answers enrollment with 503 store_unavailable and
// Retry-After within server.request_timeout, /readyz within its bound, and
// serves again once the partition heals, without a restart (issue 18).
func TestAPartitionedDatabaseGivesBoundedAnswersAndServesAfterTheHeal(t *testing.T) {
	const requestTimeout = 2 * time.Second
	const readyTimeout = time.Second
	const margin = 1500 * time.Millisecond // the bounded denial audit (0.5 s) and a loaded machine

	dbURL := testkit.PostgresURL(t)
	tok := testkit.SoftHSM(t)
	oidc := testkit.NewOIDCIssuer(t)
	dir := t.TempDir()
	e := &enrollE2E{dir: dir, oidc: oidc, policyPath: filepath.Join(dir, "policy.yaml")}
	if err := os.WriteFile(e.policyPath, []byte(e2ePolicy(oidc.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ca.yaml")
	cfg := "enroll:\n  token_issuer_ca_file: " + issuerCAFile(t, oidc, dir) + "\n" +
		"server:\n  request_timeout: 2s\n  ready_timeout: 1s\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.vars = map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Module,
		"CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": e.policyPath,
	}
	if out, errOut, code := runCA(t, e.vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	// The replica reaches Postgres only through the partition proxy.
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := testkit.PartitionProxy(t, u.Host)
	u.Host = p.Addr()
	e.vars["CA_DATABASE_URL"] = u.String()
	e.s = startServe(t, e.vars)
	e.bundle, e.roots = e.s.bundle(t)
	// Shorter than the 30 s after which the client gave up, longer
	// than any bounded answer.
	e.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: e.roots, MinVersion: tls.VersionTLS12,
	}}}
	e.openapi = e.s.openapiRouter(t)

	enroll := func(t *testing.T) (*http.Response, server.Problem, time.Duration) {
		t.Helper()
		raw, _ := json.Marshal(server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
		req, _ := http.NewRequest(http.MethodPost, e.s.apiURL+"/v1/enroll", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+oidc.GitHubToken(t, nil))
		start := time.Now()
		res, err := e.client.Do(req)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("enroll: no answer after %v: %v", took, err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var prob server.Problem
		_ = json.Unmarshal(body, &prob)
		req.Body = io.NopCloser(bytes.NewReader(raw))
		e.validate(t, req, res, body)
		return res, prob, took
	}

	if res, prob, _ := enroll(t); res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll before the partition: %d %s %s", res.StatusCode, prob.Reason, prob.Detail)
	}

	p.Cut()
	t.Run("enrollment answers 503 store_unavailable with Retry-After within the deadline", func(t *testing.T) {
		for i := range 2 { // the second finds the pool's connections already stuck
			res, prob, took := enroll(t)
			if res.StatusCode != http.StatusServiceUnavailable || prob.Reason != server.ReasonStoreUnavailable {
				t.Errorf("enroll %d during the partition: %d %s (%s); want 503 store_unavailable", i, res.StatusCode, prob.Reason, prob.Detail)
			}
			if res.Header.Get("Retry-After") == "" {
				t.Errorf("enroll %d during the partition: no Retry-After", i)
			}
			if took > requestTimeout+margin {
				t.Errorf("enroll %d during the partition answered after %v; request_timeout is %v", i, took, requestTimeout)
			}
		}
	})
	t.Run("readyz answers 503 within its bound", func(t *testing.T) {
		c := &http.Client{Timeout: 15 * time.Second}
		start := time.Now()
		res, err := c.Get(e.s.publicURL + "/readyz")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("readyz: no answer after %v: %v", took, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz during the partition: %d, want 503", res.StatusCode)
		}
		if took > readyTimeout+margin {
			t.Errorf("readyz answered after %v; ready_timeout is %v", took, readyTimeout)
		}
	})

	p.Heal()
	t.Run("after the heal the replica enrolls again without a restart", func(t *testing.T) {
		var last string
		for i := 0; i < 10; i++ { // connections cut mid-call are dropped as they fail
			res, prob, _ := enroll(t)
			if res.StatusCode == http.StatusCreated {
				return
			}
			last = string(prob.Reason) + ": " + prob.Detail
		}
		t.Fatalf("no enrollment after the heal; last answer %s", last)
	})
	if bursts := countLines(e.s.stderr.String(), "dependency unavailable (further failures"); bursts > 1 {
		t.Errorf("the partition's failures were logged %d times at error level; want once per burst", bursts)
	}
}

func countLines(s, sub string) int {
	n := 0
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		if bytes.Contains(l, []byte(sub)) {
			n++
		}
	}
	return n
}
