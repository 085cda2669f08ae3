package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// cmdInit creates the CA hierarchy (idempotent), or runs one step of the
// offline-root flow: --intermediate-csr writes the CSR of a new
// HSM-generated intermediate key; --import-intermediate installs the chain
// the offline root signed.
func cmdInit(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	csrOut := fs.String("intermediate-csr", "", "write a CSR for a new intermediate (key generated in the HSM) to `FILE`")
	chainIn := fs.String("import-intermediate", "", "install the offline-root-signed intermediate certificate chain (PEM) from `FILE`")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *csrOut != "" && *chainIn != "" {
		return fmt.Errorf("%w: --intermediate-csr and --import-intermediate are separate steps", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	warnDevelopment(cfg, log, stderr)
	b, err := openBackends(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	icfg := issuerConfig(cfg)

	switch {
	case *csrOut != "":
		csr, id, err := issuer.NewIntermediateCSR(ctx, b.deps, icfg)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*csrOut, csr, 0o644); err != nil {
			return fmt.Errorf("writing the CSR: %w", err)
		}
		fmt.Fprintf(stdout, "intermediate %s: CSR written to %s; have the offline root sign it, then run `ca init --import-intermediate CHAIN.pem`\n", id, *csrOut)
	case *chainIn != "":
		chain, err := os.ReadFile(*chainIn)
		if err != nil {
			return fmt.Errorf("reading the chain: %w", err)
		}
		is, err := issuer.ImportIntermediate(ctx, b.deps, icfg, chain)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "intermediate %s installed (state %s, valid until %s)\n", is.ID, is.State, is.NotAfter.Format("2006-01-02T15:04:05Z"))
	default:
		res, err := issuer.Init(ctx, b.deps, icfg)
		if err != nil {
			return err
		}
		verb := "already initialised"
		if res.Created {
			verb = "initialised"
		}
		fmt.Fprintf(stdout, "CA %s: root %s, intermediate %s\n", verb, res.Root.ID, res.Intermediate.ID)
		// The audit checkpoint key, here once rather than by replicas racing
		// on their first start.
		if _, err := ensureCheckpointKey(ctx, b.keys, cfg, log); err != nil {
			return err
		}
	}
	return nil
}
