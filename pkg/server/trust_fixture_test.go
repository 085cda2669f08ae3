package server

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// fixtureTrust is the trust part of the unit-test fixture: the bundle is
// rendered from the test CA's anchors as version 1 on every request (so
// testCA.failAnchors fails it), the administration routes answer from fakes,
// and no operator is authorised. trust_test.go runs the real thing.
func fixtureTrust(ca *testCA) *TrustDeps {
	return &TrustDeps{Bundles: fixtureBundles{ca}, Versions: fixtureVersions{}, Rotation: fixtureRotation{}, Issuers: fixtureIssuers{ca}}
}

type fixtureBundles struct{ ca *testCA }

func (b fixtureBundles) Current(ctx context.Context) (*bundle.Published, error) {
	anchors, err := b.ca.TrustAnchors(ctx)
	if err != nil {
		return nil, err
	}
	c, err := bundle.NewContent(anchors, nil)
	if err != nil {
		return nil, err
	}
	return bundle.Render(store.BundleVersion{Sequence: 1, CreatedAt: b.ca.clock.Now(), Content: c.Marshal()}, 5*time.Minute)
}

type fixtureVersions struct{}

func (fixtureVersions) Rollback(context.Context, bundle.RollbackOptions) (store.BundleVersion, error) {
	return store.BundleVersion{}, bundle.ErrInvalidRollback
}

func (fixtureVersions) ListBundleVersions(context.Context, int64, int) ([]store.BundleVersion, error) {
	return nil, nil
}

type fixtureRotation struct{}

func (fixtureRotation) Rotate(context.Context, issuer.RotateOptions) (issuer.RotateResult, error) {
	return issuer.RotateResult{}, issuer.ErrRotationInProgress
}

func (fixtureRotation) Activate(context.Context, issuer.ActivateOptions) (issuer.TickResult, error) {
	return issuer.TickResult{}, issuer.ErrNotReady
}

func (fixtureRotation) Abandon(context.Context, issuer.AbandonOptions) (issuer.AbandonResult, error) {
	return issuer.AbandonResult{}, issuer.ErrNothingPrepared
}

type fixtureIssuers struct{ ca *testCA }

func (f fixtureIssuers) ListIssuers(context.Context) ([]store.Issuer, error) {
	return []store.Issuer{{ID: "root-1", Kind: store.KindRoot, State: store.IssuerActive, CertDER: f.ca.root.Raw,
		NotBefore: f.ca.root.NotBefore, NotAfter: f.ca.root.NotAfter, CreatedAt: f.ca.root.NotBefore, UpdatedAt: f.ca.root.NotBefore}}, nil
}
