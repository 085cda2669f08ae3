package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Trust-bundle and rotation settings. They are constants until pkg/config
// grows fields for them; the overlap is twice the refresh hint (see
// bundle.ServeConfig).
const (
	bundleRefreshHint = bundle.DefaultRefreshHint
	bundleRecheck     = bundle.DefaultRecheck
	rotationOverlap   = issuer.DefaultOverlap
	rotationTick      = 30 * time.Second
	issuerRecheck     = issuer.DefaultRecheck
)

var (
	_ server.BundleSource = (*bundle.Cache)(nil)
)

// trust is the trust-bundle publisher, its serving cache, the CA rotator
// and the JWT-SVID key manager (whose keys the publisher publishes).
type trust struct {
	publisher *bundle.Publisher
	cache     *bundle.Cache
	rotator   *issuer.Rotator
	jwtKeys   *jwtkeys.Manager
	store     store.Store
}

// newTrust wires bundle publication and rotation over the opened backends.
func newTrust(cfg *config.Config, b *backends, log *slog.Logger) (*trust, error) {
	pub, err := bundle.NewPublisher(bundle.Deps{Store: b.store, JWTKeys: jwtkeys.NewPublished(b.store), Clock: clock.Real{}, Log: log})
	if err != nil {
		return nil, err
	}
	jk, err := jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: b.keys, Store: b.store, Bundles: pub, Clock: clock.Real{}, Log: log},
		jwtKeysConfig(cfg))
	if err != nil {
		return nil, err
	}
	rot, err := issuer.NewRotator(issuer.RotatorDeps{Keys: b.keys, Store: b.store, Bundles: pub, Clock: clock.Real{}, Log: log},
		issuerConfig(cfg), issuer.RotationConfig{Overlap: rotationOverlap})
	if err != nil {
		return nil, err
	}
	cache := bundle.NewCache(b.store, clock.Real{}, log, bundle.ServeConfig{RefreshHint: bundleRefreshHint, Recheck: bundleRecheck})
	return &trust{publisher: pub, cache: cache, rotator: rot, jwtKeys: jk, store: b.store}, nil
}

// openAdmin is the start of a local admin command (`ca issuers`, `ca
// bundle`, `ca jwt-keys`): it loads the configuration at cfgPath, opens the
// backends it names and wires the trust publisher, rotator and JWT key
// manager over them. The caller closes the backends; on error nothing is
// left open.
func openAdmin(ctx context.Context, cfgPath string, getenv env, stderr io.Writer) (*backends, *trust, error) {
	cfg, err := loadConfig(cfgPath, getenv)
	if err != nil {
		return nil, nil, err
	}
	log := newLogger(cfg, stderr)
	b, err := openBackends(ctx, cfg, log, nil)
	if err != nil {
		return nil, nil, err
	}
	tr, err := newTrust(cfg, b, log)
	if err != nil {
		_ = b.Close()
		return nil, nil, err
	}
	return b, tr, nil
}

// adminCommand is a local admin command's sub-command (`ca issuers|bundle|
// jwt-keys SUB [flags]`) while the caller declares its own flags: the
// sub-command, its flag set (with --config and --actor) and its arguments.
type adminCommand struct {
	name, sub string
	args      []string
	fs        *flag.FlagSet
	cfgPath   *string
	actor     *string
}

// newAdminCommand splits args into the sub-command and its arguments; none
// is errUsage with usage, and a sub-command not among subs is errUsage
// naming it.
func newAdminCommand(name, usage string, args []string, getenv env, subs ...string) (*adminCommand, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: %s", errUsage, usage)
	}
	c := &adminCommand{name: name, sub: args[0], args: args[1:]}
	if !slices.Contains(subs, c.sub) {
		return nil, fmt.Errorf("%w: unknown %s command %q", errUsage, c.name, c.sub)
	}
	c.fs = flag.NewFlagSet(name+" "+c.sub, flag.ContinueOnError)
	c.cfgPath = commonFlags(c.fs)
	c.actor = actorFlag(c.fs, getenv)
	return c, nil
}

// open parses the sub-command's flags (no other arguments), runs check on
// them when it is not nil (a usage error stops before anything is opened),
// and opens the configured database and key store (openAdmin).
func (c *adminCommand) open(ctx context.Context, getenv env, stderr io.Writer, check func() error) (*backends, *trust, error) {
	if err := parseFlagsOnly(c.fs, c.args, stderr); err != nil {
		return nil, nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, nil, err
		}
	}
	return openAdmin(ctx, *c.cfgPath, getenv, stderr)
}

// publish makes sure the stored bundle matches the issuers (a no-op when it
// does), so a fresh CA serves a bundle from its first request.
func (t *trust) publish(ctx context.Context, actor string) (bundle.PublishResult, error) {
	res, err := t.publisher.Publish(ctx, bundle.PublishOptions{Actor: actor, Reason: "startup"})
	if err != nil {
		return res, fmt.Errorf("publishing the trust bundle: %w", err)
	}
	return res, nil
}

// serverDeps are the routes' trust dependencies; operator authorization
// guards the administration routes.
func (t *trust) serverDeps() *server.TrustDeps {
	return &server.TrustDeps{
		Bundles: t.cache,
		Versions: struct {
			*bundle.Publisher
			store.Store
		}{t.publisher, t.store},
		Rotation: t.rotator,
		Issuers:  t.store,
	}
}
