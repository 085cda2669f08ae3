package bundle_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// BenchmarkCacheCurrent is the serving hot path: a cached version within the
// recheck interval.
func BenchmarkCacheCurrent(b *testing.B) {
	src := &countingSource{}
	c, _ := bundle.NewContent([]*x509.Certificate{selfSigned(b, "a", t0, true), selfSigned(b, "b", t0, true)}, nil)
	src.versions = append(src.versions, store.BundleVersion{Sequence: 1, CreatedAt: t0, Content: c.Marshal()})
	cache := bundle.NewCache(src, clock.NewFake(t0), nil, bundle.ServeConfig{})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cache.Current(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRender is the cost of a cache miss: parsing a stored version and
// rendering bundle.json and bundle.pem.
func BenchmarkRender(b *testing.B) {
	c, _ := bundle.NewContent([]*x509.Certificate{selfSigned(b, "a", t0, true), selfSigned(b, "b", t0, true)}, []bundle.JWTAuthority{jwtKey(b, "k1")})
	v := store.BundleVersion{Sequence: 7, CreatedAt: t0, Content: c.Marshal()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bundle.Render(v, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishUnchanged is what every rotation tick costs on each replica
// when nothing changed: read the latest version and the issuers, compute,
// compare.
func BenchmarkPublishUnchanged(b *testing.B) {
	b.Run("Postgres", func(b *testing.B) { benchPublishUnchanged(b, testkit.Postgres(b)) })
	b.Run("SQLite", func(b *testing.B) { benchPublishUnchanged(b, testkit.SQLite(b)) })
}

func benchPublishUnchanged(b *testing.B, st store.Store) {
	for i := range 3 {
		insertRoot(b, st, fmt.Sprintf("r%d", i), selfSigned(b, fmt.Sprintf("root %d", i), t0, true), store.IssuerActive, t0)
	}
	p, _ := bundle.NewPublisher(bundle.Deps{Store: st, Clock: clock.NewFake(t0)})
	ctx := context.Background()
	if _, err := p.Publish(ctx, bundle.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := p.Publish(ctx, bundle.PublishOptions{})
		if err != nil || res.Changed {
			b.Fatalf("Publish = %+v, %v", res, err)
		}
	}
}
