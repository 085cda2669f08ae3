package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Audit actions and reason of the authorization policy file.
const (
	actionAuthzPolicyLoad   = "authz_policy_load"
	actionAuthzPolicyReload = "authz_policy_reload"
	reasonAuthzPolicyBad    = "authz_policy_invalid"
)

// authzHolder holds the current authorization policy; handlers Load it
// once per request, the reloader swaps it.
type authzHolder struct{ p atomic.Pointer[authz.Policy] }

// Load returns the current policy.
func (h *authzHolder) Load() *authz.Policy { return h.p.Load() }

var _ server.AuthzPolicySource = (*authzHolder)(nil)

// loadAuthzPolicyFile reads and compiles the authorization policy at path
// and checks it names the CA's trust domain.
func loadAuthzPolicyFile(path, td string) (*authz.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := authz.ParsePolicy(data)
	if err != nil {
		return nil, err
	}
	if p.TrustDomain() != td {
		return nil, fmt.Errorf("%w: the authorization policy says %q, the CA is configured for %q", errPolicyTrustDomain, p.TrustDomain(), td)
	}
	return p, nil
}

// authzReloader loads authz_policy_file at start (a bad file refuses to
// start) and reloads it on SIGHUP: a bad file is refused and the current
// policy stays; both outcomes are audited (authz_policy_reload).
type authzReloader struct {
	path        string
	trustDomain string
	holder      *authzHolder
	audit       auditAppender
	clock       clock.Clock
	log         *slog.Logger

	mu sync.Mutex
}

// newAuthzReloader loads the configured policy; nil, nil when none is
// configured.
func newAuthzReloader(ctx context.Context, cfg *config.Config, audit auditAppender, clk clock.Clock, log *slog.Logger) (*authzReloader, error) {
	if cfg.AuthzPolicyFile == "" {
		return nil, nil
	}
	p, err := loadAuthzPolicyFile(cfg.AuthzPolicyFile, cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("authz_policy_file %s: %w", cfg.AuthzPolicyFile, err)
	}
	r := &authzReloader{path: cfg.AuthzPolicyFile, trustDomain: cfg.TrustDomain, holder: &authzHolder{}, audit: audit, clock: clk, log: log}
	r.holder.p.Store(p)
	log.Info("authorization policy loaded", "authz_policy_file", r.path, "policy_version", p.Version(), "services", len(p.Services()))
	r.record(ctx, store.AuditEntry{Action: actionAuthzPolicyLoad, Decision: "allow", PolicyVersion: p.Version()},
		map[string]string{"authz_policy_file": r.path, "version": p.Version()})
	return r, nil
}

// reload re-reads the file; it returns the error that refused it, nil when
// the new policy is installed.
func (r *authzReloader) reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.holder.Load()
	p, err := loadAuthzPolicyFile(r.path, r.trustDomain)
	if err != nil {
		r.log.Error("authorization policy reload refused; the current policy stays", "authz_policy_file", r.path,
			"policy_version", old.Version(), "err", err)
		r.record(ctx, store.AuditEntry{Action: actionAuthzPolicyReload, Decision: "deny", Reason: reasonAuthzPolicyBad, PolicyVersion: old.Version()},
			map[string]string{"authz_policy_file": r.path, "kept_version": old.Version(), "error": truncate(err.Error(), 500)})
		return err
	}
	r.holder.p.Store(p)
	r.log.Info("authorization policy reloaded", "authz_policy_file", r.path, "old_version", old.Version(), "policy_version", p.Version())
	r.record(ctx, store.AuditEntry{Action: actionAuthzPolicyReload, Decision: "allow", PolicyVersion: p.Version()},
		map[string]string{"authz_policy_file": r.path, "old_version": old.Version(), "new_version": p.Version()})
	return nil
}

func (r *authzReloader) record(ctx context.Context, e store.AuditEntry, details map[string]string) {
	recordPolicyChange(ctx, r.audit, r.clock, r.log, "authz_policy", "the authorization policy change", e, details)
}

// run reloads on every value from hup until ctx ends.
func (r *authzReloader) run(ctx context.Context, hup <-chan os.Signal) {
	reloadOnHUP(ctx, hup, r.reload)
}

// authzDeps builds the routes' authorization collaborators (zero when no
// policy is configured). The signer's keys are deleted at shutdown.
func authzDeps(r *authzReloader, b *backends, leaves server.LeafIssuer, td string, keyType hsm.KeyType, log *slog.Logger) (server.AuthzDeps, *server.AuthzSigner, error) {
	if r == nil {
		return server.AuthzDeps{}, nil, nil
	}
	signer, err := server.NewAuthzSigner(server.AuthzSignerConfig{
		Keys: b.keys, Issuer: leaves, TrustDomain: td, Clock: clock.Real{}, Log: log, KeyType: keyType,
	})
	if err != nil {
		return server.AuthzDeps{}, nil, err
	}
	return server.AuthzDeps{Policy: r.holder, Store: b.store, Signer: signer}, signer, nil
}
