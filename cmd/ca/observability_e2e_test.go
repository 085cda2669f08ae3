package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// jwtPattern matches a compact JWS whose header and payload are JSON objects.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// obsCall is one request of the observability run and the decision line it
// must produce.
type obsCall struct {
	requestID        string
	action, decision string
	reason           string // "" for allow
}

// TestAFullRunIsMeasuredAndLogsDecisionsWithoutSecrets drives the real `ca
// serve` on Postgres and SoftHSM at debug level through enrollment,
// renewal, JWT-SVIDs, revocation, operator reads and a batch of refusals,
// then scrapes /metrics (every family exists with sensible values) and reads
// the whole log: no PEM block, no JWT, no PIN anywhere, and one decision
// line per decision carrying the incident fields.
func TestAFullRunIsMeasuredAndLogsDecisionsWithoutSecrets(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	tok := testkit.NewSoftHSMToken(t)
	ci := testkit.NewOIDCIssuer(t)
	idp := testkit.NewOIDCIssuer(t, testkit.WithOIDCAudience(operatorE2EAudience))
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyPath, operatorE2EPolicy(ci.URL, idp.URL), 0o644)
	cfgPath := filepath.Join(dir, "ca.yaml")
	writeFile(t, cfgPath, "log:\n  level: debug\nenroll:\n  token_issuer_ca_file: "+issuerCAFile(t, ci, dir)+"\n", 0o644)
	vars := map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Config.Module,
		"CA_PKCS11_TOKEN": tok.Config.TokenLabel, "CA_PKCS11_PIN": tok.Config.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
	}
	_, initLog, code := runCA(t, vars, "init")
	if code != 0 {
		t.Fatalf("ca init: %d %s", code, initLog)
	}
	s := startServe(t, vars)
	e := &enrollE2E{s: s}
	e.bundle, e.roots = s.bundle(t)
	e.client = e.mtlsClient()
	var calls []obsCall
	expect := func(a answer, status int, action, decision, reason string) {
		t.Helper()
		if a.status != status {
			t.Fatalf("%s: %d %+v, want %d", action, a.status, a.problem, status)
		}
		calls = append(calls, obsCall{a.requestID, action, decision, reason})
	}

	// Enrollment, renewal, JWT-SVIDs.
	keys := []*ecdsa.PrivateKey{p256(t), p256(t), p256(t)}
	var leaves []answer
	for i, repo := range []string{"acme/payments", "acme/ledger", "acme/search"} {
		a := e.raw(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": repo}), server.CertRequest{CSR: string(newCSR(t, keys[i], nil))})
		expect(a, 201, "enroll", "allow", "")
		leaves = append(leaves, a)
	}
	owner := e.mtlsClient(tlsPair(t, leaves[0], keys[0]))
	renewed := e.raw(t, owner, "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
	expect(renewed, 201, "renew", "allow", "")
	expect(e.raw(t, owner, "/v1/jwt", "", map[string]any{"audience": []string{"vault"}}), 200, "jwt", "allow", "")

	// Operators: a revocation and reads.
	revoker := idp.Mint(t, map[string]any{"sub": "rita", "groups": []any{"pki-revokers"}})
	auditor := idp.Mint(t, map[string]any{"sub": "audrey", "groups": []any{"pki-auditors"}})
	victim := e.mtlsClient(tlsPair(t, leaves[1], keys[1]))
	expect(e.raw(t, e.client, "/v1/certificates/"+leaves[1].cert.Serial+"/revoke", revoker, map[string]string{"reason": "keyCompromise"}), 200, "revoke", "allow", "")
	for _, path := range []string{"/v1/certificates?limit=5", "/v1/audit?limit=5", "/v1/denials", "/v1/certificates/" + leaves[0].cert.Serial} {
		if res, body := e.getAs(t, auditor, path); res != 200 {
			t.Fatalf("auditor GET %s: %d %s", path, res, body)
		}
	}

	// Refusals.
	goodCSR := server.CertRequest{CSR: string(newCSR(t, p256(t), nil))}
	expect(e.raw(t, e.client, "/v1/enroll", "", goodCSR), 401, "enroll", "deny", "unauthorized")
	expect(e.raw(t, e.client, "/v1/enroll", "not.a-token", goodCSR), 401, "enroll", "deny", "token_malformed")
	expect(e.raw(t, e.client, "/v1/enroll", ci.GitHubToken(t, nil, testkit.WithIssuedAt(time.Now().Add(-2*time.Hour)), testkit.WithExpiry(time.Now().Add(-time.Hour))), goodCSR),
		401, "enroll", "deny", "token_expired")
	expect(e.raw(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": "evil/repo", "repository_owner": "evil"}), goodCSR),
		403, "enroll", "deny", "policy_denied")
	expect(e.raw(t, e.client, "/v1/enroll", ci.GitHubToken(t, nil), server.CertRequest{CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
		400, "enroll", "deny", "csr_malformed")
	replayed := ci.GitHubToken(t, map[string]any{"repository": "acme/replay"})
	expect(e.raw(t, e.client, "/v1/enroll", replayed, server.CertRequest{CSR: string(newCSR(t, p256(t), nil))}), 201, "enroll", "allow", "")
	expect(e.raw(t, e.client, "/v1/enroll", replayed, server.CertRequest{CSR: string(newCSR(t, p256(t), nil))}), 401, "enroll", "deny", "token_replayed")
	expect(e.raw(t, victim, "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, p256(t), nil))}), 403, "renew", "deny", "certificate_revoked")
	expect(e.raw(t, victim, "/v1/jwt", "", map[string]any{"audience": []string{"vault"}}), 403, "jwt", "deny", "certificate_revoked")
	expect(e.raw(t, e.client, "/v1/certificates/"+leaves[2].cert.Serial+"/revoke", auditor, map[string]string{"reason": "superseded"}), 403, "authz", "deny", "forbidden")
	expect(e.raw(t, e.client, "/v1/certificates/"+leaves[2].cert.Serial+"/revoke", "", map[string]string{"reason": "superseded"}), 401, "authz", "deny", "unauthorized")
	expect(e.raw(t, e.client, "/v1/certificates/"+leaves[2].cert.Serial+"/revoke", ci.GitHubToken(t, nil), map[string]string{"reason": "superseded"}), 401, "authz", "deny", "unauthorized")

	t.Run("every metric family is exposed with sensible values", func(t *testing.T) {
		fams := scrape(t, s.publicURL+"/metrics")
		checks := []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"ca_issuance_total", map[string]string{"action": "issue", "rule": "github-acme", "outcome": "issued"}, 4},
			{"ca_issuance_total", map[string]string{"action": "renew", "rule": "github-acme", "outcome": "issued"}, 1},
			{"ca_issuance_total", map[string]string{"action": "server", "rule": "none", "outcome": "issued"}, 1},
			{"ca_issuance_duration_seconds", map[string]string{"action": "issue", "outcome": "issued"}, 4},
			{"ca_enroll_decisions_total", map[string]string{"action": "enroll", "rule": "github-acme", "decision": "allow"}, 4},
			{"ca_enroll_decisions_total", map[string]string{"action": "enroll", "decision": "deny", "reason": "policy_denied"}, 1},
			{"ca_enroll_decisions_total", map[string]string{"action": "renew", "decision": "deny", "reason": "certificate_revoked"}, 1},
			{"ca_enroll_duration_seconds", map[string]string{"action": "enroll", "decision": "allow"}, 4},
			{"ca_enroll_duration_seconds", map[string]string{"action": "renew", "decision": "allow"}, 1},
			{"ca_jwt_decisions_total", map[string]string{"decision": "allow"}, 1},
			{"ca_hsm_sign_duration_seconds", map[string]string{"outcome": "ok"}, 6},
			// The store's statements are timed by their summary: the
			// revocation's UPDATE (keyCompromise revokes the lineage),
			// the replay marks (the replayed one ran well; its refusal is
			// the enrollment's token_replayed).
			{"ca_store_call_duration_seconds", map[string]string{"method": "UPDATE certificates", "outcome": "ok"}, 1},
			{"ca_store_call_duration_seconds", map[string]string{"method": "INSERT used_tokens", "outcome": "ok"}, 2},
			{"ca_enroll_decisions_total", map[string]string{"action": "enroll", "decision": "deny", "reason": "token_replayed"}, 1},
			{"ca_certificates", map[string]string{"status": "active"}, 5},
			{"ca_certificates", map[string]string{"status": "revoked"}, 1},
			{"ca_certificates_expiring", map[string]string{"within": "1h0m0s"}, 1},
			{"ca_bundle_sequence", nil, 1},
			{"ca_jwt_keys", map[string]string{"state": "active"}, 1},
			{"ca_inventory_read_success", nil, 1},
			{"ca_crl_number", nil, 1},
			{"ca_http_request_duration_seconds", map[string]string{"route": "/v1/enroll"}, 10},
			{"ca_operator_requests_denied_total", map[string]string{"reason": "forbidden"}, 1},
		}
		for _, c := range checks {
			if got := sumFamily(fams[c.name], c.labels); got < c.min {
				t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, got, c.min)
			}
		}
		// Every issuance's certificate row was written by a timed
		// statement: the group commit's pipeline, or a renewal's INSERT in
		// its transaction.
		if got := sumFamily(fams["ca_store_call_duration_seconds"], map[string]string{"method": "BATCH INSERT certificates", "outcome": "ok"}) +
			sumFamily(fams["ca_store_call_duration_seconds"], map[string]string{"method": "INSERT certificates", "outcome": "ok"}); got < 5 {
			t.Errorf("ca_store_call_duration_seconds{method=BATCH INSERT certificates or INSERT certificates, outcome=ok} = %v, want at least 5", got)
		}
		for _, m := range fams["ca_store_call_duration_seconds"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && strings.ContainsAny(l.GetValue(), "$?'(") {
					t.Errorf("ca_store_call_duration_seconds has method=%q: not a statement summary", l.GetValue())
				}
			}
		}
		if got := sumFamily(fams["ca_certificates"], map[string]string{"status": "revoked"}); got != 1 {
			t.Errorf("ca_certificates{status=revoked} = %v, want exactly 1", got)
		}
		// The CRL and OCSP ages are published per issuer and are small.
		for _, name := range []string{"ca_crl_age_seconds", "ca_ocsp_response_oldest_age_seconds"} {
			f := fams[name]
			if f == nil || len(f.GetMetric()) == 0 {
				t.Errorf("no %s", name)
				continue
			}
			for _, m := range f.GetMetric() {
				if v := m.GetGauge().GetValue(); v < 0 || v > 3600 {
					t.Errorf("%s%v = %v seconds", name, m.GetLabel(), v)
				}
			}
		}
	})

	s.stop(t)
	logs := s.stderr.String() + initLog

	t.Run("the log holds no PEM block, no JWT and no PIN", func(t *testing.T) {
		for _, secret := range []struct{ what, s string }{
			{"a PEM block", "-----BEGIN"},
			{"the user PIN", tok.Config.PIN},
			{"the SO PIN", tok.SOPIN},
			{"an enrollment token", replayed},
			{"an operator token", revoker},
		} {
			if secret.s != "" && strings.Contains(logs, secret.s) {
				t.Errorf("the log contains %s", secret.what)
			}
		}
		if m := jwtPattern.FindString(logs); m != "" {
			t.Errorf("the log contains a JWT: %.40s...", m)
		}
	})

	t.Run("every decision is one line with the incident fields", func(t *testing.T) {
		byID := map[string][]map[string]any{}
		sc := bufio.NewScanner(strings.NewReader(s.stderr.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil || line["msg"] != server.DecisionLogMessage {
				continue
			}
			id, _ := line["request_id"].(string)
			byID[id] = append(byID[id], line)
		}
		for _, c := range calls {
			lines := byID[c.requestID]
			if len(lines) != 1 {
				t.Errorf("%s %s: %d decision lines, want 1", c.action, c.requestID, len(lines))
				continue
			}
			l := lines[0]
			str := func(k string) string { v, _ := l[k].(string); return v }
			for _, k := range []string{"source", "destination", "decision", "reason", "serial", "issuer", "rule", "policy_version", "request_id", "status", "remote"} {
				if _, ok := l[k]; !ok {
					t.Errorf("%s %s: no %q in %v", c.action, c.requestID, k, l)
				}
			}
			if str("action") != c.action || str("decision") != c.decision || str("reason") != c.reason {
				t.Errorf("%s: action/decision/reason = %s/%s/%s, want %s/%s/%s", c.requestID, str("action"), str("decision"), str("reason"), c.action, c.decision, c.reason)
			}
			if str("source") == "" || str("policy_version") == "" {
				t.Errorf("%s %s: empty source or policy version: %v", c.action, c.requestID, l)
			}
			if c.decision == "allow" && (c.action == "enroll" || c.action == "renew") &&
				(str("serial") == "" || str("issuer") == "" || str("rule") != "github-acme" || !strings.HasPrefix(str("destination"), "spiffe://")) {
				t.Errorf("%s %s: an issuance names no serial, issuer, rule or identity: %v", c.action, c.requestID, l)
			}
			if c.action == "revoke" && (str("serial") != leaves[1].cert.Serial || str("source") != "corp-idp:rita") {
				t.Errorf("revoke: serial/source = %s/%s: %v", str("serial"), str("source"), l)
			}
		}
	})
}

// raw is post, with the answer's request id, for any 2xx body.
func (e *enrollE2E) raw(t *testing.T, c *http.Client, path, token string, body any) answer {
	t.Helper()
	buf, _ := json.Marshal(body)
	requestSeq++
	id := fmt.Sprintf("obs-%d-%d", time.Now().UnixNano(), requestSeq)
	req, _ := http.NewRequest(http.MethodPost, e.s.apiURL+path, bytes.NewReader(buf))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode, requestID: id}
	if res.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(got, &a.cert); err != nil {
			t.Fatal(err)
		}
	} else if res.StatusCode >= 400 {
		_ = json.Unmarshal(got, &a.problem)
	}
	return a
}

func (e *enrollE2E) getAs(t *testing.T, token, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.s.apiURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, body
}

// scrape fetches and parses a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// sumFamily adds the values (counter, gauge, or histogram sample count) of
// the family's metrics whose labels include want.
func sumFamily(f *dto.MetricFamily, want map[string]string) float64 {
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match != len(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}
