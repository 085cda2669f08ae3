package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// Assert, where they are wired, that the real implementations fit the
// issuer's consumer-side interfaces (the stores' are in stores.go).
var (
	_ issuer.KeyStore = (*hsm.PKCS11Store)(nil)
	_ issuer.KeyStore = (*hsm.SoftwareStore)(nil)
)

// newLogger logs JSON to w at the configured level.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
}

// warnDevelopment says loudly, in the log and as a plain stderr line, that
// this is the development setup.
func warnDevelopment(cfg *config.Config, log *slog.Logger, stderr io.Writer) {
	if !cfg.DevelopmentMode() {
		return
	}
	msg := "DEVELOPMENT SETUP: software CA keys and SQLite in " + cfg.DataDir +
		"; not for production (configure CA_DATABASE_URL=postgres://... and CA_PKCS11_MODULE)"
	log.Warn(msg, "data_dir", cfg.DataDir, "database", cfg.DatabaseDriver(), "keys_dir", cfg.KeysDir)
	fmt.Fprintln(stderr, "WARNING: "+msg)
}

// openStore opens the database, its statements told to obs if not nil
// (`ca serve` times them). In development mode it first creates the data
// directory and migrates the SQLite schema up; in production a schema that
// is not current is refused with the instruction to run `ca migrate up`.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger, obs store.Observer) (store.Store, error) {
	if cfg.DevelopmentMode() {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		if err := storeopen.Migrate(ctx, cfg.DatabaseURL, "up"); err != nil {
			return nil, fmt.Errorf("migrating the development database: %w", err)
		}
		log.Info("development database migrated", "schema", storeopen.ExpectedVersion)
	}
	st, err := storeopen.OpenObserved(ctx, cfg.DatabaseURL, obs)
	switch {
	case errors.Is(err, store.ErrSchemaMismatch):
		return nil, fmt.Errorf("database schema is not version %d; run `ca migrate up` first: %w", storeopen.ExpectedVersion, err)
	case err != nil:
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	return st, nil
}

// lockEmbeddedStore takes the SQLite file's server lock for `ca serve`
// (sqlite.LockServer): a second server on the same file fails to start.
// With Postgres there is nothing to lock (replicas are what it is for).
func lockEmbeddedStore(cfg *config.Config) (release func() error, err error) {
	if kind, err := storeopen.KindOf(cfg.DatabaseURL); err != nil || kind != storeopen.SQLite {
		return func() error { return nil }, nil // a bad URL fails in openStore
	}
	path, err := storeopen.SQLitePath(cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.DevelopmentMode() {
		// As the migration would create them (openStore, after this).
		for _, dir := range []string{cfg.DataDir, filepath.Dir(path)} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("data_dir: %w", err)
			}
		}
	}
	return sqlite.LockServer(path)
}

// openKeys opens the PKCS#11 token when a module is configured, else the
// software key directory of the development setup.
func openKeys(cfg *config.Config, log *slog.Logger) (hsm.KeyStore, error) {
	if cfg.PKCS11.Module != "" {
		ks, err := hsm.OpenPKCS11(hsm.PKCS11Config{
			Module:     cfg.PKCS11.Module,
			TokenLabel: cfg.PKCS11.Token,
			PIN:        cfg.PKCS11.PIN.Reveal(),
		}, log, hsm.WithClock(clock.Real{}))
		if err != nil {
			return nil, fmt.Errorf("opening PKCS#11 token %q: %w", cfg.PKCS11.Token, err)
		}
		// Every key type the CA will generate must have its mechanisms on
		// the token: a missing one fails start-up with one line naming it,
		// not a request hours later.
		ctx, cancel := context.WithTimeout(context.Background(), hsm.DefaultOpTimeout)
		defer cancel()
		var kts []hsm.KeyType
		for _, kt := range cfg.KeyTypes() {
			kts = append(kts, hsm.KeyType(kt))
		}
		if err := ks.CheckKeyTypes(ctx, kts...); err != nil {
			_ = ks.Close()
			return nil, fmt.Errorf("PKCS#11 token %q: %w (run `ca hsm check`)", cfg.PKCS11.Token, err)
		}
		return ks, nil
	}
	ks, err := hsm.OpenSoftware(cfg.KeysDir, log)
	if err != nil {
		return nil, fmt.Errorf("opening software keys in %s: %w", cfg.KeysDir, err)
	}
	return ks, nil
}

// issuerConfig maps the issuer settings to pkg/issuer's Config.
func issuerConfig(cfg *config.Config) issuer.Config {
	// The CA's own host names: no workload certificate may carry them.
	names, ips := cfg.CAHostNames()
	return issuer.Config{
		TrustDomain:          cfg.TrustDomain,
		PublicURL:            cfg.PublicURL,
		KeyType:              hsm.KeyType(cfg.Issuer.KeyType),
		TimeOrderedSerials:   cfg.DatabaseDriver() != "postgres",
		RootLifetime:         cfg.Issuer.RootLifetime,
		IntermediateLifetime: cfg.Issuer.IntermediateLifetime,
		Backdate:             cfg.Issuer.Backdate,
		DefaultTTL:           cfg.Issuer.DefaultTTL,
		MaxTTL:               cfg.Issuer.MaxTTL,
		Organization:         cfg.Issuer.Organization,
		ReservedDNSNames:     names,
		ReservedIPs:          ips,
	}
}

// backends are the opened store and key store, closed together.
type backends struct {
	store store.Store
	keys  hsm.KeyStore
	deps  issuer.Deps
}

// openBackends opens the store (its statements told to obs if not nil) and
// the key store.
func openBackends(ctx context.Context, cfg *config.Config, log *slog.Logger, obs store.Observer) (*backends, error) {
	st, err := openStore(ctx, cfg, log, obs)
	if err != nil {
		return nil, err
	}
	ks, err := openKeys(cfg, log)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return &backends{store: st, keys: ks, deps: issuer.Deps{Keys: ks, Store: st, Clock: clock.Real{}, Log: log}}, nil
}

func (b *backends) Close() error {
	return errors.Join(b.keys.Close(), b.store.Close())
}
