package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// trustServer is the fixture's routes with the real trust components: a
// SQLite store, software keys, an initialised CA, the bundle publisher and
// cache, and a Rotator. Operators authenticate as everywhere: with a bearer
// token of the operator IdP (token issuer "operator"), whose groups give
// the roles of the policy; the actor of role R is "operator:R".
type trustServer struct {
	f      *fixture
	st     store.Store
	pub    *bundle.Publisher
	idp    *testkit.OIDCIssuer
	api    *httptest.Server
	public *httptest.Server
}

func newTrustServer(t *testing.T) *trustServer {
	t.Helper()
	ctx := context.Background()
	var idp *testkit.OIDCIssuer
	f := newFixtureWith(t, func(f *fixture, d *Deps) {
		idp = testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(f.clock), testkit.WithOIDCAudience(operatorAudience))
		pol, err := policy.Parse([]byte(fmt.Sprintf(`trust_domain: example.org
token_issuers:
  - name: operator
    issuer: %s
    audience: %s
    jwks_url: %s
roles:
  - role: auditor
    issuer: operator
    when: '"pki-auditors" in claims.groups'
  - role: admin
    issuer: operator
    when: '"pki-admins" in claims.groups'
`, idp.URL, operatorAudience, idp.JWKSURL())))
		if err != nil {
			t.Fatal(err)
		}
		d.Policy = policy.NewHolder(pol)
		d.Verifier = enroll.NewVerifier(f.clock, enroll.WithHTTPClient(idp.Client()))
	})
	st := testkit.SQLite(t)
	keys := testkit.SoftwareKeys(t)
	cfg := cafixture.New(t, keys, st, f.clock, nil).Config
	pub, err := bundle.NewPublisher(bundle.Deps{Store: st, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, bundle.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	rot, err := issuer.NewRotator(issuer.RotatorDeps{Keys: keys, Store: st, Bundles: pub, Clock: f.clock}, cfg, issuer.RotationConfig{Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f.routes.d.Trust = &TrustDeps{
		Bundles: bundle.NewCache(st, f.clock, nil, bundle.ServeConfig{RefreshHint: 5 * time.Minute, Recheck: time.Second}),
		Versions: struct {
			*bundle.Publisher
			bundleVersionLister
		}{pub, st},
		Rotation: rot,
		Issuers:  st,
	}
	ts := &trustServer{f: f, st: st, pub: pub, idp: idp, api: httptest.NewServer(f.routes.API()), public: httptest.NewServer(f.routes.Public())}
	t.Cleanup(ts.api.Close)
	t.Cleanup(ts.public.Close)
	return ts
}

type bundleVersionLister interface {
	ListBundleVersions(ctx context.Context, before int64, limit int) ([]store.BundleVersion, error)
}

// do sends one request, as an operator holding role unless it is "", and
// checks it against api/openapi.yaml.
func (ts *trustServer) do(t *testing.T, method, url, role, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		tok := ts.idp.Mint(t, map[string]any{"sub": role, "groups": []any{"pki-" + role + "s"}})
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(raw))
	doc := loadOpenAPI(t, ts.api.URL, ts.public.URL)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	validateExchange(t, router, req, res)
	return res, raw
}

func TestBundleJSONServesThePublishedVersionWithETags(t *testing.T) {
	ts := newTrustServer(t)
	res, body := ts.do(t, "GET", ts.public.URL+"/bundle.json", "", "", nil)
	if res.StatusCode != 200 || res.Header.Get("X-Bundle-Sequence") != "1" || res.Header.Get("Cache-Control") != "public, max-age=150, must-revalidate" {
		t.Fatalf("GET /bundle.json = %d, headers %v", res.StatusCode, res.Header)
	}
	sb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), body)
	if err != nil || len(sb.X509Authorities()) != 1 {
		t.Fatalf("bundle.json does not parse as a SPIFFE bundle with one root: %v\n%s", err, body)
	}
	etag := res.Header.Get("ETag")
	pemRes, _ := ts.do(t, "GET", ts.api.URL+"/bundle.pem", "", "", nil)
	if pemRes.Header.Get("ETag") == etag || pemRes.Header.Get("X-Bundle-Sequence") != "1" {
		t.Errorf("bundle.pem ETag %q equals bundle.json's, or wrong sequence", pemRes.Header.Get("ETag"))
	}
	if res, body := ts.do(t, "GET", ts.public.URL+"/bundle.json", "", "", map[string]string{"If-None-Match": etag}); res.StatusCode != 304 || len(body) != 0 {
		t.Errorf("revalidation with the current ETag = %d with %d bytes; want 304 without body", res.StatusCode, len(body))
	}

	// A root rotation publishes both roots under a new sequence and ETag.
	res, body = ts.do(t, "POST", ts.api.URL+"/v1/issuers/rotate", "admin", `{"root": true}`, nil)
	if res.StatusCode != 202 {
		t.Fatalf("rotate = %d %s", res.StatusCode, body)
	}
	ts.f.clock.Advance(2 * time.Second) // past the cache's recheck
	res, body = ts.do(t, "GET", ts.public.URL+"/bundle.json", "", "", map[string]string{"If-None-Match": etag})
	if res.StatusCode != 200 || res.Header.Get("X-Bundle-Sequence") != "2" || res.Header.Get("ETag") == etag {
		t.Fatalf("after a root rotation GET /bundle.json with the old ETag = %d, sequence %s", res.StatusCode, res.Header.Get("X-Bundle-Sequence"))
	}
	sb, err = spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), body)
	if seq, _ := sb.SequenceNumber(); err != nil || len(sb.X509Authorities()) != 2 || seq != 2 {
		t.Errorf("after a root rotation: %v, %d roots, sequence %d; want both roots as sequence 2", err, len(sb.X509Authorities()), seq)
	}
}

func TestTrustAdministrationRoutes(t *testing.T) {
	ts := newTrustServer(t)
	api := ts.api.URL
	type answer struct {
		status int
		reason Reason
	}
	steps := []struct {
		name                     string
		method, path, role, body string
		want                     answer
	}{
		{"rotation without credentials is unauthorized", "POST", "/v1/issuers/rotate", "", `{}`, answer{401, ReasonUnauthorized}},
		{"rotation by an auditor is forbidden", "POST", "/v1/issuers/rotate", "auditor", `{}`, answer{403, ReasonForbidden}},
		{"an auditor lists the issuers", "GET", "/v1/issuers", "auditor", "", answer{200, ""}},
		{"an admin prepares a rotation", "POST", "/v1/issuers/rotate", "admin", "", answer{202, ""}},
		{"a second rotation conflicts", "POST", "/v1/issuers/rotate", "admin", `{"root": true}`, answer{409, ReasonRotationInProgress}},
		{"activation before the overlap is refused", "POST", "/v1/issuers/activate", "admin", `{}`, answer{409, ReasonActivationNotReady}},
		{"forced activation works", "POST", "/v1/issuers/activate", "admin", `{"force": true}`, answer{200, ""}},
		{"unknown fields are refused", "POST", "/v1/issuers/rotate", "admin", `{"roots": true}`, answer{400, ReasonBadRequest}},
		{"rollback to the current version is invalid", "POST", "/v1/bundle/rollback", "admin", `{"to_sequence": 1}`, answer{400, ReasonRollbackInvalid}},
		{"an auditor lists bundle versions", "GET", "/v1/bundle/versions?limit=5", "auditor", "", answer{200, ""}},
		{"a bad page size is refused", "GET", "/v1/bundle/versions?limit=0", "auditor", "", answer{400, ReasonBadRequest}},
		{"rollback by an auditor is forbidden", "POST", "/v1/bundle/rollback", "auditor", `{"to_sequence": 1}`, answer{403, ReasonForbidden}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			res, body := ts.do(t, s.method, api+s.path, s.role, s.body, nil)
			if res.StatusCode != s.want.status {
				t.Fatalf("%s %s = %d %s; want %d", s.method, s.path, res.StatusCode, body, s.want.status)
			}
			if s.want.reason != "" {
				var p Problem
				if err := json.Unmarshal(body, &p); err != nil || p.Reason != s.want.reason {
					t.Errorf("reason %q, want %q", p.Reason, s.want.reason)
				}
			}
		})
	}

	// A real rollback after a bad push: the previous anchors come back under
	// a higher sequence.
	ts.f.clock.Advance(time.Minute)
	res, body := ts.do(t, "POST", api+"/v1/issuers/rotate", "admin", `{"root": true}`, nil)
	if res.StatusCode != 202 {
		t.Fatalf("root rotation = %d %s", res.StatusCode, body)
	}
	var rot struct {
		BundleSequence int64 `json:"bundle_sequence"`
	}
	_ = json.Unmarshal(body, &rot)
	res, body = ts.do(t, "POST", api+"/v1/bundle/rollback", "admin", `{"to_sequence": 1}`, nil)
	var v BundleVersionView
	if err := json.Unmarshal(body, &v); err != nil || res.StatusCode != 200 || v.Sequence <= rot.BundleSequence || v.RolledBackFrom != 1 || len(v.AnchorsSHA256) != 1 || v.Actor != "operator:admin" {
		t.Fatalf("rollback = %d %s", res.StatusCode, body)
	}
	ts.f.clock.Advance(2 * time.Second)
	res, _ = ts.do(t, "GET", ts.public.URL+"/bundle.json", "", "", nil)
	if res.Header.Get("X-Bundle-Sequence") != strings.TrimSpace(jsonInt(v.Sequence)) {
		t.Errorf("served sequence %s after the rollback, want %d", res.Header.Get("X-Bundle-Sequence"), v.Sequence)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
