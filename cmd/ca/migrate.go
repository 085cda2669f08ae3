package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// cmdMigrate changes or shows the database schema: up, down (one step),
// version, force N.
func cmdMigrate(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	grantTo := fs.String("grant-runtime", "", "after `up`, grant the runtime `ROLE` (the one ca serve connects as) what it needs: INSERT and SELECT only on audit_log (Postgres)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	// Flags may also follow the subcommand: ca migrate up --grant-runtime ROLE.
	words := fs.Args()
	if len(words) > 1 {
		if err := parseFlags(fs, words[1:], stderr); err != nil {
			return err
		}
		words = append(words[:1:1], fs.Args()...)
	}
	sub := strings.Join(words, " ")
	switch {
	case sub == "up", sub == "down", sub == "version", strings.HasPrefix(sub, "force ") && len(words) == 2:
	default:
		return fmt.Errorf("%w: want `ca migrate up|down|version|force N`, got %q", errUsage, sub)
	}
	if *grantTo != "" && sub != "up" {
		return fmt.Errorf("%w: --grant-runtime goes with `ca migrate up`", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if cfg.DatabaseDriver() == "sqlite" {
		// The embedded default's database lives in the data directory.
		if err := os.MkdirAll(filepath.Dir(strings.TrimPrefix(strings.TrimPrefix(cfg.DatabaseURL, "sqlite:"), "//")), 0o700); err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
	}
	if sub != "version" {
		if err := storeopen.Migrate(ctx, cfg.DatabaseURL, sub); err != nil {
			return fmt.Errorf("migrate %s: %w", sub, err)
		}
	}
	v, dirty, err := storeopen.Version(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	state := "clean"
	if dirty {
		state = "DIRTY (a migration failed half-way; repair, then `ca migrate force N`)"
	}
	fmt.Fprintf(stdout, "schema version %d (this binary expects %d), %s\n", v, storeopen.ExpectedVersion, state)
	if *grantTo != "" {
		if err := storeopen.GrantRuntime(ctx, cfg.DatabaseURL, *grantTo); err != nil {
			return fmt.Errorf("grant-runtime: %w", err)
		}
		fmt.Fprintf(stdout, "runtime role %q granted: INSERT and SELECT on audit_log, read and write on the other tables, no ownership, TRUNCATE or TRIGGER\n", *grantTo)
	}
	return nil
}
