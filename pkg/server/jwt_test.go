package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ JWTSigner = (*jwtkeys.Signer)(nil)

const jwtTestPolicy = `trust_domain: example.org
jwt:
  max_ttl: 10m
  audiences:
    - spiffe_id: spiffe://example.org/prod/*
      allow: [https://api.example.org, vault]
`

// jwtFixture is a running server whose /v1/jwt signs with a real signer
// (software keys, SQLite), and a recorded workload certificate.
type jwtFixture struct {
	*fixture
	rs       *runningServer
	keys     store.Store
	mgr      *jwtkeys.Manager
	workload tls.Certificate
	serial   string
}

func newJWTFixture(t *testing.T, firstKey bool) *jwtFixture {
	t.Helper()
	jf := &jwtFixture{keys: testkit.SQLite(t)}
	ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	jf.fixture = newFixtureWith(t, func(f *fixture, d *Deps) {
		pol, err := policy.Parse([]byte(jwtTestPolicy))
		if err != nil {
			t.Fatal(err)
		}
		d.Policy = policy.NewHolder(pol)
		pub, err := bundle.NewPublisher(bundle.Deps{Store: jf.keys, JWTKeys: jwtkeys.NewPublished(jf.keys), Clock: f.clock})
		if err != nil {
			t.Fatal(err)
		}
		jf.mgr, err = jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: ks, Store: jf.keys, Bundles: pub, Clock: f.clock}, jwtkeys.Config{})
		if err != nil {
			t.Fatal(err)
		}
		signer, err := jwtkeys.NewSigner(jwtkeys.SignerDeps{Keys: ks, Store: jf.keys, Clock: f.clock}, jwtkeys.Config{})
		if err != nil {
			t.Fatal(err)
		}
		d.JWT = JWTDeps{Signer: signer, Records: f.records}
	})
	if firstKey {
		if _, err := jf.mgr.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	jf.rs = startServer(t, jf.fixture)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issued, err := (&testLeafIssuer{t: t, ca: jf.ca, records: jf.records}).Issue(context.Background(), issuer.Request{
		PublicKey: key.Public(), SPIFFEID: "spiffe://example.org/prod/payments", TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	jf.serial = issued.Serial
	jf.workload = tls.Certificate{Certificate: append([][]byte{issued.DER}, issued.Chain...), PrivateKey: key}
	return jf
}

func (jf *jwtFixture) post(t *testing.T, c *http.Client, body string) (*http.Request, *http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, jf.rs.apiURL+"/v1/jwt", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(raw))
	req.Body = io.NopCloser(bytes.NewReader([]byte(body)))
	return req, res, raw
}

// bundle is what a relying party parses from /bundle.json.
func (jf *jwtFixture) spiffeBundle(t *testing.T) *spiffebundle.Bundle {
	t.Helper()
	auth, err := jwtkeys.NewPublished(jf.keys).JWTAuthorities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := bundle.NewContent(nil, auth)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bundle.RenderJSON(c, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMintJWTSVID(t *testing.T) {
	jf := newJWTFixture(t, true)
	doc := loadOpenAPI(t, jf.rs.apiURL, jf.rs.publicURL)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	mtls := jf.rs.client(jf.workload)

	req, res, raw := jf.post(t, mtls, `{"audience": ["vault", "https://api.example.org"], "ttl": "2m"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/jwt = %d %s", res.StatusCode, raw)
	}
	validateExchange(t, router, req, res)
	var got JWTResponse
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	svid, err := jwtsvid.ParseAndValidate(got.Token, jf.spiffeBundle(t), []string{"vault"})
	if err != nil {
		t.Fatalf("go-spiffe refuses the minted token: %v", err)
	}
	if svid.ID.String() != "spiffe://example.org/prod/payments" || got.SPIFFEID != svid.ID.String() {
		t.Errorf("subject %s / %s", svid.ID, got.SPIFFEID)
	}
	if d := svid.Expiry.Sub(jf.clock.Now()); d > 2*time.Minute || d < 2*time.Minute-2*time.Second {
		t.Errorf("lifetime %s, want 2m", d)
	}

	// The default lifetime is the policy's (5m: min(5m, max_ttl)).
	_, res, raw = jf.post(t, mtls, `{"audience": ["vault"]}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("default ttl: %d %s", res.StatusCode, raw)
	}
	_ = json.Unmarshal(raw, &got)
	if d := got.ExpiresAt.Sub(jf.clock.Now()); d > 5*time.Minute || d < 5*time.Minute-2*time.Second {
		t.Errorf("default lifetime %s, want 5m", d)
	}

	revoked := jf.rs.client(jf.workload)
	cases := []struct {
		name   string
		client *http.Client
		body   string
		before func()
		status int
		reason Reason
	}{
		{"no client certificate is unauthorized", jf.rs.client(), `{"audience": ["vault"]}`, nil, 401, ReasonUnauthorized},
		{"an audience the policy does not allow is policy_denied", mtls, `{"audience": ["vault", "billing"]}`, nil, 403, ReasonPolicyDenied},
		{"a lifetime above jwt.max_ttl is ttl_too_long", mtls, `{"audience": ["vault"], "ttl": "11m"}`, nil, 400, ReasonTTLTooLong},
		{"a zero lifetime is ttl_invalid", mtls, `{"audience": ["vault"], "ttl": "0s"}`, nil, 400, ReasonTTLInvalid},
		{"no audience is bad_request", mtls, `{"audience": []}`, nil, 400, ReasonBadRequest},
		{"a repeated audience is bad_request", mtls, `{"audience": ["vault", "vault"]}`, nil, 400, ReasonBadRequest},
		{"an unknown field is bad_request", mtls, `{"audience": ["vault"], "sub": "spiffe://example.org/admin"}`, nil, 400, ReasonBadRequest},
		{"a revoked certificate is certificate_revoked", revoked, `{"audience": ["vault"]}`, func() {
			jf.records.mu.Lock()
			c := jf.records.certs[jf.serial]
			c.Status, c.RevocationReason = store.CertRevoked, "keyCompromise"
			jf.records.certs[jf.serial] = c
			jf.records.mu.Unlock()
		}, 403, ReasonCertificateRevoked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			before := len(jf.records.denials())
			req, res, raw := jf.post(t, tc.client, tc.body)
			var p Problem
			_ = json.Unmarshal(raw, &p)
			if res.StatusCode != tc.status || p.Reason != tc.reason {
				t.Fatalf("got %d %s (%s), want %d %s", res.StatusCode, p.Reason, p.Detail, tc.status, tc.reason)
			}
			validateExchange(t, router, req, res)
			denials := jf.records.denials()
			if len(denials) != before+1 {
				t.Fatalf("the refusal was not audited")
			}
			if d := denials[len(denials)-1]; d.Action != "jwt" || d.Reason != string(tc.reason) {
				t.Errorf("denial %+v", d)
			}
		})
	}
}

func TestMintJWTSVIDBeforeTheFirstKeyIsUnavailable(t *testing.T) {
	jf := newJWTFixture(t, false)
	_, res, raw := jf.post(t, jf.rs.client(jf.workload), `{"audience": ["vault"]}`)
	var p Problem
	_ = json.Unmarshal(raw, &p)
	if res.StatusCode != http.StatusServiceUnavailable || p.Reason != ReasonJWTKeyUnavailable {
		t.Fatalf("got %d %s, want 503 jwt_key_unavailable", res.StatusCode, p.Reason)
	}
}
