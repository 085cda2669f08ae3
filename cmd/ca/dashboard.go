package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/dashboard"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// mountDashboard serves the dashboard under /ui on the API router.
func mountDashboard(api chi.Router, cfg *config.Config, b *backends, pol *policy.Holder, ops server.OperatorDeps, holds dashboard.HoldLister, authzPol dashboard.AuthzPolicySource, log *slog.Logger) error {
	st := b.store
	dc := dashboard.Config{ExternalURL: cfg.APIURL, DevLogin: localAdminSignIn(cfg, log), SessionLifetime: cfg.Dashboard.SessionLifetime,
		SessionIdleTimeout: cfg.Dashboard.SessionIdleTimeout}
	if f := cfg.Dashboard.SessionKeyFile; f != "" {
		key, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("dashboard.session_key_file: %w", err)
		}
		dc.SessionKey = bytes.TrimSpace(key)
	}
	if name := cfg.Dashboard.IdP; name != "" {
		ti, ok := pol.Load().IssuerByName(name)
		if !ok {
			return fmt.Errorf("dashboard.idp: the policy has no token issuer %q", name)
		}
		idp := &dashboard.IdP{TokenIssuer: name, ClientID: cfg.Dashboard.ClientID}
		if idp.ClientID == "" {
			idp.ClientID = ti.Audience
		}
		if f := cfg.Dashboard.ClientSecretFile; f != "" {
			secret, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("dashboard.client_secret_file: %w", err)
			}
			idp.ClientSecret = string(bytes.TrimSpace(secret))
		}
		client, err := idpHTTPClient(cfg)
		if err != nil {
			return err
		}
		idp.HTTPClient = client
		dc.IdP = idp
	}
	var rv dashboard.Revoker
	if ops.Revoker != nil {
		rv = ops.Revoker
	}
	db, err := dashboard.New(dc, dashboard.Deps{Log: log, Clock: clock.Real{}, Store: st, Revoker: rv, Holds: holds, AuthzPolicy: authzPol, Authz: b.store, Policy: pol, RequestID: server.RequestID})
	if err != nil {
		return err
	}
	db.Mount(api)
	log.Info("dashboard on the API listener", "url", cfg.APIURL+"/ui/", "idp", cfg.Dashboard.IdP, "dev_login", dc.DevLogin)
	return nil
}

// idpHTTPClient trusts the system roots plus enroll.token_issuer_ca_file,
// like the token verifier.
func idpHTTPClient(cfg *config.Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	pool, err := tokenIssuerRoots(cfg)
	if err != nil {
		return nil, err
	}
	if pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}, nil
}
