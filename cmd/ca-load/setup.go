package main

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
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// The bench token issuer: its key lives only in the load generator, its JWKS
// in a file the server's policy trusts (jwks_file).
const (
	benchTokenIssuer   = "https://bench-tokens.workload-ca.invalid"
	benchTokenAudience = "workload-ca-bench"
	benchTrustDomain   = "bench.example"
)

// softhsmToken is a SoftHSM token in its own token directory.
type softhsmToken struct {
	conf string // SOFTHSM2_CONF
	cfg  hsm.PKCS11Config
}

// newSoftHSMToken initialises one token with softhsm2-util in a private
// token directory under dir.
func newSoftHSMToken(dir, module string) (*softhsmToken, error) {
	tokdir := filepath.Join(dir, "softhsm-tokens")
	if err := os.MkdirAll(tokdir, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokdir)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	pin, so := randHex(8), randHex(8)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "wca-bench", "--so-pin", so, "--pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return &softhsmToken{conf: conf, cfg: hsm.PKCS11Config{Module: module, TokenLabel: "wca-bench", PIN: pin}}, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// benchDatabase creates and migrates a fresh database on the server at
// adminURL and returns its URL and a function that drops it.
func benchDatabase(ctx context.Context, adminURL string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("postgres admin connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := "wca_bench_" + randHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		drop()
		return "", nil, errors.New("the admin URL is not a URL")
	}
	u.Path = "/" + name
	if err := storeopen.Migrate(ctx, u.String(), "up"); err != nil {
		drop()
		return "", nil, fmt.Errorf("migrate: %w", err)
	}
	return u.String(), drop, nil
}

// tokenIssuer is the bench token issuer's key and the files the server reads.
type tokenIssuer struct {
	key        jose.JSONWebKey
	policyPath string
}

func newTokenIssuer(dir string) (*tokenIssuer, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ti := &tokenIssuer{key: jose.JSONWebKey{Key: priv, KeyID: "bench-" + randHex(4), Algorithm: string(jose.ES256), Use: "sig"}}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{ti.key.Public()}})
	if err != nil {
		return nil, err
	}
	jwksPath := filepath.Join(dir, "bench-jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o644); err != nil {
		return nil, err
	}
	policy := `trust_domain: ` + benchTrustDomain + `
token_issuers:
  - name: bench
    issuer: ` + benchTokenIssuer + `
    audience: ` + benchTokenAudience + `
    jwks_file: ` + jwksPath + `
rules:
  - name: bench-load
    issuer: bench
    when: has(claims.sub) && claims.sub != ""
    spiffe_id: spiffe://` + benchTrustDomain + `/load/{{claims.sub}}
    max_ttl: 1h
    ttl: 15m
`
	ti.policyPath = filepath.Join(dir, "bench-policy.yaml")
	if err := os.WriteFile(ti.policyPath, []byte(policy), 0o644); err != nil {
		return nil, err
	}
	return ti, nil
}

// serverProc is a running `ca serve`.
type serverProc struct {
	proc      *caserve.Process
	apiURL    string
	publicURL string
	roots     *x509.CertPool
	logPath   string
}

// caDropEnv are the variables of this process's environment, besides CA_*,
// that the `ca` child processes do not inherit.
var caDropEnv = []string{"SOFTHSM2_CONF"}

// runCA runs a short `ca` command and returns its combined output.
func runCA(ctx context.Context, bin string, vars map[string]string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = caserve.Env(vars, caDropEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ca %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// startServer starts o.caBin's `ca serve` with vars, logging to
// o.outDir/name.log (and, with o.cpuProfile, profiling to name.cpu.prof),
// and waits until /readyz answers 200 and the bundle can be read.
func startServer(ctx context.Context, o options, vars map[string]string, name string) (*serverProc, error) {
	bin, dir := o.caBin, o.outDir
	if o.cpuProfile {
		vars = maps.Clone(vars) // the caller's map stays as it was
		vars["CA_CPU_PROFILE"] = filepath.Join(dir, name+".cpu.prof")
	}
	s := &serverProc{logPath: filepath.Join(dir, name+".log")}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	// The child writes to its own copy of the file descriptor.
	defer logf.Close()
	s.proc, err = caserve.Start(ctx, caserve.Options{
		Bin: bin, Vars: vars, DropEnv: caDropEnv, Stdout: logf, Stderr: logf,
		ReadyWithin: 90 * time.Second, Poll: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("%w; see %s", err, s.logPath)
	}
	s.apiURL, s.publicURL = s.proc.APIURL, s.proc.PublicURL
	if _, s.roots, err = s.proc.Bundle(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *serverProc) pid() int { return s.proc.Cmd.Process.Pid }

// stop sends SIGTERM and waits (SIGKILL after 30s).
func (s *serverProc) stop() {
	if err := s.proc.Stop(30 * time.Second); err != nil && !s.proc.Exited() {
		s.proc.Kill()
	}
}

// apiClient is an HTTPS client for the API listener trusting the CA's
// roots, presenting certs, keeping up to conns connections alive.
func (s *serverProc) apiClient(conns int, certs ...tls.Certificate) *http.Client {
	return httpsClient(s.roots, conns, certs...)
}

// httpsClient is an HTTPS client trusting roots, presenting certs, keeping
// up to conns connections alive.
func httpsClient(roots *x509.CertPool, conns int, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
	}}
}

// plainClient is an HTTP client keeping up to conns connections alive.
func plainClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}}
}

// drain reads and closes a response body so the connection is reused.
func drain(res *http.Response) []byte {
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, res.Body)
	res.Body.Close()
	return buf.Bytes()
}
