package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Main runs the example service name as a program: flags (each with an
// environment default) configure it, structured logs go to stderr as JSON,
// SIGINT or SIGTERM stop it (after a last report of decision counts). It
// returns the exit code.
func Main(name string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := Config{Name: name}
	fs.StringVar(&cfg.Addr, "addr", env("ADDR", "127.0.0.1:9443"), "mTLS listen `address`")
	fs.StringVar(&cfg.CAURL, "ca-url", env("CA_API_URL", "https://127.0.0.1:8443"), "the CA's API base `URL`")
	fs.StringVar(&cfg.BundleURL, "bundle-url", env("CA_BUNDLE_URL", "http://127.0.0.1:8080/bundle.json"), "the CA's SPIFFE trust bundle `URL`")
	fs.StringVar(&cfg.TrustDomain, "trust-domain", env("CA_TRUST_DOMAIN", "example.org"), "trust domain")
	fs.StringVar(&cfg.CertFile, "cert", env("CERT_FILE", "cert.pem"), "this service's certificate (`FILE`, as `ca enroll` writes it)")
	fs.StringVar(&cfg.KeyFile, "key", env("KEY_FILE", "key.pem"), "this service's private key `FILE`")
	fs.StringVar(&cfg.ChainFile, "chain", env("CHAIN_FILE", ""), "intermediates `FILE`, if not in --cert")
	fs.StringVar(&cfg.PolicyCache, "policy-cache", env("POLICY_CACHE", ""), "keep the last good signed policy in `FILE`")
	fs.DurationVar(&cfg.ReportInterval, "report-interval", 30*time.Second, "how often decision counts go to the CA")
	if name != Payments {
		fs.StringVar(&cfg.PaymentsURL, "payments-url", env("PAYMENTS_URL", "https://127.0.0.1:9443"), "payments' base `URL`")
		fs.StringVar(&cfg.PaymentsID, "payments-id", env("PAYMENTS_ID", "spiffe://example.org/prod/payments"), "the SPIFFE `ID` payments must present")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg.Log = slog.New(slog.NewJSONHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := New(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	s.Start(ctx)
	cfg.Log.Info("serving", "service", name, "addr", s.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(sctx); err != nil {
		cfg.Log.Error("stopping", "err", err)
		return 1
	}
	cfg.Log.Info("stopped")
	return 0
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
