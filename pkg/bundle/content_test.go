package bundle_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
)

func TestContentIsCanonical(t *testing.T) {
	a := selfSigned(t, "a", t0, true)
	b := selfSigned(t, "b", t0.Add(time.Hour), true)
	k1, k2 := jwtKey(t, "k1"), jwtKey(t, "k2")
	one, err := bundle.NewContent([]*x509.Certificate{a, b}, []bundle.JWTAuthority{k1, k2})
	if err != nil {
		t.Fatal(err)
	}
	two, err := bundle.NewContent([]*x509.Certificate{b, a, b}, []bundle.JWTAuthority{k2, k1, k2})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Marshal(), two.Marshal()) {
		t.Errorf("order and duplicates changed the canonical form:\n%s\n%s", one.Marshal(), two.Marshal())
	}
	if len(two.X509Authorities) != 2 || !bytes.Equal(two.X509Authorities[0], a.Raw) {
		t.Errorf("anchors not deduplicated and oldest first")
	}
	back, err := bundle.ParseContent(one.Marshal())
	if err != nil || !bytes.Equal(back.Marshal(), one.Marshal()) {
		t.Errorf("ParseContent round trip = %s, %v", back.Marshal(), err)
	}
	empty, err := bundle.NewContent(nil, nil)
	if err != nil || string(empty.Marshal()) != `{"x509_authorities":[],"jwt_authorities":[]}` {
		t.Errorf("empty content = %s, %v", empty.Marshal(), err)
	}
}

func TestContentRefusals(t *testing.T) {
	leaf := selfSigned(t, "leaf", t0, false)
	k1 := jwtKey(t, "k1")
	other := jwtKey(t, "k1")
	cases := []struct {
		name string
		run  func() error
	}{
		{"a non-CA certificate is not a trust anchor", func() error {
			_, err := bundle.NewContent([]*x509.Certificate{leaf}, nil)
			return err
		}},
		{"two different JWT keys may not share a kid", func() error {
			_, err := bundle.NewContent(nil, []bundle.JWTAuthority{k1, other})
			return err
		}},
		{"a JWT key without kid is refused", func() error {
			_, err := bundle.NewJWTAuthority("", nil)
			return err
		}},
		{"a JWT key that does not parse is refused", func() error {
			_, err := bundle.NewContent(nil, []bundle.JWTAuthority{{KeyID: "x", SPKI: []byte("junk")}})
			return err
		}},
		{"stored content with unknown fields is refused", func() error {
			_, err := bundle.ParseContent([]byte(`{"x509_authorities":[],"jwt_authorities":[],"extra":1}`))
			return err
		}},
		{"stored content with a broken certificate is refused", func() error {
			_, err := bundle.ParseContent([]byte(`{"x509_authorities":["AAEC"],"jwt_authorities":[]}`))
			return err
		}},
		{"garbage is refused", func() error {
			_, err := bundle.ParseContent([]byte(`not json`))
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.run(); !errors.Is(err, bundle.ErrInvalidContent) {
				t.Errorf("got %v, want ErrInvalidContent", err)
			}
		})
	}
}
