package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// The client side of /v1/enroll and /v1/renew, shared by `ca enroll` and
// `ca renew`.

// problemError is a problem+json answer of the CA.
type problemError struct {
	Status int
	Reason string
	Detail string
}

func (e *problemError) Error() string {
	return fmt.Sprintf("the CA refused: %d %s: %s", e.Status, e.Reason, e.Detail)
}

// maxAnswerBytes bounds what the client reads from the CA.
const maxAnswerBytes = 1 << 20

// Shed requests (503 overloaded) did nothing at the CA, the token is not
// spent: requestCert waits the answer's Retry-After plus up to half of it
// again at random (so that the clients a CA shed together do not come back
// together) and tries again, up to maxShedRetries times.
const (
	maxShedRetries = 6
	maxShedWait    = time.Minute // bound on one Retry-After
)

// shedWait waits d or until ctx ends; tests replace it.
var shedWait = clock.Sleep

// retryAfterWithJitter is the wait after a shed answer: Retry-After seconds
// (1 when missing or malformed, at most maxShedWait) plus up to half again.
func retryAfterWithJitter(h string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || secs < 1 {
		secs = 1
	}
	d := min(time.Duration(secs)*time.Second, maxShedWait)
	return d + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// requestCert POSTs a CSR to url (enroll with a bearer token, or renew over
// the client's mTLS connection) and returns the issued certificate. A 503
// overloaded answer is retried after its Retry-After with jitter.
func requestCert(ctx context.Context, c *http.Client, url, token string, csrPEM []byte, ttl time.Duration) (*server.CertResponse, error) {
	for attempt := 0; ; attempt++ {
		cr, retryAfter, err := requestCertOnce(ctx, c, url, token, csrPEM, ttl)
		var p *problemError
		if err == nil || attempt >= maxShedRetries || !errors.As(err, &p) || p.Reason != string(server.ReasonOverloaded) {
			return cr, err
		}
		if werr := shedWait(ctx, retryAfterWithJitter(retryAfter)); werr != nil {
			return nil, err
		}
	}
}

func requestCertOnce(ctx context.Context, c *http.Client, url, token string, csrPEM []byte, ttl time.Duration) (*server.CertResponse, string, error) {
	body := server.CertRequest{CSR: string(csrPEM)}
	if ttl > 0 {
		body.TTL = ttl.String()
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("POST %s: %w", url, err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return nil, "", fmt.Errorf("POST %s: %w", url, err)
	}
	if res.StatusCode != http.StatusCreated {
		var p server.Problem
		if json.Unmarshal(answer, &p) != nil || p.Reason == "" {
			return nil, "", &problemError{Status: res.StatusCode, Reason: "unknown", Detail: http.StatusText(res.StatusCode)}
		}
		return nil, res.Header.Get("Retry-After"), &problemError{Status: res.StatusCode, Reason: string(p.Reason), Detail: p.Detail}
	}
	var cr server.CertResponse
	if err := json.Unmarshal(answer, &cr); err != nil {
		return nil, "", fmt.Errorf("the CA's answer does not decode: %w", err)
	}
	return &cr, "", nil
}

// newKeyAndCSR generates a workload key locally and a CSR for it. The CSR
// names nothing: the policy decides the identity.
func newKeyAndCSR(keyType string) (crypto.Signer, []byte, []byte, error) {
	var key crypto.Signer
	var err error
	switch keyType {
	case "ecdsa-p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, nil, fmt.Errorf("%w: --key-type must be ecdsa-p256, ecdsa-p384 or ed25519", errUsage)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// outputs are the files a client writes. The key is written first and
// alone is private (0600); each file is replaced atomically.
type outputs struct {
	key, cert, chain, bundle string
}

// write installs a new key and certificate: key, then certificate, then
// chain, then bundle, each by write-temp-and-rename. Between the first two
// renames a reader could pair the new key with the old certificate, so
// consumers should reload on the hook `ca renew` runs after all files are in
// place (or read both files again when their pair does not match).
func (o outputs) write(keyPEM []byte, cr *server.CertResponse, bundle []byte) error {
	if keyPEM != nil {
		if err := writeFileAtomic(o.key, keyPEM, 0o600); err != nil {
			return fmt.Errorf("writing the key: %w", err)
		}
	}
	if err := writeFileAtomic(o.cert, []byte(cr.Certificate), 0o644); err != nil {
		return fmt.Errorf("writing the certificate: %w", err)
	}
	if o.chain != "" {
		if err := writeFileAtomic(o.chain, []byte(cr.Chain), 0o644); err != nil {
			return fmt.Errorf("writing the chain: %w", err)
		}
	}
	if o.bundle != "" && bundle != nil {
		if err := writeFileAtomic(o.bundle, bundle, 0o644); err != nil {
			return fmt.Errorf("writing the bundle: %w", err)
		}
	}
	return nil
}

// fingerprint is "sha256:" + lowercase hex of the certificate's DER.
func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(s[:])
}

// normalizeFingerprint accepts "sha256:abcd..." and openssl's
// "AB:CD:..." (with or without "sha256 Fingerprint=").
func normalizeFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "="); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimPrefix(strings.ToLower(s), "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%w: %q is not a SHA-256 fingerprint (sha256:<64 hex digits>)", errUsage, s)
	}
	return "sha256:" + s, nil
}

func parseCerts(pemBytes []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// errPinMismatch: the CA presents no root whose fingerprint is pinned.
var errPinMismatch = errors.New("the CA's trust bundle holds no pinned root")

// pinnedTrust fetches /bundle.pem from the API listener and decides which of
// its roots to trust: those whose fingerprints are pinned (by flag or pin
// file). With no pin at all it trusts the bundle's roots on first use and
// returns them as the new pin. Either way the API listener's own
// certificate chain, captured on the same connection, must verify against
// the trusted roots for its host name, so the bundle is known to come from
// the CA and not from someone in between.
//
//lint:ignore U1000 kept for client commands that need no --trust-domain; the server identity is still checked
func pinnedTrust(ctx context.Context, apiURL string, pins []string) (pool *x509.CertPool, bundle []byte, newPins []string, err error) {
	return pinnedTrustFor(ctx, apiURL, pins, "")
}

// pinnedTrustFor is pinnedTrust that also requires the API listener's
// certificate to carry the CA's server identity in trustDomain ("" = the
// trust domain its chain is constrained to), see checkServerIdentity.
func pinnedTrustFor(ctx context.Context, apiURL string, pins []string, trustDomain string) (pool *x509.CertPool, bundle []byte, newPins []string, err error) {
	u, err := url.Parse(apiURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, nil, fmt.Errorf("%w: --server must be an https:// URL", errUsage)
	}
	var peer []*x509.Certificate
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, against the pinned roots, once they are known.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			peer = cs.PeerCertificates
			return nil
		},
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(apiURL, "/")+"/bundle.pem", nil)
	if err != nil {
		return nil, nil, nil, err
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("fetching the trust bundle: %w", err)
	}
	defer res.Body.Close()
	bundle, err = io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil || res.StatusCode != http.StatusOK {
		return nil, nil, nil, fmt.Errorf("fetching the trust bundle: status %d %v", res.StatusCode, err)
	}
	roots := parseCerts(bundle)
	if len(roots) == 0 || len(peer) == 0 {
		return nil, nil, nil, errors.New("the CA served no trust bundle or no certificate")
	}
	pool = x509.NewCertPool()
	pinned := map[string]bool{}
	for _, p := range pins {
		pinned[p] = true
	}
	for _, r := range roots {
		fp := fingerprint(r)
		if len(pins) == 0 {
			newPins = append(newPins, fp)
			pool.AddCert(r)
		} else if pinned[fp] {
			pool.AddCert(r)
			newPins = append(newPins, fp)
		}
	}
	if len(newPins) == 0 {
		return nil, nil, nil, fmt.Errorf("%w (pinned %s)", errPinMismatch, strings.Join(pins, ", "))
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	chains, err := peer[0].Verify(x509.VerifyOptions{DNSName: u.Hostname(), Roots: pool, Intermediates: inter})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the API listener's certificate does not verify against the pinned roots: %w", err)
	}
	if err := checkServerIdentity(chains, trustDomain); err != nil {
		return nil, nil, nil, err
	}
	return pool, bundle, newPins, nil
}

// readPins reads a pin file: one fingerprint a line.
func readPins(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pins []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fp, err := normalizeFingerprint(line)
		if err != nil {
			return nil, fmt.Errorf("pin file %s: %w", path, err)
		}
		pins = append(pins, fp)
	}
	return pins, nil
}

// tlsClient is an HTTPS client of the CA's API trusting roots, presenting
// certs; the server must be the CA (tlsClientFor with the trust domain read
// from the chain).
//
//lint:ignore U1000 kept for client commands that need no --trust-domain; the server identity is still checked
func tlsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return tlsClientFor(roots, "", certs...)
}
