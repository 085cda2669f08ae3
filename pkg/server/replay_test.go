package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// replayInStore keeps the fixture's certificates and audit in memory but
// records token use in a real store.
type replayInStore struct {
	*memRecords
	st store.Store
}

func (r replayInStore) MarkTokenUsed(ctx context.Context, key string, until, now time.Time) error {
	return r.st.MarkTokenUsed(ctx, key, until, now)
}

// newReplayFixture is a running server whose policy trusts one test OIDC
// issuer (with issuerExtra appended to its entry) and one rule for it, with
// token use recorded in SQLite.
func newReplayFixture(t *testing.T, issuerExtra string) *enrollFixture {
	t.Helper()
	oidc := testkit.NewOIDCIssuer(t)
	pol, err := policy.Parse([]byte(`trust_domain: example.org
token_issuers:
  - name: github
    issuer: ` + oidc.URL + `
    audience: ` + testkit.DefaultOIDCAudience + `
` + issuerExtra + `
rules:
  - name: acme-ci
    issuer: github
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://example.org/ci/payments
    max_ttl: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	st := testkit.SQLite(t)
	f := newFixtureWith(t, func(f *fixture, d *Deps) {
		d.Policy = policy.NewHolder(pol)
		d.Verifier = enroll.NewVerifier(d.Clock, enroll.WithHTTPClient(oidc.Client()))
		d.BodyLimit = 64 << 10
		d.Enroll.Records = replayInStore{memRecords: f.records, st: st}
	})
	return &enrollFixture{fixture: f, rs: startServer(t, f), oidc: oidc, records: f.records}
}

func TestReencodedTokensWithoutJTIAreReplays(t *testing.T) {
	f := newReplayFixture(t, "")
	client := f.rs.client()
	enrollWith := func(tok string) (int, Reason) {
		t.Helper()
		_, csr := csrPEM(t)
		_, res := postJSON(t, client, f.rs.apiURL+"/v1/enroll", tok, CertRequest{CSR: csr})
		defer res.Body.Close()
		if res.StatusCode == http.StatusCreated {
			return res.StatusCode, ""
		}
		return res.StatusCode, decodeProblem(t, res).Reason
	}
	tok := f.oidc.GitHubToken(t, map[string]any{"jti": nil})
	if code, reason := enrollWith(tok); code != http.StatusCreated {
		t.Fatalf("first use of the token: %d %s", code, reason)
	}
	highS, ok := testkit.HighS(tok)
	if !ok {
		t.Fatal("the token is not ES256")
	}
	bits, ok := testkit.OtherUnusedBits(tok, 2)
	if !ok {
		t.Fatal("the signature segment has no unused bits")
	}
	for name, v := range map[string]string{
		"the same token":                      tok,
		"its ECDSA signature as (r, n-s)":     highS,
		"its signature's unused bits changed": bits,
	} {
		if code, reason := enrollWith(v); reason != ReasonTokenReplayed {
			t.Errorf("%s: %d %q, want token_replayed", name, code, reason)
		}
	}
}

func TestAnIssuerThatRequiresJTIRefusesTokensWithoutOne(t *testing.T) {
	f := newReplayFixture(t, "    require_jti: true\n")
	client := f.rs.client()
	_, csr := csrPEM(t)
	_, res := postJSON(t, client, f.rs.apiURL+"/v1/enroll", f.oidc.GitHubToken(t, map[string]any{"jti": nil}), CertRequest{CSR: csr})
	p := decodeProblem(t, res)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || p.Reason != ReasonTokenMalformed {
		t.Fatalf("token without jti: %d %s (%s), want 401 token_malformed", res.StatusCode, p.Reason, p.Detail)
	}
	_, res = postJSON(t, client, f.rs.apiURL+"/v1/enroll", f.oidc.GitHubToken(t, nil), CertRequest{CSR: csr})
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("token with jti: %d, want 201", res.StatusCode)
	}
}
