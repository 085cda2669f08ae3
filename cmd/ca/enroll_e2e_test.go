package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-jose/go-jose/v4"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

const e2eTrustDomain = "e2e.example"

// e2ePolicy maps the three token shapes of one test OIDC issuer to
// identities.
func e2ePolicy(issuerURL string) string {
	return `trust_domain: ` + e2eTrustDomain + `
token_issuers:
  - name: ci
    issuer: ` + issuerURL + `
    audience: ` + testkit.DefaultOIDCAudience + `
rules:
  - name: github-acme
    issuer: ci
    when: has(claims.job_workflow_ref) && claims.repository_owner == "acme"
    spiffe_id: spiffe://` + e2eTrustDomain + `/gh/{{claims.repository|path}}
    max_ttl: 1h
    ttl: 15m
  - name: gitlab-platform
    issuer: ci
    when: has(claims.project_path) && claims.project_path.startsWith("platform/")
    spiffe_id: spiffe://` + e2eTrustDomain + `/gitlab/{{claims.project_path|path}}
    max_ttl: 1h
  - name: k8s-payments
    issuer: ci
    when: '"kubernetes.io" in claims && claims["kubernetes.io"].namespace == "payments"'
    spiffe_id: spiffe://` + e2eTrustDomain + `/ns/{{claims["kubernetes.io"].namespace}}/sa/{{claims["kubernetes.io"].serviceaccount.name}}
    max_ttl: 2h
`
}

// issuerCAFile writes the test OIDC issuer's TLS certificate as a PEM file
// for enroll.token_issuer_ca_file.
func issuerCAFile(t *testing.T, o *testkit.OIDCIssuer, dir string) string {
	t.Helper()
	host := strings.TrimPrefix(o.URL, "https://")
	conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var buf bytes.Buffer
	for _, c := range conn.ConnectionState().PeerCertificates {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	path := filepath.Join(dir, "oidc-ca.pem")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// enrollE2E is a production `ca serve` (Postgres, SoftHSM) with a policy
// trusting a test OIDC issuer.
type enrollE2E struct {
	s          *servingCA
	vars       map[string]string
	dir        string
	policyPath string
	oidc       *testkit.OIDCIssuer
	st         store.Store
	roots      *x509.CertPool
	bundle     []byte
	client     *http.Client
	openapi    routers.Router
	consumed   map[int64]bool // audit entries waitAudit has matched
}

func startEnrollE2E(t *testing.T) *enrollE2E {
	t.Helper()
	return startEnrollE2EOn(t, testkit.SoftHSM(t), nil)
}

// startEnrollE2EOn is startEnrollE2E on the token tok, with extra
// environment for the CA (CA_ISSUER_KEY_TYPE, ...).
func startEnrollE2EOn(t *testing.T, tok hsm.PKCS11Config, extra map[string]string) *enrollE2E {
	t.Helper()
	dbURL := testkit.PostgresURL(t)
	oidc := testkit.NewOIDCIssuer(t)
	dir := t.TempDir()
	e := &enrollE2E{dir: dir, oidc: oidc, policyPath: filepath.Join(dir, "policy.yaml")}
	if err := os.WriteFile(e.policyPath, []byte(e2ePolicy(oidc.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ca.yaml")
	cfg := "enroll:\n  token_issuer_ca_file: " + issuerCAFile(t, oidc, dir) + "\n  jwks_min_refresh_interval: 1ms\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.vars = map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Module,
		"CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": e.policyPath,
	}
	for k, v := range extra {
		e.vars[k] = v
	}
	if out, errOut, code := runCA(t, e.vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	e.s = startServe(t, e.vars)
	e.bundle, e.roots = e.s.bundle(t)
	e.client = e.mtlsClient()
	st, err := storeopen.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st

	e.openapi = e.s.openapiRouter(t)
	return e
}

func (e *enrollE2E) mtlsClient(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: e.roots, Certificates: certs, MinVersion: tls.VersionTLS12,
	}}}
}

// answer is one HTTP exchange, validated against api/openapi.yaml.
type answer struct {
	status    int
	requestID string
	problem   server.Problem
	cert      server.CertResponse
}

var requestSeq int

// post sends body (a value to encode as JSON, or raw []byte) to path with an
// optional bearer token.
func (e *enrollE2E) post(t *testing.T, c *http.Client, path, token string, body any) answer {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		raw, _ = json.Marshal(body)
	}
	requestSeq++
	id := fmt.Sprintf("e2e-%d-%d", time.Now().UnixNano(), requestSeq)
	req, _ := http.NewRequest(http.MethodPost, e.s.apiURL+path, bytes.NewReader(raw))
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
	} else {
		_ = json.Unmarshal(got, &a.problem)
	}
	if len(raw) < 64<<10 {
		req.Body = io.NopCloser(bytes.NewReader(raw))
		e.validate(t, req, res, got)
	}
	return a
}

func (e *enrollE2E) validate(t *testing.T, req *http.Request, res *http.Response, body []byte) {
	t.Helper()
	route, params, err := e.openapi.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s not in api/openapi.yaml: %v", req.Method, req.URL, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 res.StatusCode, Header: res.Header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s -> %d does not match api/openapi.yaml: %v\n%s", req.Method, req.URL.Path, res.StatusCode, err, body)
	}
}

// denial finds the audit entry of a refused request.
func (e *enrollE2E) denial(t *testing.T, requestID string) (store.AuditEntry, bool) {
	t.Helper()
	var after int64
	for {
		entries, err := e.st.AuditEntries(context.Background(), after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if en.RequestID == requestID && en.Decision == "deny" {
				return en, true
			}
		}
		if len(entries) < 500 {
			return store.AuditEntry{}, false
		}
		after = entries[len(entries)-1].Seq
	}
}

func newCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func leafOf(t *testing.T, a answer) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(a.cert.Certificate))
	if b == nil {
		t.Fatalf("no certificate in %+v", a)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tlsPair(t *testing.T, a answer, key crypto.Signer) tls.Certificate {
	t.Helper()
	pair := tls.Certificate{PrivateKey: key, Certificate: [][]byte{leafOf(t, a).Raw}}
	for rest := []byte(a.cert.Chain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		pair.Certificate = append(pair.Certificate, b.Bytes)
	}
	return pair
}

func TestEnrollAndRenewEndToEndOnPostgresAndSoftHSM(t *testing.T) {
	e := startEnrollE2E(t)
	o := e.oidc

	// Three CI shapes get the identities the policy says, each chaining to
	// the served bundle.
	shapes := []struct {
		name, token, want string
		ttl               string
	}{
		{"a GitHub Actions token", o.GitHubToken(t, nil), "spiffe://e2e.example/gh/acme/payments", "10m"},
		{"a GitLab CI token", o.GitLabToken(t, nil), "spiffe://e2e.example/gitlab/platform/billing", ""},
		{"a Kubernetes service-account token", o.KubernetesToken(t, "payments", "api", nil), "spiffe://e2e.example/ns/payments/sa/api", "90m"},
	}
	var ghKey *ecdsa.PrivateKey
	var ghAnswer answer
	for _, sh := range shapes {
		t.Run(sh.name+" enrolls as "+sh.want, func(t *testing.T) {
			key := p256(t)
			a := e.post(t, e.client, "/v1/enroll", sh.token, server.CertRequest{CSR: string(newCSR(t, key, nil)), TTL: sh.ttl})
			if a.status != http.StatusCreated {
				t.Fatalf("%d %s: %s", a.status, a.problem.Reason, a.problem.Detail)
			}
			leaf := leafOf(t, a)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != sh.want || a.cert.SPIFFEID != sh.want {
				t.Fatalf("identity %v / %s, want %s", leaf.URIs, a.cert.SPIFFEID, sh.want)
			}
			inter := x509.NewCertPool()
			inter.AppendCertsFromPEM([]byte(a.cert.Chain))
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("does not chain to the bundle: %v", err)
			}
			rec, err := e.st.GetCertificate(context.Background(), a.cert.Serial)
			if err != nil || rec.SPIFFEID != sh.want || len(rec.Provenance) == 0 {
				t.Errorf("record %+v %v", rec, err)
			}
			if strings.Contains(string(rec.Provenance), sh.token) {
				t.Error("the token is stored in the provenance")
			}
			if sh.want == shapes[0].want {
				ghKey, ghAnswer = key, a
			}
		})
	}
	if ghKey == nil {
		t.Fatal("the GitHub enrollment failed")
	}

	t.Run("after the issuer rotates its key, tokens signed with the new key enroll", func(t *testing.T) {
		newKID := o.RotateKey(false)
		tok := o.GitHubToken(t, nil)
		if o.KID(jose.ES256) != newKID {
			t.Fatal("rotation did not take")
		}
		a := e.post(t, e.client, "/v1/enroll", tok, server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
		if a.status != http.StatusCreated {
			t.Fatalf("%d %s: %s", a.status, a.problem.Reason, a.problem.Detail)
		}
	})

	t.Run("renewal over mTLS keeps the identity and links to the old certificate", func(t *testing.T) {
		newKey := p256(t)
		a := e.post(t, e.mtlsClient(tlsPair(t, ghAnswer, ghKey)), "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, newKey, nil))})
		if a.status != http.StatusCreated {
			t.Fatalf("%d %s: %s", a.status, a.problem.Reason, a.problem.Detail)
		}
		if a.cert.SPIFFEID != ghAnswer.cert.SPIFFEID || a.cert.Serial == ghAnswer.cert.Serial {
			t.Errorf("renewed %+v", a.cert)
		}
		rec, err := e.st.GetCertificate(context.Background(), a.cert.Serial)
		if err != nil || rec.RenewedFrom != ghAnswer.cert.Serial || rec.PolicyRule != "github-acme" {
			t.Fatalf("record %+v %v", rec, err)
		}
		if !strings.Contains(string(rec.Origin), "acme/payments") || strings.Contains(string(rec.Provenance), "token_claims") {
			t.Errorf("the renewal's record does not find the enrollment's provenance in its lineage (or repeats it): origin %s, provenance %s", rec.Origin, rec.Provenance)
		}
	})

	other := testkit.NewOIDCIssuer(t)
	replayed := o.GitHubToken(t, nil)
	if a := e.post(t, e.client, "/v1/enroll", replayed, server.CertRequest{CSR: string(newCSR(t, p256(t), nil))}); a.status != 201 {
		t.Fatalf("first use of the replayed token: %d %s", a.status, a.problem.Reason)
	}
	goodCSR := string(newCSR(t, p256(t), nil))
	badSig := func() string {
		b, _ := pem.Decode(newCSR(t, p256(t), nil))
		b.Bytes[len(b.Bytes)-1] ^= 0x01
		return string(pem.EncodeToMemory(b))
	}()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	caTrue, _ := asn1.Marshal(struct{ IsCA bool }{true})
	now := time.Now()
	hostile := []struct {
		name   string
		token  string
		csr    string
		ttl    string
		status int
		reason server.Reason
	}{
		{"an alg none token is token_bad_signature", o.UnsignedToken(t, map[string]any{"sub": "x"}), goodCSR, "", 401, server.ReasonTokenBadSignature},
		{"an HS256 token keyed with the issuer's public key is token_bad_signature", o.HMACTokenWithPublicKey(t, map[string]any{"sub": "x"}), goodCSR, "", 401, server.ReasonTokenBadSignature},
		{"an unknown kid is token_bad_signature", o.GitHubToken(t, nil, testkit.WithKID("no-such-kid")), goodCSR, "", 401, server.ReasonTokenBadSignature},
		{"an expired token is token_expired", o.GitHubToken(t, nil, testkit.WithIssuedAt(now.Add(-30*time.Minute)), testkit.WithLifetime(10*time.Minute)), goodCSR, "", 401, server.ReasonTokenExpired},
		{"a token not yet valid is token_not_yet_valid", o.GitHubToken(t, nil, testkit.WithIssuedAt(now.Add(10*time.Minute))), goodCSR, "", 401, server.ReasonTokenNotYetValid},
		{"a token for another audience is token_wrong_audience", o.GitHubToken(t, map[string]any{"aud": "https://elsewhere.example"}), goodCSR, "", 401, server.ReasonTokenWrongAudience},
		{"a token of an untrusted issuer is token_unknown_issuer", other.GitHubToken(t, nil), goodCSR, "", 401, server.ReasonTokenUnknownIssuer},
		{"a replayed token is token_replayed", replayed, goodCSR, "", 401, server.ReasonTokenReplayed},
		{"an oversized token is token_malformed", o.GitHubToken(t, map[string]any{"padding": strings.Repeat("a", 20<<10)}), goodCSR, "", 401, server.ReasonTokenMalformed},
		{"a malformed token is token_malformed", "not.a.jwt", goodCSR, "", 401, server.ReasonTokenMalformed},
		{"a claim that injects a path into the SPIFFE ID is policy_denied", o.GitHubToken(t, map[string]any{"repository": "acme/../../admin"}), goodCSR, "", 403, server.ReasonPolicyDenied},
		{"a CSR with a bad signature is csr_bad_signature", o.GitHubToken(t, nil), badSig, "", 400, server.ReasonCSRBadSignature},
		{"a 1024-bit RSA key is csr_weak_key", o.GitHubToken(t, nil), string(newCSR(t, rsa1024, nil)), "", 400, server.ReasonCSRWeakKey},
		{"a CA:true request is csr_forbidden_extension", o.GitHubToken(t, nil), string(newCSR(t, p256(t), &x509.CertificateRequest{
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}}})), "", 400, server.ReasonCSRForbiddenExtension},
		{"a ttl above the rule's max_ttl is ttl_too_long", o.GitHubToken(t, nil), goodCSR, "2h", 400, server.ReasonTTLTooLong},
		{"a request without Authorization is unauthorized", "", goodCSR, "", 401, server.ReasonUnauthorized},
	}
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			a := e.post(t, e.client, "/v1/enroll", h.token, server.CertRequest{CSR: h.csr, TTL: h.ttl})
			if a.status != h.status || a.problem.Reason != h.reason {
				t.Fatalf("got %d %s (%s), want %d %s", a.status, a.problem.Reason, a.problem.Detail, h.status, h.reason)
			}
			d, ok := e.denial(t, a.requestID)
			if !ok || d.Action != "enroll" || d.Reason != string(h.reason) {
				t.Fatalf("no denial record for %s: %+v", a.requestID, d)
			}
			if h.token != "" && strings.Contains(string(d.Details), h.token) {
				t.Error("the denial record carries the token")
			}
		})
	}

	t.Run("a body above the limit is body_too_large", func(t *testing.T) {
		a := e.post(t, e.client, "/v1/enroll", o.GitHubToken(t, nil), []byte(`{"csr":"`+strings.Repeat("A", 70<<10)+`"}`))
		if a.status != http.StatusRequestEntityTooLarge || a.problem.Reason != server.ReasonBodyTooLarge {
			t.Fatalf("got %d %s", a.status, a.problem.Reason)
		}
	})

	t.Run("renew without a client certificate is unauthorized", func(t *testing.T) {
		a := e.post(t, e.client, "/v1/renew", "", server.CertRequest{CSR: goodCSR})
		if a.status != 401 || a.problem.Reason != server.ReasonUnauthorized {
			t.Fatalf("got %d %s", a.status, a.problem.Reason)
		}
		if _, ok := e.denial(t, a.requestID); !ok {
			t.Error("not audited")
		}
	})

	t.Run("renew with a revoked certificate is certificate_revoked", func(t *testing.T) {
		key := p256(t)
		a := e.post(t, e.client, "/v1/enroll", o.GitLabToken(t, nil), server.CertRequest{CSR: string(newCSR(t, key, nil))})
		if a.status != 201 {
			t.Fatalf("enroll: %d %s", a.status, a.problem.Reason)
		}
		if _, _, err := e.st.RevokeCertificate(context.Background(), a.cert.Serial, time.Now(), "keyCompromise",
			store.AuditEntry{Time: time.Now(), Actor: "e2e", Action: "revoke", Target: a.cert.Serial, Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
		r := e.post(t, e.mtlsClient(tlsPair(t, a, key)), "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
		if r.status != http.StatusForbidden || r.problem.Reason != server.ReasonCertificateRevoked {
			t.Fatalf("got %d %s", r.status, r.problem.Reason)
		}
		if d, ok := e.denial(t, r.requestID); !ok || d.Action != "renew" || d.Target != a.cert.Serial {
			t.Errorf("denial record %+v", d)
		}
	})

	t.Run("renew with the same key is key_reused", func(t *testing.T) {
		key := p256(t)
		a := e.post(t, e.client, "/v1/enroll", o.KubernetesToken(t, "payments", "api", nil), server.CertRequest{CSR: string(newCSR(t, key, nil))})
		r := e.post(t, e.mtlsClient(tlsPair(t, a, key)), "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, key, nil))})
		if r.status != http.StatusBadRequest || r.problem.Reason != server.ReasonKeyReused {
			t.Fatalf("got %d %s", r.status, r.problem.Reason)
		}
	})

	t.Run("ca enroll --token-file and ca renew work as commands", func(t *testing.T) {
		out := t.TempDir()
		tokFile := filepath.Join(out, "token")
		if err := os.WriteFile(tokFile, []byte(o.GitHubToken(t, nil)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		roots := parseCerts(e.bundle)
		f := func(n string) string { return filepath.Join(out, n) }
		stdout, stderr, code := runCA(t, nil, "enroll", "--server", e.s.apiURL, "--token-file", tokFile,
			"--ca-fingerprint", fingerprint(roots[0]), "--key", f("key.pem"), "--cert", f("cert.pem"),
			"--chain", f("chain.pem"), "--bundle", f("bundle.pem"))
		if code != 0 || !strings.Contains(stdout, "spiffe://e2e.example/gh/acme/payments") {
			t.Fatalf("ca enroll: %d\n%s%s", code, stdout, stderr)
		}
		if fi, err := os.Stat(f("key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v %v", fi.Mode(), err)
		}
		first, _ := currentLeaf(f("cert.pem"))
		stdout, stderr, code = runCA(t, nil, "renew", "--server", e.s.apiURL, "--key", f("key.pem"), "--cert", f("cert.pem"),
			"--chain", f("chain.pem"), "--bundle", f("bundle.pem"), "--exec", "touch "+f("reloaded"))
		if code != 0 {
			t.Fatalf("ca renew: %d\n%s%s", code, stdout, stderr)
		}
		second, _ := currentLeaf(f("cert.pem"))
		if second.SerialNumber.Cmp(first.SerialNumber) == 0 || second.URIs[0].String() != first.URIs[0].String() {
			t.Errorf("renewal did not replace the certificate with the same identity")
		}
		if _, err := tls.LoadX509KeyPair(f("cert.pem"), f("key.pem")); err != nil {
			t.Errorf("key and certificate do not match after renewal: %v", err)
		}
		if _, err := os.Stat(f("reloaded")); err != nil {
			t.Error("the reload hook did not run")
		}
		// A wrong pin is refused before any token is sent.
		_, stderr, code = runCA(t, nil, "enroll", "--server", e.s.apiURL, "--token-file", tokFile,
			"--ca-fingerprint", "sha256:"+strings.Repeat("00", 32), "--cert", f("x.pem"), "--key", f("xk.pem"))
		if code == 0 || !strings.Contains(stderr, "no pinned root") {
			t.Errorf("a wrong pin: %d %s", code, stderr)
		}
	})

	t.Run("SIGHUP reloads the policy, refuses a broken one, and audits both", func(t *testing.T) {
		if err := os.WriteFile(e.policyPath, []byte("trust_domain: e2e.example\nrules: [\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := e.s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		e.waitAudit(t, "policy_reload", "deny")
		// The old policy still enrolls.
		freshKey := p256(t)
		fresh := e.post(t, e.client, "/v1/enroll", o.GitHubToken(t, nil), server.CertRequest{CSR: string(newCSR(t, freshKey, nil))})
		if fresh.status != 201 {
			t.Fatalf("after a refused reload: %d %s", fresh.status, fresh.problem.Reason)
		}
		// A policy without the GitHub rule takes effect.
		trimmed := strings.Split(e2ePolicy(o.URL), "  - name: gitlab-platform")[0]
		trimmed = strings.Replace(trimmed, "rules:\n  - name: github-acme", "rules:\n  - name: github-other", 1)
		trimmed = strings.Replace(trimmed, `"acme"`, `"other"`, 1)
		if err := os.WriteFile(e.policyPath, []byte(trimmed), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = e.s.cmd.Process.Signal(syscall.SIGHUP)
		e.waitAudit(t, "policy_reload", "allow")
		a := e.post(t, e.client, "/v1/enroll", o.GitHubToken(t, nil), server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
		if a.status != 403 || a.problem.Reason != server.ReasonPolicyDenied {
			t.Fatalf("after the reload: %d %s", a.status, a.problem.Reason)
		}
		// A renewal under the removed rule is refused too (a certificate
		// not renewed before: ghAnswer's was, so it is superseded).
		r := e.post(t, e.mtlsClient(tlsPair(t, fresh, freshKey)), "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
		if r.status != 403 || r.problem.Reason != server.ReasonPolicyDenied {
			t.Fatalf("renewal under a removed rule: %d %s", r.status, r.problem.Reason)
		}
	})
	t.Run("production never writes the development policy and refuses ca dev-token", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(e.s.cmd.Dir, "ca-data", devPolicyFile)); !os.IsNotExist(err) {
			t.Errorf("a development policy exists in production: %v", err)
		}
		_, stderr, code := runCA(t, e.vars, "dev-token", "--sub", "x")
		if code != exitUsage || !strings.Contains(stderr, "development setup") {
			t.Errorf("ca dev-token in production: %d %s", code, stderr)
		}
	})
	e.s.stop(t)
}

// waitAudit polls the audit log for an entry (the reload runs
// asynchronously to the signal).
func (e *enrollE2E) waitAudit(t *testing.T, action, decision string) {
	t.Helper()
	testkit.EventuallyTrue(t, 20*time.Second, "a new "+action+" "+decision+" audit entry", func() bool {
		entries, err := e.st.AuditEntries(context.Background(), 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if en.Action == action && en.Decision == decision && !e.consumed[en.Seq] {
				if e.consumed == nil {
					e.consumed = map[int64]bool{}
				}
				e.consumed[en.Seq] = true
				return true
			}
		}
		return false
	})
}
