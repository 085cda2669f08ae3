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
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	sub := strings.Join(fs.Args(), " ")
	switch {
	case sub == "up", sub == "down", sub == "version", strings.HasPrefix(sub, "force ") && fs.NArg() == 2:
	default:
		return fmt.Errorf("%w: want `ca migrate up|down|version|force N`, got %q", errUsage, sub)
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
	return nil
}
