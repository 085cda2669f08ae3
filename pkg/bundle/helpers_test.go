package bundle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// selfSigned makes a throwaway CA (or, with ca false, a non-CA) certificate.
func selfSigned(t testing.TB, cn string, notBefore time.Time, ca bool) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: ca, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// insertRoot records c as a root issuer in the given state.
func insertRoot(t testing.TB, st store.Store, id string, c *x509.Certificate, state store.IssuerState, at time.Time) {
	t.Helper()
	err := st.InsertIssuer(context.Background(), store.Issuer{
		ID: id, Kind: store.KindRoot, KeyURI: "softkey:" + id, CertDER: c.Raw, SubjectKeyID: c.SubjectKeyId,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, State: state, CreatedAt: at, UpdatedAt: at,
	})
	if err != nil {
		t.Fatalf("InsertIssuer(%s): %v", id, err)
	}
}

func jwtKey(t testing.TB, kid string) bundle.JWTAuthority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := bundle.NewJWTAuthority(kid, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// staticJWT is a JWTKeySource with fixed keys.
type staticJWT []bundle.JWTAuthority

func (s staticJWT) JWTAuthorities(context.Context) ([]bundle.JWTAuthority, error) { return s, nil }
