package jwtsvid_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/workload-ca/workload-ca/pkg/jwtsvid"
)

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// FuzzVerify feeds arbitrary tokens to Verify: it must never panic, and a
// refusal always carries a Reason. Seeds are in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	b := spiffebundle.New(td)
	if err := b.AddJWTAuthority("k1", key.Public()); err != nil {
		f.Fatal(err)
	}
	v, err := jwtsvid.NewVerifier(jwtsvid.Config{
		TrustDomain: td, Source: jwtsvid.NewStaticSource(b),
		Clock: fixedClock(time.Unix(1900000000, 0)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy94In0.")
	f.Fuzz(func(t *testing.T, token string) {
		svid, err := v.Verify(context.Background(), token, "api")
		if err == nil {
			t.Fatalf("a token not signed by k1 verified: %+v", svid)
		}
		if jwtsvid.ReasonOf(err) == "" {
			t.Fatalf("refusal without a reason: %v", err)
		}
	})
}
