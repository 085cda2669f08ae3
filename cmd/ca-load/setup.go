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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

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
	cmd       *exec.Cmd
	exited    chan error
	apiURL    string
	publicURL string
	roots     *x509.CertPool
	logPath   string
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// caEnv is the environment of the `ca` child processes: this process's
// environment without CA_* variables, plus vars.
func caEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CA_") && !strings.HasPrefix(kv, "SOFTHSM2_CONF=") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// runCA runs a short `ca` command and returns its combined output.
func runCA(ctx context.Context, bin string, vars map[string]string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = caEnv(vars)
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
	bin, dir, logName := o.caBin, o.outDir, name+".log"
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	publicAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	all := map[string]string{"CA_API_ADDR": apiAddr, "CA_PUBLIC_ADDR": publicAddr}
	for k, v := range vars {
		all[k] = v
	}
	if o.cpuProfile {
		all["CA_CPU_PROFILE"] = filepath.Join(dir, name+".cpu.prof")
	}
	s := &serverProc{apiURL: "https://" + apiAddr, publicURL: "http://" + publicAddr, exited: make(chan error, 1),
		logPath: filepath.Join(dir, logName)}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = caEnv(all)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(90 * time.Second)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("ca serve exited early (%v); see %s", err, s.logPath)
		case <-time.After(100 * time.Millisecond):
		}
		if res, err := c.Get(s.publicURL + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("ca serve not ready within 90s; see %s", s.logPath)
		}
	}
	res, err := c.Get(s.publicURL + "/bundle.pem")
	if err != nil {
		s.stop()
		return nil, err
	}
	pemBytes, _ := io.ReadAll(res.Body)
	res.Body.Close()
	s.roots = x509.NewCertPool()
	if !s.roots.AppendCertsFromPEM(pemBytes) {
		s.stop()
		return nil, errors.New("the served bundle holds no certificate")
	}
	return s, nil
}

func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits (SIGKILL after 30s).
func (s *serverProc) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// apiClient is an HTTPS client for the API listener trusting the CA's
// roots, presenting certs, keeping up to conns connections alive.
func (s *serverProc) apiClient(conns int, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: s.roots, Certificates: certs, MinVersion: tls.VersionTLS12},
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
