package drills

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// caBinary is the real `ca`, built once by TestMain.
var caBinary string

func TestMain(m *testing.M) {
	if dbURL := os.Getenv(leaseHolderEnv); dbURL != "" {
		os.Exit(holdLease(dbURL)) // the partition drill's leader in its namespace
	}
	bin, cleanup, err := testkit.BuildCA("../../cmd/ca")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caBinary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

const (
	drillIssuer      = "https://drill-tokens.workload-ca.invalid"
	drillAudience    = "workload-ca-drill"
	drillTrustDomain = "drill.example"
	// drillRevoker is the token subject whose certificate the policy maps
	// to the revoker role.
	drillRevoker = "revoker"
)

// drillCA is a production-shaped CA (private Postgres, SoftHSM token, a
// policy trusting the drill token issuer through jwks_file) and the
// environment to run `ca serve` replicas on it.
type drillCA struct {
	pg    *privatePostgres
	dbURL string
	tok   testkit.SoftHSMToken
	key   jose.JSONWebKey
	vars  map[string]string
	dir   string
}

func newDrillCA(t *testing.T, config string) *drillCA {
	t.Helper()
	d := &drillCA{pg: newPrivatePostgres(t), dir: t.TempDir()}
	d.dbURL = d.pg.createDB("drill")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := storeopen.Migrate(ctx, d.dbURL, "up"); err != nil {
		t.Fatal(err)
	}
	d.tok = testkit.NewSoftHSMToken(t)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d.key = jose.JSONWebKey{Key: priv, KeyID: "drill", Algorithm: string(jose.ES256), Use: "sig"}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{d.key.Public()}})
	jwksPath := filepath.Join(d.dir, "jwks.json")
	policyPath := filepath.Join(d.dir, "policy.yaml")
	cfgPath := filepath.Join(d.dir, "ca.yaml")
	policy := `trust_domain: ` + drillTrustDomain + `
token_issuers:
  - name: drill
    issuer: ` + drillIssuer + `
    audience: ` + drillAudience + `
    jwks_file: ` + jwksPath + `
roles:
  - role: revoker
    client_spiffe_id: spiffe://` + drillTrustDomain + `/drill/` + drillRevoker + `
rules:
  - name: drill
    issuer: drill
    when: has(claims.sub) && claims.sub != ""
    spiffe_id: spiffe://` + drillTrustDomain + `/drill/{{claims.sub}}
    max_ttl: 1h
    ttl: 15m
`
	for path, body := range map[string]string{jwksPath: string(jwks), policyPath: policy, cfgPath: config} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.vars = map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": d.dbURL, "CA_PKCS11_MODULE": d.tok.Config.Module,
		"CA_PKCS11_TOKEN": d.tok.Config.TokenLabel, "CA_PKCS11_PIN": d.tok.Config.PIN,
		"CA_POLICY_FILE": policyPath, "CA_TRUST_DOMAIN": drillTrustDomain,
	}
	cmd := exec.Command(caBinary, "init")
	cmd.Env = testkit.ChildEnv(d.vars)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ca init: %v\n%s", err, out)
	}
	return d
}

// token mints a drill token for sub issued at iat.
func (d *drillCA) token(t *testing.T, sub string, iat time.Time) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: d.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: drillIssuer, Subject: sub, Audience: jwt.Audience{drillAudience},
		IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(10 * time.Minute)),
		ID: hex.EncodeToString(jti[:]),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// replica is one running `ca serve`.
type replica struct {
	proc              *caserve.Process
	stderr            *testkit.LockedBuffer
	apiURL, publicURL string
	client            *http.Client // HTTPS to the API listener, trusting the CA
}

// serve starts a replica and waits until /readyz answers 200.
func (d *drillCA) serve(t *testing.T) *replica {
	t.Helper()
	return d.serveWith(t, "", "", nil, nil)
}

// serveWith starts a replica listening on apiAddr and publicAddr (free
// loopback ports if empty), with vars overriding the CA's environment, run
// through wrap (say, `ip netns exec NAME`) when it is not empty.
func (d *drillCA) serveWith(t *testing.T, apiAddr, publicAddr string, vars map[string]string, wrap []string) *replica {
	t.Helper()
	all := map[string]string{}
	for k, v := range d.vars {
		all[k] = v
	}
	for k, v := range vars {
		all[k] = v
	}
	p := testkit.ServeCA(t, caserve.Options{Bin: caBinary, Vars: all, APIAddr: apiAddr, PublicAddr: publicAddr, Wrap: wrap})
	_, roots, err := p.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &replica{proc: p, stderr: p.StderrBuffer(), apiURL: p.APIURL, publicURL: p.PublicURL,
		client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (r *replica) kill9(t *testing.T) {
	t.Helper()
	if err := r.proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-r.proc.Done()
}

// readyz returns the public /readyz status code (0 if unreachable).
func (r *replica) readyz() int {
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(r.publicURL + "/readyz")
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// enrollAnswer is one enrollment's outcome as the client saw it.
type enrollAnswer struct {
	status int
	reason string
	serial string
	der    []byte
	chain  []byte // PEM intermediates
	key    *ecdsa.PrivateKey
	err    error // transport error (no answer)
}

// enroll posts a fresh CSR with token.
func (r *replica) enroll(t *testing.T, token string) enrollAnswer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return r.enrollKey(t, token, k)
}

// enrollKey posts a CSR for k with token.
func (r *replica) enrollKey(t *testing.T, token string, k *ecdsa.PrivateKey) enrollAnswer {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), "ttl": "15m"})
	req, _ := http.NewRequest(http.MethodPost, r.apiURL+"/v1/enroll", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := r.client.Do(req)
	if err != nil {
		return enrollAnswer{err: err}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return enrollAnswer{status: res.StatusCode, err: err}
	}
	a := enrollAnswer{status: res.StatusCode}
	if res.StatusCode == http.StatusCreated {
		var cr struct {
			Serial      string `json:"serial"`
			Certificate string `json:"certificate"`
			Chain       string `json:"chain"`
		}
		if err := json.Unmarshal(raw, &cr); err != nil {
			a.err = err
			return a
		}
		blk, _ := pem.Decode([]byte(cr.Certificate))
		if blk == nil {
			a.err = fmt.Errorf("no certificate PEM")
			return a
		}
		a.serial, a.der, a.chain, a.key = cr.Serial, blk.Bytes, []byte(cr.Chain), k
		return a
	}
	var p struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(raw, &p)
	a.reason = p.Reason
	return a
}

// load runs workers enrolling against r until stop is closed, collecting
// every answer.
type load struct {
	mu      sync.Mutex
	answers []enrollAnswer
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(t *testing.T, d *drillCA, target func() *replica, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				a := target().enroll(t, d.token(t, fmt.Sprintf("w%d", w), time.Now()))
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
				if a.err != nil {
					time.Sleep(20 * time.Millisecond) // server gone: do not spin
				}
			}
		}()
	}
	return l
}

func (l *load) halt() []enrollAnswer {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]enrollAnswer(nil), l.answers...)
}

// count returns how many answers so far satisfy ok.
func (l *load) count(ok func(enrollAnswer) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if ok(a) {
			n++
		}
	}
	return n
}

func issuedOK(a enrollAnswer) bool { return a.status == http.StatusCreated && a.err == nil }
