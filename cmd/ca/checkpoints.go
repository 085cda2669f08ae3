package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// shutdownCheckpointTimeout bounds the checkpoint written after the
// listeners closed.
const shutdownCheckpointTimeout = 5 * time.Second

// checkpointKeyURI is where the audit checkpoint key lives in the configured
// key store. It is derived from the configuration alone, never read from the
// database, so that `ca audit verify` finds the real key even when the
// database was written by someone else.
func checkpointKeyURI(cfg *config.Config) string {
	if cfg.PKCS11.Module != "" {
		return "pkcs11:object=" + audit.CheckpointKeyName
	}
	return "softkey:" + audit.CheckpointKeyName
}

// keyFinder is the part of the key store the checkpoint key needs.
type keyFinder interface {
	Find(ctx context.Context, uri string) (hsm.Key, error)
	Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error)
}

// ensureCheckpointKey finds the checkpoint key, generating it in the key
// store (the HSM in production) on first need.
func ensureCheckpointKey(ctx context.Context, ks keyFinder, cfg *config.Config, log *slog.Logger) (crypto.Signer, error) {
	uri := checkpointKeyURI(cfg)
	k, err := ks.Find(ctx, uri)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		k, err = ks.Generate(ctx, audit.CheckpointKeyName, hsm.KeyType(cfg.Issuer.KeyType))
		if errors.Is(err, hsm.ErrKeyExists) { // another replica was first
			k, err = ks.Find(ctx, uri)
		} else if err == nil {
			id, _ := audit.KeyID(k.Signer.Public())
			log.Info("audit checkpoint key created", "key_uri", k.URI, "key_id", id)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	return k.Signer, nil
}

// startCheckpoints signs a startup checkpoint and keeps signing them every
// audit.checkpoint_interval (one replica per interval) until ctx ends. The
// returned function signs the shutdown checkpoint; call it after the
// listeners closed.
func startCheckpoints(ctx context.Context, cfg *config.Config, b *backends, log *slog.Logger) (shutdown func(), err error) {
	signer, err := ensureCheckpointKey(ctx, b.keys, cfg, log)
	if err != nil {
		return nil, err
	}
	cp, err := audit.NewCheckpointer(audit.CheckpointerConfig{Store: b.store, Signer: signer, Clock: clock.Real{},
		Log: log.With("component", "audit"), Interval: cfg.Audit.CheckpointInterval})
	if err != nil {
		return nil, err
	}
	// A failed startup checkpoint (a tampered log, a database blip) is
	// logged and leaves a gap that `ca audit verify` reports; it does not
	// keep the CA from serving.
	if _, err := cp.Write(ctx, store.CheckpointStartup); err != nil && !errors.Is(err, audit.ErrChainTampered) {
		log.Error("audit startup checkpoint failed", "error", err.Error())
	}
	warnAuditRetention(ctx, cfg.Retention.Audit, b.store, clock.Real{}.Now(), log)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cp.Run(runCtx)
	}()
	return func() {
		stop()
		<-done
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownCheckpointTimeout)
		defer cancel()
		if _, err := cp.Write(wctx, store.CheckpointShutdown); err != nil && !errors.Is(err, audit.ErrChainTampered) {
			log.Error("audit shutdown checkpoint failed", "error", err.Error())
		}
	}, nil
}

// trustedCheckpointKey is the public key `ca audit verify` checks
// checkpoints with: the pinned PEM file when given, else the checkpoint key
// found in the configured key store; nil when the key store has none (no
// CA with checkpoints ever ran on it). Never from the database.
func trustedCheckpointKey(ctx context.Context, cfg *config.Config, pinned string, log *slog.Logger) (crypto.PublicKey, string, error) {
	if pinned != "" {
		pub, err := readPublicKeyPEM(pinned)
		if err != nil {
			return nil, "", fmt.Errorf("--checkpoint-key: %w", err)
		}
		return pub, "pinned in " + pinned, nil
	}
	if cfg.PKCS11.Module == "" {
		// The software key store would create a missing directory.
		if _, err := os.Stat(cfg.KeysDir); errors.Is(err, os.ErrNotExist) {
			return nil, "", nil
		}
	}
	ks, err := openKeys(cfg, log)
	if err != nil {
		return nil, "", err
	}
	defer ks.Close()
	k, err := ks.Find(ctx, checkpointKeyURI(cfg))
	switch {
	case errors.Is(err, hsm.ErrKeyNotFound):
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("audit checkpoint key: %w", err)
	}
	return k.Signer.Public(), "from the key store, " + k.URI, nil
}

// readPublicKeyPEM reads a PEM PUBLIC KEY (as `ca audit checkpoint-key`
// prints it) or a CERTIFICATE whose key is the checkpoint key.
func readPublicKeyPEM(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is neither PUBLIC KEY nor CERTIFICATE", block.Type)
}
