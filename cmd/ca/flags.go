package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/workload-ca/workload-ca/pkg/config"
)

// errFlagHelp is returned when -h was asked for; the usage is already printed.
var errFlagHelp = errors.New("help requested")

// commonFlags registers --config on fs.
func commonFlags(fs *flag.FlagSet) *string {
	return fs.String("config", "", "path of the YAML configuration (default $CA_CONFIG)")
}

// parseFlags parses args, mapping flag errors to errUsage.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errFlagHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseFlagsOnly is parseFlags for a command that takes no positional
// arguments: any left after the flags are an errUsage.
func parseFlagsOnly(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

// loadConfig is config.Load with the error prefixed for the one-line message.
func loadConfig(path string, getenv env) (*config.Config, error) {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return cfg, nil
}
