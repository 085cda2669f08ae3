package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// defaultServer is the API listener of the embedded default.
const defaultServer = "https://127.0.0.1:8443"

// cmdEnroll is the CI client: it obtains the job's provenance token,
// generates a key locally, sends a CSR to POST /v1/enroll and writes the key,
// certificate, chain and trust bundle.
func cmdEnroll(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	srv := fs.String("server", envOr(getenv, "CA_API_URL", defaultServer), "the CA's API `URL` (default $CA_API_URL or "+defaultServer+")")
	tokenFile := fs.String("token-file", "", "read the provenance token from `FILE` instead of the CI environment")
	gitlabVar := fs.String("gitlab-token-var", "CA_ID_TOKEN", "GitLab CI: the id_token variable holding the token")
	audience := fs.String("audience", "", "GitHub Actions: the audience to request the token for (default: the --server URL)")
	ttl := fs.Duration("ttl", 0, "requested lifetime (default: the policy rule's)")
	keyType := fs.String("key-type", "ecdsa-p256", "key to generate: ecdsa-p256, ecdsa-p384 or ed25519")
	keyOut := fs.String("key", "key.pem", "write the private key (0600) to `FILE`")
	certOut := fs.String("cert", "cert.pem", "write the certificate to `FILE`")
	chainOut := fs.String("chain", "chain.pem", "write the intermediates to `FILE`")
	bundleOut := fs.String("bundle", "bundle.pem", "write the trust bundle (roots) to `FILE`")
	caFP := fs.String("ca-fingerprint", "", "pin the CA root: `sha256:HEX` (default: the pin file, else trust on first use)")
	pinFile := fs.String("pin-file", "", "pinned root fingerprints (default: ca-pin next to --cert)")
	trustDomain := fs.String("trust-domain", envOr(getenv, "CA_TRUST_DOMAIN", ""), trustDomainUsage)
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *pinFile == "" {
		*pinFile = filepath.Join(filepath.Dir(*certOut), "ca-pin")
	}
	if *audience == "" {
		*audience = *srv
	}

	tok, source, err := provenanceToken(ctx, getenv, *tokenFile, *gitlabVar, *audience)
	if err != nil {
		return err
	}
	pins, err := readPins(*pinFile)
	if err != nil {
		return err
	}
	if *caFP != "" {
		fp, err := normalizeFingerprint(*caFP)
		if err != nil {
			return err
		}
		pins = []string{fp}
	}
	pool, bundle, trusted, err := pinnedTrustFor(ctx, *srv, pins, *trustDomain)
	if err != nil {
		return err
	}
	if len(pins) == 0 {
		fmt.Fprintf(stderr, "ca enroll: trusting the CA on first use; pinned root %s in %s (check it out of band: openssl x509 -in %s -noout -fingerprint -sha256)\n",
			strings.Join(trusted, ", "), *pinFile, *bundleOut)
	}
	if len(pins) == 0 || *caFP != "" {
		if err := writeFileAtomic(*pinFile, []byte(strings.Join(trusted, "\n")+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing the pin file: %w", err)
		}
	}

	_, keyPEM, csr, err := newKeyAndCSR(*keyType)
	if err != nil {
		return err
	}
	cr, err := requestCert(ctx, tlsClientFor(pool, *trustDomain), strings.TrimSuffix(*srv, "/")+"/v1/enroll", tok, csr, *ttl)
	if err != nil {
		return err
	}
	out := outputs{key: *keyOut, cert: *certOut, chain: *chainOut, bundle: *bundleOut}
	if err := out.write(keyPEM, cr, bundle); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled %s (token from %s): serial %s, valid until %s; wrote %s, %s, %s, %s\n",
		cr.SPIFFEID, source, cr.Serial, cr.NotAfter.Format(time.RFC3339), *keyOut, *certOut, *chainOut, *bundleOut)
	return nil
}

// errNoToken: no token source is available.
var errNoToken = errors.New("no provenance token: pass --token-file, or run in GitHub Actions (permissions: id-token: write) or GitLab CI (id_tokens)")

// provenanceToken finds the job's token: --token-file, else the GitHub
// Actions OIDC endpoint, else the GitLab id_token variable.
func provenanceToken(ctx context.Context, getenv env, file, gitlabVar, audience string) (tok, source string, err error) {
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(raw)), file, nil
	}
	reqURL, _ := getenv("ACTIONS_ID_TOKEN_REQUEST_URL")
	reqTok, _ := getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL != "" && reqTok != "" {
		tok, err := githubToken(ctx, reqURL, reqTok, audience)
		return tok, "GitHub Actions", err
	}
	if v, ok := getenv(gitlabVar); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), "$" + gitlabVar, nil
	}
	return "", "", fmt.Errorf("%w: %w", errUsage, errNoToken)
}

// githubToken asks the GitHub Actions runner for an OIDC token for audience.
func githubToken(ctx context.Context, reqURL, reqTok, audience string) (string, error) {
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+reqTok)
	req.Header.Set("Accept", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("requesting the GitHub Actions token: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("requesting the GitHub Actions token: status %d (does the job have permissions: id-token: write?)", res.StatusCode)
	}
	var body struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&body); err != nil || body.Value == "" {
		return "", errors.New("the GitHub Actions token answer has no value")
	}
	return body.Value, nil
}

func envOr(getenv env, key, def string) string {
	if v, ok := getenv(key); ok && v != "" {
		return v
	}
	return def
}
