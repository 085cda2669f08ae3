package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/workload-ca/workload-ca/internal/testkit/caserve"
)

// The step-ca backend measures step-ca the way issue 20 compared it with the
// embedded default: `step ca init` standalone, its JWK provisioner, software
// keys and its default badger database, driven by this same client
// (keep-alive HTTPS, pre-minted one-time tokens, pre-made P-256 CSRs) at the
// embedded concurrency levels. It needs the step and step-ca binaries
// (--step, --step-ca); nothing of it runs in CI.

// stepCAPassword protects the throwaway CA's keys and provisioner key.
const stepCAPassword = "ca-load-bench"

// stepCA is a running step-ca and what its client needs.
type stepCA struct {
	cmd     *exec.Cmd
	url     string // https://127.0.0.1:port
	roots   *x509.CertPool
	rootFP  string // hex SHA-256 of the root certificate (the token's "sha")
	provKey *ecdsa.PrivateKey
	kid     string
}

func runStepCA(ctx context.Context, o options, dir string, rep *report, logf func(string, ...any)) error {
	s, err := startStepCA(ctx, o, dir)
	if err != nil {
		return err
	}
	defer s.stop()
	logf("step-ca pid %d: %s", s.cmd.Process.Pid, s.url)
	b := &bench{backend: "stepca", o: o, rep: rep, logf: logf}
	c := s.client(o.overloadConc)
	// Warm-up, unmeasured: connections, caches, badger's first tables.
	in, err := s.inputs(16 * 3 * 400)
	if err != nil {
		return err
	}
	closedLoop(ctx, 16, 3*time.Second, s.signFn(c, in))
	for _, conc := range o.embeddedConc {
		// Tokens are minted just before each run: the JWK provisioner
		// accepts tokens of at most five minutes.
		in, err := s.inputs(int(o.duration.Seconds()*4000) + 500)
		if err != nil {
			return err
		}
		if _, err := b.measure(ctx, "enroll", conc, 0, s.cmd.Process.Pid, false, func() (*recorder, time.Duration) {
			return closedLoop(ctx, conc, o.duration, s.signFn(c, in))
		}); err != nil {
			return err
		}
	}
	return nil
}

// startStepCA initialises a CA in dir/stepca and starts step-ca on a free
// loopback port; its log goes to o.outDir/step-ca.log.
func startStepCA(ctx context.Context, o options, dir string) (*stepCA, error) {
	if o.stepCLI == "" || o.stepCABin == "" {
		return nil, errors.New("the stepca backend needs --step and --step-ca")
	}
	steppath := filepath.Join(dir, "stepca")
	pw := filepath.Join(dir, "stepca-password")
	if err := os.WriteFile(pw, []byte(stepCAPassword), 0o600); err != nil {
		return nil, err
	}
	addr, err := caserve.FreeAddr()
	if err != nil {
		return nil, err
	}
	initCmd := exec.CommandContext(ctx, o.stepCLI, "ca", "init", "--deployment-type=standalone", "--name=ca-load",
		"--dns=127.0.0.1", "--address="+addr, "--provisioner=bench",
		"--password-file="+pw, "--provisioner-password-file="+pw)
	initCmd.Env = append(os.Environ(), "STEPPATH="+steppath)
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("step ca init: %w: %s", err, out)
	}
	s := &stepCA{url: "https://" + addr}
	if err := s.loadConfig(steppath); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(o.outDir, "step-ca.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	s.cmd = exec.Command(o.stepCABin, filepath.Join(steppath, "config", "ca.json"), "--password-file="+pw)
	s.cmd.Env = append(os.Environ(), "STEPPATH="+steppath)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	c := s.client(1)
	for deadline := time.Now().Add(30 * time.Second); ; {
		res, err := c.Get(s.url + "/health")
		if err == nil {
			drain(res)
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("step-ca did not answer /health: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loadConfig reads the root's fingerprint and decrypts the provisioner's
// key (a PBES2 JWE in ca.json) to mint tokens with.
func (s *stepCA) loadConfig(steppath string) error {
	rootPEM, err := os.ReadFile(filepath.Join(steppath, "certs", "root_ca.crt"))
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(rootPEM)
	if blk == nil {
		return errors.New("step-ca root: no PEM block")
	}
	sum := sha256.Sum256(blk.Bytes)
	s.rootFP = hex.EncodeToString(sum[:])
	s.roots = x509.NewCertPool()
	s.roots.AppendCertsFromPEM(rootPEM)
	raw, err := os.ReadFile(filepath.Join(steppath, "config", "ca.json"))
	if err != nil {
		return err
	}
	var cfg struct {
		Authority struct {
			Provisioners []struct {
				Name         string `json:"name"`
				EncryptedKey string `json:"encryptedKey"`
			} `json:"provisioners"`
		} `json:"authority"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("ca.json: %w", err)
	}
	if len(cfg.Authority.Provisioners) == 0 || cfg.Authority.Provisioners[0].Name != "bench" {
		return errors.New("ca.json: no provisioner named bench")
	}
	jwe, err := jose.ParseEncryptedCompact(cfg.Authority.Provisioners[0].EncryptedKey,
		[]jose.KeyAlgorithm{jose.PBES2_HS256_A128KW}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return fmt.Errorf("provisioner key: %w", err)
	}
	plain, err := jwe.Decrypt([]byte(stepCAPassword))
	if err != nil {
		return fmt.Errorf("provisioner key: %w", err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(plain); err != nil {
		return fmt.Errorf("provisioner key: %w", err)
	}
	k, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("provisioner key is a %T, not an ECDSA key", jwk.Key)
	}
	s.provKey, s.kid = k, jwk.KeyID
	return nil
}

func (s *stepCA) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func (s *stepCA) client(conns int) *http.Client { return httpsClient(s.roots, conns) }

// stepInput is one pre-minted one-time token and the CSR it allows.
type stepInput struct {
	ott    string
	csrPEM string
}

// inputs mints n one-time tokens (subject and DNS SAN wN.bench.test, a
// unique jti) and n P-256 CSRs to match.
func (s *stepCA) inputs(n int) (*pool[stepInput], error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.provKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	items, err := parallelMake(n, func(i int) (stepInput, error) {
		name := fmt.Sprintf("w%d.bench.test", i%100)
		claims := struct {
			jwt.Claims
			SHA  string   `json:"sha"`
			SANs []string `json:"sans"`
		}{
			Claims: jwt.Claims{
				Issuer: "bench", Subject: name, Audience: jwt.Audience{s.url + "/1.0/sign"},
				IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
				Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), ID: randHex(16),
			},
			SHA: s.rootFP, SANs: []string{name},
		}
		ott, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			return stepInput{}, err
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return stepInput{}, err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		}, k)
		if err != nil {
			return stepInput{}, err
		}
		return stepInput{ott: ott, csrPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}, nil
	})
	if err != nil {
		return nil, err
	}
	return &pool[stepInput]{items: items}, nil
}

// signFn asks step-ca's /1.0/sign for a certificate with the next input.
func (s *stepCA) signFn(c *http.Client, in *pool[stepInput]) requestFunc {
	return func(ctx context.Context) error {
		e, err := in.take()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]string{"csr": e.csrPEM, "ott": e.ott})
		got, err := postJSON(ctx, c, s.url+"/1.0/sign", "", body, http.StatusCreated)
		if err != nil {
			return err
		}
		var res struct {
			Crt string `json:"crt"`
		}
		if err := json.Unmarshal(got, &res); err != nil || res.Crt == "" {
			return fmt.Errorf("step-ca answered no certificate: %.200s", got)
		}
		return nil
	}
}
