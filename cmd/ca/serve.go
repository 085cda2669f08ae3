package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/dashboard"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

// anchorRefresh is how often the API listener re-reads the trust anchors it
// verifies client certificates against.
const anchorRefresh = time.Minute

// cmdServe runs the CA until SIGTERM or SIGINT.
func cmdServe(ctx context.Context, args []string, getenv env, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	warnDevelopment(cfg, log, stderr)
	log.Info("starting", "version", versionString(), "trust_domain", cfg.TrustDomain,
		"database", cfg.DatabaseDriver(), "pkcs11", cfg.PKCS11.Module != "", "api_url", cfg.APIURL, "public_url", cfg.PublicURL)

	applyGCPolicy(cfg.Server, getenv, log)
	stopProfile, err := startCPUProfile(getenv, log)
	if err != nil {
		return err
	}
	defer stopProfile()

	// Every statement the store sends is timed (ca_store_call_duration_seconds).
	reg := newMetricsRegistry()
	storeTimer, err := telemetry.NewStoreTimer(reg)
	if err != nil {
		return err
	}
	unlock, err := lockEmbeddedStore(cfg)
	if err != nil {
		return err
	}
	defer unlock()
	b, err := openBackends(ctx, cfg, log, storeTimer)
	if err != nil {
		return err
	}
	defer func() {
		start := time.Now()
		if err := b.Close(); err != nil {
			log.Warn("closing the store and key store", "err", err)
		}
		log.Info("store and key store closed", "duration_ms", time.Since(start).Milliseconds())
	}()
	// Every background goroutine runs in bg; stopping it (deferred after
	// the store's Close, so it runs before) waits for all of them, so
	// none uses the store or the key store once they are closed.
	bg := newBackground(ctx)
	defer bg.stop()

	// SIGHUP also clears a refused HSM login (the key store then tries once).
	watchLoginReload(bg, b.keys, log)
	auditLogRole := checkAuditLogRole(ctx, b.store, log)
	if err := instrumentBackends(b, reg, log); err != nil {
		return err
	}
	iss, err := loadIssuer(ctx, cfg, b, log)
	if err != nil {
		return err
	}
	// Signed checkpoints of the audit head: at startup, every
	// audit.checkpoint_interval, and after the listeners closed (deferred
	// before the store closes; its loop is stopped and waited for first,
	// so it has its own stop rather than bg's).
	endCheckpoints, err := startCheckpoints(ctx, cfg, b, log)
	if err != nil {
		return err
	}
	defer endCheckpoints()
	// Retention: the leader prunes expired rows in small batches.
	if err := startRetention(bg, cfg, b, reg, log); err != nil {
		return err
	}
	counted, err := telemetry.InstrumentIssuer(iss, reg)
	if err != nil {
		return err
	}
	// CRLs and OCSP: every replica answers from the store; the publisher
	// regenerates as leader only (advisory lock), and a revocation in this
	// process kicks it at once. Each leaf this process issues has its first
	// OCSP response pre-signed here, moments after it is returned.
	// Responder keys follow ocsp.key_type (else issuer.key_type), so that a
	// token without elliptic curves (opencryptoki's soft token) gets RSA
	// responders, not P-256 keys it cannot make.
	rcfg := revoke.Config{Responder: issuer.ResponderConfig{KeyType: hsm.KeyType(cfg.OCSPKeyType())}}
	rdeps := revoke.Deps{Store: b.store, Keys: b.keys, Clock: clock.Real{}, Log: log, Metrics: reg,
		KeyHealth: &hsm.KeyHealth{Clock: clock.Real{}}}
	pub, err := revoke.NewPublisher(rdeps, rcfg)
	if err != nil {
		return err
	}
	leaves := pub.Presigning(counted)
	// The trust bundle is published before serving, and the rotation step
	// (activation after the overlap, retirement after draining) runs in the
	// background on every replica.
	tr, err := newTrust(cfg, b, log)
	if err != nil {
		return err
	}
	if _, err := tr.publish(ctx, "system"); err != nil {
		return err
	}
	bg.Go(func(ctx context.Context) { tr.rotator.Run(ctx, rotationTick) })
	jwtSigner, err := startJWTKeys(ctx, bg, cfg, b, tr, log)
	if err != nil {
		return err
	}

	pol, err := loadPolicy(cfg, log, stderr)
	if err != nil {
		return err
	}
	caHosts, _ := cfg.CAHostNames()
	reloader := &policyReloader{setup: pol, trustDomain: cfg.TrustDomain, caHosts: caHosts, audit: b.store, clock: clock.Real{}, log: log}
	reloader.recordLoad(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	bg.Go(func(ctx context.Context) { reloader.run(ctx, hup) })
	// The authorization policy (authz_policy_file), reloaded on the same
	// SIGHUP.
	authzRel, err := newAuthzReloader(ctx, cfg, b.store, clock.Real{}, log)
	if err != nil {
		return err
	}
	if authzRel != nil {
		authzHUP := make(chan os.Signal, 1)
		signal.Notify(authzHUP, syscall.SIGHUP)
		defer signal.Stop(authzHUP)
		bg.Go(func(ctx context.Context) { authzRel.run(ctx, authzHUP) })
	}
	verifier, err := newVerifier(cfg, log)
	if err != nil {
		return err
	}

	// Listen before issuing the server certificate, so a taken port fails fast.
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api_addr: %w", err)
	}
	defer apiLn.Close()
	publicLn, err := net.Listen("tcp", cfg.PublicAddr)
	if err != nil {
		return fmt.Errorf("public_addr: %w", err)
	}
	defer publicLn.Close()

	certs, err := server.NewCertManager(server.CertManagerConfig{
		Issue:       issueServerCert(leaves),
		TrustDomain: cfg.TrustDomain,
		Host:        cfg.APIHost(),
		Lifetime:    cfg.Server.CertLifetime,
		Clock:       clock.Real{},
		Log:         log,
	})
	if err != nil {
		return err
	}
	if err := certs.Renew(ctx); err != nil {
		return err
	}

	responder, err := revoke.NewResponder(rdeps, rcfg)
	if err != nil {
		return err
	}
	// OCSP answers from memory; this process's revocations (through pub)
	// drop entries at once, other replicas' within OCSPCacheRecheck.
	responder.Follow(pub)
	bg.Go(func(ctx context.Context) {
		if err := pub.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("revocation publisher stopped", "err", err)
		}
	})
	ops, err := operatorDeps(b, rcfg, pub, log)
	if err != nil {
		return err
	}
	ids, holds, err := identityDeps(b, ops, reg, log)
	if err != nil {
		return err
	}
	authzD, authzSigner, err := authzDeps(authzRel, b, leaves, cfg.TrustDomain, hsm.KeyType(cfg.Issuer.KeyType), log)
	if err != nil {
		return err
	}
	if authzSigner != nil {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := authzSigner.Close(cctx); err != nil {
				log.Warn("deleting the authorization-policy signing keys", "err", err)
			}
		}()
	}
	routes, err := server.NewRoutes(server.Deps{
		Log: log, Clock: clock.Real{}, Store: b.store, Keys: b.keys, Anchors: iss,
		Metrics: reg, BodyLimit: cfg.Server.BodyLimit, ReadyTimeout: cfg.Server.ReadyTimeout,
		RequestTimeout: cfg.Server.RequestTimeout, MaxInFlightEnrollments: cfg.Server.MaxInFlightEnrollments,
		Trust:  tr.serverDeps(),
		Policy: pol.holder, Verifier: verifier,
		Enroll:     server.EnrollDeps{Issuer: leaves, Records: b.store},
		JWT:        server.JWTDeps{Signer: jwtSigner, Records: b.store},
		Operators:  ops,
		Identities: ids,
		Revocation: responder,
		// OCSP/CRL/bundle lines at debug if so configured.
		ArtifactLogLevel: cfg.ArtifactLogLevel(), ArtifactLogSample: cfg.Log.ArtifactSample,
		AuditLogRole: auditLogRole,
		Authz:        authzD,
	})
	if err != nil {
		return err
	}
	api := routes.API()
	// The dashboard's /ui/authz reads the current authorization policy (nil
	// when none is configured: the page says so).
	var authzPol dashboard.AuthzPolicySource
	if authzRel != nil {
		authzPol = authzRel.holder
	}
	if err := mountDashboard(api, cfg, b, pol.holder, ops, holds, authzPol, log); err != nil {
		return err
	}
	srv := server.New(server.Config{
		APIHandler:    api,
		PublicHandler: routes.Public(),
		TLS:           server.APITLSConfig(certs, iss, clock.Real{}, anchorRefresh, log),
		ShutdownGrace: cfg.Server.ShutdownGrace,
		Log:           log,
	})

	bg.Go(certs.Run)

	return srv.Serve(ctx, apiLn, publicLn)
}

// loadIssuer loads the CA hierarchy. A development setup initialises it on
// first start; production refuses and says to run `ca init`. The returned
// Current follows activations without a restart.
func loadIssuer(ctx context.Context, cfg *config.Config, b *backends, log *slog.Logger) (*issuer.Current, error) {
	icfg := issuerConfig(cfg)
	_, err := issuer.Load(ctx, b.deps, icfg)
	if errors.Is(err, issuer.ErrNotInitialized) && cfg.DevelopmentMode() {
		res, ierr := issuer.Init(ctx, b.deps, icfg)
		if ierr != nil {
			return nil, fmt.Errorf("initialising the development CA: %w", ierr)
		}
		log.Warn("development CA initialised", "root", res.Root.ID, "intermediate", res.Intermediate.ID, "created", res.Created)
		_, err = issuer.Load(ctx, b.deps, icfg)
	}
	switch {
	case errors.Is(err, issuer.ErrNotInitialized):
		return nil, fmt.Errorf("the CA is not initialised; run `ca init` (or finish the offline-root flow with `ca init --import-intermediate`): %w", err)
	case err != nil:
		return nil, fmt.Errorf("loading the CA: %w", err)
	}
	return issuer.NewCurrent(ctx, b.deps, icfg, issuerRecheck)
}

// issueServerCert has the CA issue the API listener's own certificate, so it
// is recorded and audited like every other.
func issueServerCert(iss server.LeafIssuer) server.IssueFunc {
	return func(ctx context.Context, req server.ServerCertRequest) ([]byte, [][]byte, error) {
		got, err := iss.Issue(ctx, issuer.Request{
			PublicKey:   req.PublicKey,
			SPIFFEID:    req.SPIFFEID,
			DNSNames:    req.DNSNames,
			IPAddresses: req.IPAddresses,
			TTL:         req.TTL,
			Actor:       req.SPIFFEID,
			Provenance:  []byte(`{"kind":"ca_server_certificate"}`),
			// The one path that may carry the CA's reserved names.
			CAServer: true,
		})
		if err != nil {
			return nil, nil, err
		}
		return got.DER, got.Chain, nil
	}
}
