package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// A replica whose token hangs (a PKCS#11 module whose C_Sign blocks while a
// flag file exists, in front of SoftHSM: a network HSM behind a partition)
// answers enrollment with 503 hsm_unavailable and Retry-After within
// server.request_timeout, keeps the stuck calls to its workers and logs
// them, answers /readyz with 503 within its bound, and enrolls again once
// the token answers, without a restart (issue 18).
func TestAHungTokenGivesBoundedAnswersAndServesAfterItAnswersAgain(t *testing.T) {
	const requestTimeout = 2 * time.Second
	const readyTimeout = time.Second
	const margin = 1500 * time.Millisecond // the bounded denial audit (0.5 s) and a loaded machine
	const workers = 8                      // hsm.DefaultWorkers: ca serve's pool per token

	h := testkit.HangingSoftHSM(t) // t.Setenv: not parallel
	dbURL := testkit.PostgresURL(t)
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
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": h.Config.Module,
		"CA_PKCS11_TOKEN": h.Config.TokenLabel, "CA_PKCS11_PIN": h.Config.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": e.policyPath,
	}
	for k, v := range h.Env {
		e.vars[k] = v
	}
	if out, errOut, code := runCA(t, e.vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	e.s = startServe(t, e.vars)
	e.bundle, e.roots = e.s.bundle(t)
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
			t.Errorf("enroll: no answer after %v: %v", took, err)
			return &http.Response{}, server.Problem{}, took
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
		t.Fatalf("enroll before the hang: %d %s %s", res.StatusCode, prob.Reason, prob.Detail)
	}

	h.Hang(t)
	t.Run("enrollment answers 503 hsm_unavailable with Retry-After within the deadline", func(t *testing.T) {
		// More concurrent requests than workers: the first hold every
		// worker with a stuck call, the rest find none free.
		const requests = workers + 4
		var wg sync.WaitGroup
		for i := range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, prob, took := enroll(t)
				if res.StatusCode != http.StatusServiceUnavailable || prob.Reason != server.ReasonHSMUnavailable {
					t.Errorf("enroll %d on the hung token: %d %s (%s); want 503 hsm_unavailable", i, res.StatusCode, prob.Reason, prob.Detail)
				}
				if res.Header.Get("Retry-After") == "" {
					t.Errorf("enroll %d on the hung token: no Retry-After", i)
				}
				if took > requestTimeout+margin {
					t.Errorf("enroll %d on the hung token answered after %v; request_timeout is %v", i, took, requestTimeout)
				}
			}()
		}
		wg.Wait()
	})
	t.Run("readyz answers 503 hsm_unavailable within its bound", func(t *testing.T) {
		c := &http.Client{Timeout: 15 * time.Second}
		start := time.Now()
		res, err := c.Get(e.s.publicURL + "/readyz")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("readyz: no answer after %v: %v", took, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var prob server.Problem
		_ = json.Unmarshal(body, &prob)
		if res.StatusCode != http.StatusServiceUnavailable || prob.Reason != server.ReasonHSMUnavailable {
			t.Errorf("readyz on the hung token: %d %s, want 503 hsm_unavailable", res.StatusCode, prob.Reason)
		}
		if took > readyTimeout+margin {
			t.Errorf("readyz answered after %v; ready_timeout is %v", took, readyTimeout)
		}
	})
	t.Run("the stuck calls are counted, logged and bounded by the workers", func(t *testing.T) {
		// Background work (OCSP pre-signing) may hold a worker too, with
		// its own deadline, so the count is checked against the bound.
		logged, maxStuck := 0, 0
		for _, l := range strings.Split(e.s.stderr.String(), "\n") {
			var line struct {
				Msg   string `json:"msg"`
				Stuck int    `json:"stuck"`
			}
			if json.Unmarshal([]byte(l), &line) != nil || !strings.HasPrefix(line.Msg, "PKCS#11 call abandoned at its deadline") {
				continue
			}
			logged++
			maxStuck = max(maxStuck, line.Stuck)
		}
		if logged == 0 || maxStuck > workers {
			t.Errorf("%d abandoned calls logged, at most %d stuck at once; want some, never more than the %d workers", logged, maxStuck, workers)
		}
		if !strings.Contains(e.s.stderr.String(), "no free PKCS#11 worker") {
			t.Errorf("with every worker stuck, no request was refused for want of a worker")
		}
	})

	h.Release(t)
	t.Run("after the token answers again the replica enrolls without a restart", func(t *testing.T) {
		var last string
		for range 10 {
			res, prob, _ := enroll(t)
			if res.StatusCode == http.StatusCreated {
				if !strings.Contains(e.s.stderr.String(), "an abandoned PKCS#11 call returned") {
					t.Errorf("the returning stuck calls were not logged")
				}
				return
			}
			last = string(prob.Reason) + ": " + prob.Detail
		}
		t.Fatalf("no enrollment after the release; last answer %s", last)
	})
}
