package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// JWT-SVID key settings. Constants until pkg/config grows fields for them:
// keys rotate daily, the next key is published twice the bundle refresh
// hint before it signs, and retiring keys stay published for the longest
// lifetime any policy may grant.
const (
	jwtRotateEvery = jwtkeys.DefaultRotateEvery
	jwtPublishLead = 2 * bundleRefreshHint
	jwtTick        = 30 * time.Second
)

var (
	_ server.JWTSigner = (*jwtkeys.Signer)(nil)
)

// jwtKeysConfig maps the settings to pkg/jwtkeys' Config: keys of
// jwt.key_type (else issuer.key_type).
func jwtKeysConfig(cfg *config.Config) jwtkeys.Config {
	return jwtkeys.Config{
		KeyType: hsm.KeyType(cfg.JWTKeyType()), RotateEvery: jwtRotateEvery, PublishLead: jwtPublishLead,
		MaxTTL: policy.MaxJWTTTL, Grace: jwtkeys.DefaultGrace, Recheck: jwtkeys.DefaultRecheck,
	}
}

// startJWTKeys runs the first JWT key tick now (so a fresh CA has a signing
// key, published, before it serves), keeps ticking in the background until
// ctx ends, and returns the signer for POST /v1/jwt. A failed first tick is
// logged, not fatal: the background tick retries, and /v1/jwt answers 503
// jwt_key_unavailable meanwhile.
func startJWTKeys(ctx context.Context, bg *background, cfg *config.Config, b *backends, tr *trust, log *slog.Logger) (*jwtkeys.Signer, error) {
	if res, err := tr.jwtKeys.Tick(ctx); err != nil {
		log.Error("JWT signing keys: first tick failed; retrying in the background", "err", err)
	} else if len(res.Activated)+len(res.Prepared)+len(res.Retired) > 0 {
		log.Info("JWT signing keys", "prepared", res.Prepared, "activated", res.Activated, "retired", res.Retired)
	}
	bg.Go(func(ctx context.Context) { tr.jwtKeys.Run(ctx, jwtTick) })
	return jwtkeys.NewSigner(jwtkeys.SignerDeps{Keys: b.keys, Store: b.store, Clock: clock.Real{}, Log: log}, jwtKeysConfig(cfg))
}

// stringsFlag collects a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// cmdJWT is the workload side of POST /v1/jwt: with its certificate and key
// (as `ca enroll` / `ca renew` write them) it asks the CA for a JWT-SVID and
// prints it.
func cmdJWT(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jwt", flag.ContinueOnError)
	srv := fs.String("server", envOr(getenv, "CA_API_URL", defaultServer), "the CA's API `URL` (default $CA_API_URL or "+defaultServer+")")
	keyFile := fs.String("key", "key.pem", "the workload's private key")
	certFile := fs.String("cert", "cert.pem", "the workload's current certificate")
	chainFile := fs.String("chain", "chain.pem", "the intermediates")
	bundleFile := fs.String("bundle", "bundle.pem", "the trust bundle the CA's API certificate is verified against")
	var audience stringsFlag
	fs.Var(&audience, "audience", "an `AUDIENCE` of the token (repeat for more; at least one)")
	ttl := fs.Duration("ttl", 0, "requested lifetime (default: the policy's jwt.ttl)")
	trustDomain := fs.String("trust-domain", envOr(getenv, "CA_TRUST_DOMAIN", ""), trustDomainUsage)
	asJSON := fs.Bool("json", false, "print the whole answer (token, spiffe_id, audience, kid, expires_at) as JSON")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if len(audience) == 0 {
		return fmt.Errorf("%w: --audience is required", errUsage)
	}
	pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("loading the workload key and certificate: %w", err)
	}
	if chain, err := os.ReadFile(*chainFile); err == nil {
		for _, c := range parseCerts(chain) {
			pair.Certificate = append(pair.Certificate, c.Raw)
		}
	}
	bundle, err := os.ReadFile(*bundleFile)
	if err != nil {
		return fmt.Errorf("reading the trust bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return fmt.Errorf("%s holds no certificate", *bundleFile)
	}
	c := tlsClientFor(roots, *trustDomain, pair)
	defer c.CloseIdleConnections()
	res, raw, err := requestJWT(ctx, c, strings.TrimSuffix(*srv, "/")+"/v1/jwt", audience, *ttl)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err = stdout.Write(append(raw, '\n'))
		return err
	}
	fmt.Fprintln(stdout, res.Token)
	return nil
}

// requestJWT POSTs a JWT-SVID request over the client's mTLS connection.
func requestJWT(ctx context.Context, c *http.Client, url string, audience []string, ttl time.Duration) (*server.JWTResponse, []byte, error) {
	body := server.JWTRequest{Audience: audience}
	if ttl > 0 {
		body.TTL = ttl.String()
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", url, err)
	}
	if res.StatusCode != http.StatusOK {
		var p server.Problem
		if json.Unmarshal(answer, &p) != nil || p.Reason == "" {
			return nil, nil, &problemError{Status: res.StatusCode, Reason: "unknown", Detail: http.StatusText(res.StatusCode)}
		}
		return nil, nil, &problemError{Status: res.StatusCode, Reason: string(p.Reason), Detail: p.Detail}
	}
	var jr server.JWTResponse
	if err := json.Unmarshal(answer, &jr); err != nil || jr.Token == "" {
		return nil, nil, fmt.Errorf("the CA's answer does not decode: %v", err)
	}
	return &jr, bytes.TrimSpace(answer), nil
}

// cmdJWTKeys runs `ca jwt-keys list | rotate [--emergency] | tick`: the
// JWT-SVID signing keys as a local operator tool on the configured database
// and key store (admin: it needs the database and the HSM PIN).
func cmdJWTKeys(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	c, err := newAdminCommand("jwt-keys", "ca jwt-keys list | rotate [--emergency] | tick", args, getenv, "list", "rotate", "tick")
	if err != nil {
		return err
	}
	var emergency *bool
	if c.sub == "rotate" {
		emergency = c.fs.Bool("emergency", false, "activate a new key now and retire the current one at once (its tokens stop verifying)")
	}
	b, tr, err := c.open(ctx, getenv, stderr, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	switch c.sub {
	case "list":
		keys, err := tr.jwtKeys.Keys(ctx)
		if err != nil {
			return err
		}
		tw := table(stdout, "KID\tALG\tSTATE\tCREATED\tACTIVATED\tRETIRING\tRETIRED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.KeyID, k.Alg, k.State,
				timeOrDash(k.CreatedAt), timeOrDash(k.ActivatedAt), timeOrDash(k.RetiringAt), timeOrDash(k.RetiredAt))
		}
		return tw.Flush()
	case "rotate":
		res, err := tr.jwtKeys.Rotate(ctx, jwtkeys.RotateOptions{Emergency: *emergency, Actor: *c.actor})
		if errors.Is(err, jwtkeys.ErrRotationInProgress) {
			return fmt.Errorf("%w (wait for its activation, or use --emergency)", err)
		}
		if err != nil {
			return err
		}
		if *emergency {
			fmt.Fprintf(stdout, "activated %s now; retired [%s]; bundle version %d\n",
				res.KeyID, strings.Join(res.Retired, " "), res.Bundle.Sequence)
		} else {
			fmt.Fprintf(stdout, "prepared %s; bundle version %d; `ca serve` activates it after %s\n",
				res.KeyID, res.Bundle.Sequence, res.ActivateAfter.Format(time.RFC3339))
		}
	case "tick":
		res, err := tr.jwtKeys.Tick(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "prepared [%s] activated [%s] retired [%s]; bundle version %d (skipped: %v)\n",
			strings.Join(res.Prepared, " "), strings.Join(res.Activated, " "), strings.Join(res.Retired, " "),
			res.Bundle.Sequence, res.Skipped)
	}
	return nil
}
