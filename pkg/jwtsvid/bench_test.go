package jwtsvid_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkVerify is one verification against a cached bundle.
func BenchmarkVerify(b *testing.B) {
	c := newCA(b)
	v, _ := c.verifier(b)
	tok := c.sign(b, workload, 5*time.Minute, "api").Token
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok, "api"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(ctx, tok, "api"); err != nil {
			b.Fatal(err)
		}
	}
}
