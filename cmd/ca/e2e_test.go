package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// caBinary is the real `ca` binary, built once for the package by TestMain.
var caBinary string

func TestMain(m *testing.M) {
	bin, cleanup, err := testkit.BuildCA(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caBinary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// runCA runs a short `ca` command to completion.
func runCA(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caBinary, args...)
	cmd.Env = testkit.ChildEnv(vars)
	cmd.Dir = t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running ca %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// servingCA is a running `ca serve` (testkit.ServeCA), with the fields the
// tests read.
type servingCA struct {
	proc              *caserve.Process
	cmd               *exec.Cmd
	stderr            *testkit.LockedBuffer
	apiURL, publicURL string
	exited            <-chan struct{} // closed when the process has exited
}

// startServe starts `ca serve` with vars plus fresh loopback listen
// addresses, and waits until the public listener answers /healthz.
func startServe(t *testing.T, vars map[string]string) *servingCA {
	t.Helper()
	p := testkit.ServeCA(t, caserve.Options{Bin: caBinary, Vars: vars, Dir: t.TempDir(), ReadyPath: "/healthz"})
	return &servingCA{proc: p, cmd: p.Cmd, stderr: p.StderrBuffer(), apiURL: p.APIURL, publicURL: p.PublicURL, exited: p.Done()}
}

// stop sends SIGTERM and expects a clean exit.
func (s *servingCA) stop(t *testing.T) {
	t.Helper()
	switch err := s.proc.Stop(30 * time.Second); {
	case errors.Is(err, caserve.ErrStillRunning):
		t.Fatal("ca serve did not exit within 30s of SIGTERM")
	case err != nil:
		t.Fatalf("ca serve did not exit cleanly after SIGTERM: %v\n%s", err, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no graceful stop logged:\n%s", s.stderr)
	}
}

// bundle reads the served /bundle.pem and returns it with a pool of its
// certificates.
func (s *servingCA) bundle(t *testing.T) ([]byte, *x509.CertPool) {
	t.Helper()
	bundle, roots, err := s.proc.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return bundle, roots
}

// openapiRouter is api/openapi.yaml with s's API listener as its server, to
// validate requests and answers against.
func (s *servingCA) openapiRouter(t *testing.T) routers.Router {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = openapi3.Servers{{URL: s.apiURL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// checkServing exercises /healthz, /readyz and /bundle.pem on both listeners,
// verifying the API listener's certificate against the served bundle. It
// returns the bundle.
func checkServing(t *testing.T, s *servingCA, trustDomain string) []byte {
	t.Helper()
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		if res, body := get(t, plain, s.publicURL+path); res.StatusCode != 200 {
			t.Fatalf("public %s = %d %s", path, res.StatusCode, body)
		}
	}
	res, bundle := get(t, plain, s.publicURL+"/bundle.pem")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pem-certificate-chain" || res.Header.Get("ETag") == "" {
		t.Fatalf("bundle: %d %v", res.StatusCode, res.Header)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatalf("bundle has no certificates: %q", bundle)
	}
	req, _ := http.NewRequest(http.MethodGet, s.publicURL+"/bundle.pem", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	if res304, err := plain.Do(req); err != nil || res304.StatusCode != 304 {
		t.Fatalf("If-None-Match: %v %v", res304, err)
	} else {
		res304.Body.Close()
	}

	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	for _, path := range []string{"/healthz", "/readyz", "/bundle.pem"} {
		res, body := get(t, tlsClient, s.apiURL+path)
		if res.StatusCode != 200 {
			t.Fatalf("API %s = %d %s", path, res.StatusCode, body)
		}
		if path == "/bundle.pem" && !bytes.Equal(body, bundle) {
			t.Error("the API listener serves another bundle")
		}
		leaf := res.TLS.PeerCertificates[0]
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://"+trustDomain+"/ca/server" {
			t.Errorf("API server certificate URIs = %v", leaf.URIs)
		}
		if leaf.NotAfter.Sub(leaf.NotBefore) > 25*time.Hour {
			t.Errorf("API server certificate lives %v, want about 24h", leaf.NotAfter.Sub(leaf.NotBefore))
		}
	}
	if res, _ := get(t, plain, s.publicURL+"/metrics"); res.StatusCode != 200 {
		t.Errorf("metrics = %d", res.StatusCode)
	}
	return bundle
}

func TestTheEmbeddedDefaultServesOnLoopbackAndStopsCleanly(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	vars := map[string]string{"CA_DATA_DIR": dataDir}
	s := startServe(t, vars)
	bundle := checkServing(t, s, "example.org")
	s.stop(t)
	if !strings.Contains(s.stderr.String(), "WARNING: DEVELOPMENT SETUP") || !strings.Contains(s.stderr.String(), `"level":"WARN","msg":"DEVELOPMENT SETUP`) {
		t.Errorf("development setup not announced loudly:\n%s", s.stderr)
	}
	for _, p := range []string{"ca.db", "keys"} {
		if _, err := os.Stat(filepath.Join(dataDir, p)); err != nil {
			t.Errorf("data dir lacks %s: %v", p, err)
		}
	}

	// A restart on the same data directory keeps the same CA.
	s2 := startServe(t, vars)
	if again := checkServing(t, s2, "example.org"); !bytes.Equal(again, bundle) {
		t.Error("restart changed the trust bundle")
	}
	s2.stop(t)
}

func TestProductionRunsOnPostgresAndSoftHSMAfterMigrateAndInit(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	token := testkit.SoftHSM(t)
	pin := token.PIN
	vars := map[string]string{
		"CA_DATABASE_URL":  dbURL,
		"CA_PKCS11_MODULE": token.Module,
		"CA_PKCS11_TOKEN":  token.TokenLabel,
		"CA_PKCS11_PIN":    pin,
		"CA_TRUST_DOMAIN":  "prod.example",
	}
	var logs strings.Builder
	step := func(wantCode int, wantOut string, args ...string) string {
		t.Helper()
		out, errOut, code := runCA(t, vars, args...)
		logs.WriteString(errOut)
		if code != wantCode || !strings.Contains(out+errOut, wantOut) {
			t.Fatalf("ca %v: exit %d (want %d), output does not contain %q:\n%s%s", args, code, wantCode, wantOut, out, errOut)
		}
		return out + errOut
	}

	// testkit migrated the database; take it back to empty to walk the whole path.
	// `migrate down` rolls back one migration per run.
	for v := int(storeopen.ExpectedVersion) - 1; v >= 0; v-- {
		step(0, fmt.Sprintf("schema version %d", v), "migrate", "down")
	}
	step(1, "run `ca migrate up`", "serve")
	current := fmt.Sprintf("schema version %d", storeopen.ExpectedVersion)
	step(0, current, "migrate", "up")
	step(0, current, "migrate", "version")
	step(1, "run `ca init`", "serve")
	step(0, "CA initialised", "init")
	step(0, "CA already initialised", "init")

	s := startServe(t, vars)
	checkServing(t, s, "prod.example")
	s.stop(t)
	logs.WriteString(s.stderr.String())
	if strings.Contains(s.stderr.String(), "DEVELOPMENT SETUP") {
		t.Error("production setup announced as development")
	}
	if strings.Contains(logs.String(), pin) {
		t.Error("the PKCS#11 PIN appears in the output")
	}
}

func TestBadInvocationsExitWithOneLineNamingTheProblem(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		args []string
		code int
		want string
	}{
		{"an invalid listen address names api_addr", map[string]string{"CA_API_ADDR": "nonsense"}, []string{"serve"}, 2, "api_addr:"},
		{"a non-loopback development listener is refused", map[string]string{"CA_PUBLIC_ADDR": "0.0.0.0:0"}, []string{"serve"}, 2, "public_addr:"},
		{"a PIN on the command line is not a flag", nil, []string{"serve", "--pin", "1234"}, 2, "flag provided but not defined: -pin"},
		{"an unknown subcommand is a usage error", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"migrate without a direction is a usage error", nil, []string{"migrate"}, 2, "ca migrate up|down|version"},
		{"a missing config file names config", map[string]string{"CA_CONFIG": "/nonexistent/ca.yaml"}, []string{"serve"}, 2, "config:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runCA(t, tt.vars, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d (want %d), stderr %q does not contain %q", code, tt.code, errOut, tt.want)
			}
			if tt.code == 2 && tt.args[0] == "serve" && strings.Count(strings.TrimSpace(lastLines(errOut)), "\n") != 0 {
				t.Errorf("not one line: %q", errOut)
			}
		})
	}
}

// lastLines drops the flag package's usage listing, keeping the error line.
func lastLines(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "ca ") {
			return l
		}
	}
	return s
}

func TestVersionPrintsTheSchemaVersion(t *testing.T) {
	out, _, code := runCA(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "ca ") || !strings.Contains(out, fmt.Sprintf("schema %d", storeopen.ExpectedVersion)) {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestAnUnknownYAMLFieldIsOneLineNamingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.yaml")
	if err := os.WriteFile(path, []byte("api_adr: 127.0.0.1:1\nserver:\n  body_limt: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCA(t, nil, "serve", "--config", path)
	if code != 2 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "api_adr") || !strings.Contains(errOut, "body_limt") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
