package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/workload-ca/workload-ca/pkg/config"
)

// The local development token issuer: a key in the data directory whose JWKS
// the development policy trusts through jwks_file, so enrollment works with
// no network and no CI system. Only the development setup has it: the
// production policy is whatever policy_file says, and `ca dev-token` refuses
// to run outside development mode.
const (
	DevTokenIssuer   = "https://dev-token.workload-ca.invalid"
	DevTokenAudience = "workload-ca-dev"
	devKeyFile       = "dev-token-key.json"  // private JWK, 0600
	devJWKSFile      = "dev-token-jwks.json" // public JWKS, read by the policy
	devPolicyFile    = "dev-policy.yaml"
)

// errNotDevelopment refuses development-only commands in production mode.
var errNotDevelopment = errors.New("only available in the development setup (software keys and SQLite)")

type devSetup struct {
	key        jose.JSONWebKey
	policyPath string
}

// devPolicy is the development policy: the dev token issuer, and one rule
// mapping a token's sub to spiffe://<trust domain>/dev/<sub>.
func devPolicy(trustDomain string) string {
	return `# Development policy, written by ` + "`ca serve`" + ` on first start of the development
# setup. Tokens minted by ` + "`ca dev-token --sub NAME`" + ` enroll as
# spiffe://` + trustDomain + `/dev/NAME. Production never uses this file: set
# CA_POLICY_FILE (or policy_file) to your own policy.
trust_domain: ` + trustDomain + `
token_issuers:
  - name: dev
    issuer: ` + DevTokenIssuer + `
    audience: ` + DevTokenAudience + `
    jwks_file: ` + devJWKSFile + `
rules:
  - name: dev-tokens
    issuer: dev
    when: has(claims.sub) && claims.sub != ""
    spiffe_id: spiffe://` + trustDomain + `/dev/{{claims.sub}}
    max_ttl: 24h
    ttl: 1h
`
}

// ensureDevSetup creates, if missing, the dev token key (0600), its JWKS and
// the development policy in the data directory, and returns them. created
// reports whether the policy was written now. It refuses outside development
// mode.
func ensureDevSetup(cfg *config.Config) (ds devSetup, created bool, err error) {
	if !cfg.DevelopmentMode() {
		return ds, false, errNotDevelopment
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return ds, false, fmt.Errorf("data_dir: %w", err)
	}
	keyPath := filepath.Join(cfg.DataDir, devKeyFile)
	raw, err := os.ReadFile(keyPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		priv, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			return ds, false, gerr
		}
		ds.key = jose.JSONWebKey{Key: priv, Algorithm: string(jose.ES256), Use: "sig"}
		tp, terr := ds.key.Thumbprint(cryptoSHA256)
		if terr != nil {
			return ds, false, terr
		}
		ds.key.KeyID = "dev-" + hex.EncodeToString(tp[:8])
		b, merr := ds.key.MarshalJSON()
		if merr != nil {
			return ds, false, merr
		}
		if err := writeFileAtomic(keyPath, b, 0o600); err != nil {
			return ds, false, fmt.Errorf("writing the dev token key: %w", err)
		}
	case err != nil:
		return ds, false, fmt.Errorf("reading the dev token key: %w", err)
	default:
		if err := ds.key.UnmarshalJSON(raw); err != nil || ds.key.IsPublic() {
			return ds, false, fmt.Errorf("%s is not a private JWK", keyPath)
		}
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{ds.key.Public()}})
	if err != nil {
		return ds, false, err
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, devJWKSFile), jwks, 0o644); err != nil {
		return ds, false, fmt.Errorf("writing the dev token JWKS: %w", err)
	}
	ds.policyPath = filepath.Join(cfg.DataDir, devPolicyFile)
	if _, err := os.Stat(ds.policyPath); errors.Is(err, os.ErrNotExist) {
		if err := writeFileAtomic(ds.policyPath, []byte(devPolicy(cfg.TrustDomain)), 0o644); err != nil {
			return ds, false, fmt.Errorf("writing the development policy: %w", err)
		}
		created = true
	} else if err != nil {
		return ds, false, err
	}
	return ds, created, nil
}

// claimFlags collects repeated --claim k=v.
type claimFlags map[string]string

func (c claimFlags) String() string { return "" }

func (c claimFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want k=v, got %q", v)
	}
	switch k {
	case "iss", "aud", "exp", "nbf", "iat", "jti", "sub":
		return fmt.Errorf("claim %q is set by ca dev-token itself", k)
	}
	c[k] = val
	return nil
}

// cmdDevToken prints a token from the local dev token issuer.
func cmdDevToken(args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-token", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	sub := fs.String("sub", "", "the token's subject; the development policy enrolls it as spiffe://<trust domain>/dev/`SUB`")
	ttl := fs.Duration("ttl", 5*time.Minute, "token lifetime")
	claims := claimFlags{}
	fs.Var(claims, "claim", "extra string claim `k=v` (repeatable)")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("%w: --sub is required", errUsage)
	}
	if *ttl <= 0 || *ttl > time.Hour {
		return fmt.Errorf("%w: --ttl must be in (0, 1h]", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if !cfg.DevelopmentMode() {
		return fmt.Errorf("%w: ca dev-token is %w", errUsage, errNotDevelopment)
	}
	ds, _, err := ensureDevSetup(cfg)
	if err != nil {
		return err
	}
	tok, err := mintDevToken(ds.key, *sub, claims, time.Now(), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func mintDevToken(key jose.JSONWebKey, sub string, extra map[string]string, now time.Time, ttl time.Duration) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c := map[string]any{}
	for k, v := range extra {
		c[k] = v
	}
	std := jwt.Claims{
		Issuer: DevTokenIssuer, Subject: sub, Audience: jwt.Audience{DevTokenAudience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl)),
		ID: hex.EncodeToString(jti[:]),
	}
	return jwt.Signed(signer).Claims(std).Claims(c).Serialize()
}
