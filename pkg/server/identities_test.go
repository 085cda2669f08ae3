package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var (
	_ IdentityRevoker = (*revoke.Revoker)(nil)
	_ HoldKeeper      = (*hold.Holds)(nil)
)

// The identities of the hold tests: ciID is what the policy's ci rule
// grants acme/payments; jwtID may mint JWT-SVIDs for "vault".
const (
	ciID    = "spiffe://example.org/ci/acme/payments"
	jwtID   = "spiffe://example.org/prod/api"
	otherID = "spiffe://example.org/ci/acme/billing"
)

// holdServer is the operator server with enrollment, renewal and JWT-SVIDs
// served by the real issuer and JWT signer over Postgres, and identity holds.
type holdServer struct {
	*operatorServer
	reg *prometheus.Registry
}

func newHoldServer(t *testing.T) *holdServer {
	t.Helper()
	return newHoldServerWith(t, nil)
}

// newHoldServerWith lets a test wrap the hold keeper the routes use.
func newHoldServerWith(t *testing.T, wrap func(HoldKeeper) HoldKeeper) *holdServer {
	t.Helper()
	keys := softwareKeys(t)
	hs := &holdServer{}
	var mgr *jwtkeys.Manager
	hs.operatorServer = newOperatorServerWith(t, keys, func(o *operatorServer, d *Deps, rv *revoke.Revoker) {
		pol, err := policy.Parse([]byte(fmt.Sprintf(`trust_domain: example.org
token_issuers:
  - name: corp-idp
    issuer: %s
    audience: %s
    jwks_url: %s
  - name: github
    issuer: %s
    audience: %s
rules:
  - name: ci
    issuer: github
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://example.org/ci/{{claims.repository|path}}
    max_ttl: 15m
jwt:
  max_ttl: 10m
  audiences:
    - spiffe_id: spiffe://example.org/prod/*
      allow: [vault]
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
  - role: revoker
    issuer: corp-idp
    when: '"pki-revokers" in claims.groups'
  - role: admin
    issuer: corp-idp
    when: '"pki-admins" in claims.groups'
`, o.idp.URL, operatorAudience, o.idp.JWKSURL(), o.ci.URL, testkit.DefaultOIDCAudience)))
		if err != nil {
			t.Fatal(err)
		}
		d.Policy = policy.NewHolder(pol)
		d.Enroll = EnrollDeps{Issuer: o.iss, Records: o.st}
		pub, err := bundle.NewPublisher(bundle.Deps{Store: o.st, JWTKeys: jwtkeys.NewPublished(o.st), Clock: o.clk})
		if err != nil {
			t.Fatal(err)
		}
		mgr, err = jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: keys, Store: o.st, Bundles: pub, Clock: o.clk}, jwtkeys.Config{})
		if err != nil {
			t.Fatal(err)
		}
		signer, err := jwtkeys.NewSigner(jwtkeys.SignerDeps{Keys: keys, Store: o.st, Clock: o.clk}, jwtkeys.Config{})
		if err != nil {
			t.Fatal(err)
		}
		d.JWT = JWTDeps{Signer: signer, Records: o.st}
		h, err := hold.New(o.st, o.clk, d.Log, d.Metrics)
		if err != nil {
			t.Fatal(err)
		}
		d.Identities = IdentityDeps{Revoker: rv, Holds: h}
		if wrap != nil {
			d.Identities.Holds = wrap(h)
		}
		hs.reg = d.Metrics
	})
	if _, err := mgr.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	return hs
}

func (hs *holdServer) revoker() creds { return creds{bearer: hs.token("rita", "pki-revokers")} }
func (hs *holdServer) admin() creds   { return creds{bearer: hs.token("ada", "pki-admins")} }
func (hs *holdServer) auditor() creds { return creds{bearer: hs.token("aud", "pki-auditors")} }

// enroll presents a fresh GitHub token for repository and a new CSR; on
// 201 it returns the certificate with its key, ready for mTLS.
func (hs *holdServer) enroll(t *testing.T, repository, rid string) (*http.Response, []byte, tls.Certificate) {
	t.Helper()
	tok := hs.ci.GitHubToken(t, map[string]any{"repository": repository})
	key, csr := csrPEM(t)
	body, _ := json.Marshal(CertRequest{CSR: csr})
	res, raw := hs.call(creds{bearer: tok}, http.MethodPost, "/v1/enroll", string(body), rid)
	return res, raw, certWithKey(t, res, raw, key)
}

// certWithKey pairs a 201 certificate answer with its key.
func certWithKey(t *testing.T, res *http.Response, raw []byte, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	if res.StatusCode != http.StatusCreated {
		return tls.Certificate{}
	}
	got := decode[CertResponse](t, raw)
	c, err := tls.X509KeyPair([]byte(got.Certificate+got.Chain), pemKey(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// renew renews cur (with its key) for a new key.
func (hs *holdServer) renew(t *testing.T, cur tls.Certificate, rid string) (*http.Response, []byte, tls.Certificate) {
	t.Helper()
	key, csr := csrPEM(t)
	body, _ := json.Marshal(CertRequest{CSR: csr})
	res, raw := hs.call(creds{cert: &cur}, http.MethodPost, "/v1/renew", string(body), rid)
	return res, raw, certWithKey(t, res, raw, key)
}

func wantProblem(t *testing.T, what string, res *http.Response, raw []byte, status int, reason Reason) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("%s: %d %s, want %d %s", what, res.StatusCode, raw, status, reason)
	}
	if reason == "" {
		return
	}
	var p Problem
	if err := json.Unmarshal(raw, &p); err != nil || p.Reason != reason {
		t.Fatalf("%s: %s, want reason %s", what, raw, reason)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += metricValue(m)
		}
		return sum
	}
	t.Fatalf("metric %s not exposed", name)
	return 0
}

func metricValue(m *dto.Metric) float64 {
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// auditActions lists the actions and reasons of a request's entries.
func auditActions(entries []store.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Action+"/"+e.Decision+"/"+e.Reason)
	}
	return out
}

func TestIdentityHoldRefusesEnrollmentRenewalAndJWTUntilReleased(t *testing.T) {
	hs := newHoldServer(t)

	// A workload enrolls and holds a certificate it can renew.
	res, raw, cur := hs.enroll(t, "acme/payments", "enroll-1")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll: %d %s", res.StatusCode, raw)
	}

	// A hold without revocation: the certificate stays valid, but nothing new.
	res, raw = hs.call(hs.revoker(), http.MethodPost, "/v1/identities/hold",
		`{"spiffe_id": "`+ciID+`", "reason": "keyCompromise", "hold": "1h"}`, "hold-1")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("hold: %d %s", res.StatusCode, raw)
	}
	placed := decode[HoldResponse](t, raw).Hold
	if placed.SPIFFEID != ciID || !placed.Until.Equal(hs.clk.Now().Add(time.Hour)) || placed.PlacedBy != "corp-idp:rita" {
		t.Errorf("hold answer %+v", placed)
	}
	res, raw, _ = hs.enroll(t, "acme/payments", "enroll-held")
	wantProblem(t, "enrolling a held identity", res, raw, http.StatusForbidden, ReasonIdentityOnHold)
	res, raw, _ = hs.renew(t, cur, "renew-held")
	wantProblem(t, "renewing a held identity", res, raw, http.StatusForbidden, ReasonIdentityOnHold)
	// Another identity is not held.
	res, raw, _ = hs.enroll(t, "acme/billing", "enroll-other")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enrolling another identity: %d %s", res.StatusCode, raw)
	}
	audit := hs.auditByRequestID()
	for _, rid := range []string{"enroll-held", "renew-held"} {
		got := auditActions(audit[rid])
		if len(got) != 1 || !strings.HasSuffix(got[0], "/deny/identity_on_hold") {
			t.Errorf("audit of %s = %v, want one denial with reason identity_on_hold", rid, got)
		}
	}
	if got := auditActions(audit["hold-1"]); len(got) != 1 || got[0] != "identity_hold/allow/" ||
		!strings.Contains(string(audit["hold-1"][0].Details), `"reason":"keyCompromise"`) || audit["hold-1"][0].Target != ciID {
		t.Errorf("audit of the hold = %v %s", got, audit["hold-1"][0].Details)
	}

	// The list shows it to auditors.
	res, raw = hs.call(hs.auditor(), http.MethodGet, "/v1/identities/holds", "", "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("list holds: %d %s", res.StatusCode, raw)
	}
	if l := decode[HoldList](t, raw); len(l.Items) != 1 || l.Items[0].ID != placed.ID {
		t.Errorf("holds = %+v", l)
	}

	// Only an admin releases.
	res, raw = hs.call(hs.revoker(), http.MethodPost, "/v1/identities/release", `{"spiffe_id": "`+ciID+`"}`, "")
	wantProblem(t, "a revoker releasing", res, raw, http.StatusForbidden, ReasonForbidden)
	res, raw = hs.call(hs.admin(), http.MethodPost, "/v1/identities/release", `{"spiffe_id": "`+ciID+`"}`, "release-1")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("release: %d %s", res.StatusCode, raw)
	}
	if rel := decode[ReleaseResponse](t, raw); len(rel.Released) != 1 || rel.Released[0].ReleasedBy != "corp-idp:ada" {
		t.Errorf("release answer %+v", rel)
	}
	res, raw = hs.call(hs.admin(), http.MethodPost, "/v1/identities/release", `{"spiffe_id": "`+ciID+`"}`, "")
	wantProblem(t, "releasing twice", res, raw, http.StatusNotFound, ReasonIdentityNotOnHold)
	res, raw, _ = hs.renew(t, cur, "renew-released")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("renewing after the release: %d %s", res.StatusCode, raw)
	}

	// JWT-SVIDs are held too.
	_, wl := hs.leaf(jwtID, time.Hour)
	res, raw = hs.call(creds{cert: &wl}, http.MethodPost, "/v1/jwt", `{"audience": ["vault"]}`, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("JWT-SVID before the hold: %d %s", res.StatusCode, raw)
	}
	res, raw = hs.call(hs.revoker(), http.MethodPost, "/v1/identities/hold",
		`{"spiffe_id": "`+jwtID+`", "reason": "privilegeWithdrawn", "hold": "10m"}`, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("hold %s: %d %s", jwtID, res.StatusCode, raw)
	}
	res, raw = hs.call(creds{cert: &wl}, http.MethodPost, "/v1/jwt", `{"audience": ["vault"]}`, "jwt-held")
	wantProblem(t, "a JWT-SVID for a held identity", res, raw, http.StatusForbidden, ReasonIdentityOnHold)
	if got := auditActions(hs.auditByRequestID()["jwt-held"]); len(got) != 1 || got[0] != "jwt/deny/identity_on_hold" {
		t.Errorf("audit of the refused JWT-SVID = %v", got)
	}
	// A hold ends by the clock: no release needed.
	hs.clk.Advance(10*time.Minute + time.Second)
	res, raw = hs.call(creds{cert: &wl}, http.MethodPost, "/v1/jwt", `{"audience": ["vault"]}`, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("JWT-SVID after the hold ended: %d %s", res.StatusCode, raw)
	}

	if n := counterValue(t, hs.reg, "ca_identity_hold_refusals_total"); n != 3 {
		t.Errorf("ca_identity_hold_refusals_total = %v, want 3", n)
	}
	if n := counterValue(t, hs.reg, "ca_identity_holds_active"); n != 0 {
		t.Errorf("ca_identity_holds_active = %v, want 0 (one released, one ended)", n)
	}
}

func TestRevokingAnIdentityRevokesItsCertificatesAndHoldsIt(t *testing.T) {
	hs := newHoldServer(t)
	res, raw, cur := hs.enroll(t, "acme/payments", "")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll: %d %s", res.StatusCode, raw)
	}
	res, raw, renewed := hs.renew(t, cur, "")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("renew: %d %s", res.StatusCode, raw)
	}
	direct, _ := hs.leaf(ciID, 10*time.Minute)
	expired, _ := hs.leaf(ciID, time.Minute)
	other, _ := hs.leaf(otherID, 10*time.Minute)
	hs.clk.Advance(2 * time.Minute) // expired is now expired; the others are not

	res, raw = hs.call(hs.revoker(), http.MethodPost, "/v1/identities/revoke",
		`{"spiffe_id": "`+ciID+`", "reason": "keyCompromise", "hold": "24h"}`, "contain-1")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("revoke identity: %d %s", res.StatusCode, raw)
	}
	got := decode[IdentityRevokeResponse](t, raw)
	want := map[string]bool{serialOf(t, cur): true, serialOf(t, renewed): true, direct.Serial: true}
	if got.Revoked != 3 || len(got.Serials) != 3 || got.Hold == nil || !got.Hold.Until.Equal(hs.clk.Now().Add(24*time.Hour)) {
		t.Fatalf("answer %+v, want 3 revoked and a 24h hold", got)
	}
	for _, sn := range got.Serials {
		if !want[sn] {
			t.Errorf("revoked %s, which is not an unexpired certificate of %s", sn, ciID)
		}
		c, err := hs.st.GetCertificate(hs.ctx, sn)
		if err != nil || c.Status != store.CertRevoked || c.RevocationReason != "keyCompromise" {
			t.Errorf("%s = %+v, %v; want revoked for keyCompromise", sn, c.Status, err)
		}
	}
	for _, sn := range []string{expired.Serial, other.Serial} {
		if c, _ := hs.st.GetCertificate(hs.ctx, sn); c.Status != store.CertActive {
			t.Errorf("%s (%s) was revoked; expired certificates and other identities are left alone", sn, c.SPIFFEID)
		}
	}
	// The audit log has the hold, each revocation and the decision, in that order.
	entries := hs.auditByRequestID()["contain-1"]
	acts := auditActions(entries)
	wantActs := []string{"identity_hold/allow/", "revoke/allow/", "revoke/allow/", "revoke/allow/", "identity_revoke/allow/"}
	if strings.Join(acts, " ") != strings.Join(wantActs, " ") {
		t.Fatalf("audit = %v, want %v", acts, wantActs)
	}
	for _, e := range entries[1:4] {
		if !want[e.Target] || e.Actor != "corp-idp:rita" || !strings.Contains(string(e.Details), `"scope":"identity"`) {
			t.Errorf("revocation entry %+v", e)
		}
	}
	// A revoked certificate cannot renew, and the identity cannot enroll.
	res, raw, _ = hs.renew(t, renewed, "")
	wantProblem(t, "renewing a revoked certificate", res, raw, http.StatusForbidden, "")
	res, raw, _ = hs.enroll(t, "acme/payments", "")
	wantProblem(t, "enrolling a contained identity", res, raw, http.StatusForbidden, ReasonIdentityOnHold)

	// Revoking again revokes nothing more and keeps the identity held.
	res, raw = hs.call(hs.revoker(), http.MethodPost, "/v1/identities/revoke",
		`{"spiffe_id": "`+ciID+`", "reason": "keyCompromise"}`, "")
	if res.StatusCode != http.StatusOK || decode[IdentityRevokeResponse](t, raw).Revoked != 0 {
		t.Fatalf("second revocation: %d %s", res.StatusCode, raw)
	}
	if n := counterValue(t, hs.reg, "ca_identity_holds_active"); n != 1 {
		t.Errorf("ca_identity_holds_active = %v, want 1", n)
	}
	// When the hold ends by the clock, the workload enrolls again.
	hs.clk.Advance(24*time.Hour + time.Second)
	res, raw, _ = hs.enroll(t, "acme/payments", "")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enrolling after the hold ended: %d %s", res.StatusCode, raw)
	}
}

func serialOf(t *testing.T, c tls.Certificate) string {
	t.Helper()
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return serialHex(x)
}

func TestIdentityRequestsAreValidated(t *testing.T) {
	hs := newHoldServer(t)
	long := strings.Repeat("a", 2100)
	cases := []struct {
		name, path, body string
		status           int
		reason           Reason
	}{
		{"a SPIFFE ID of another trust domain is spiffe_id_invalid", "revoke", `{"spiffe_id": "spiffe://evil.org/x", "reason": "keyCompromise"}`, 400, ReasonSPIFFEIDInvalid},
		{"a SPIFFE ID without a path is spiffe_id_invalid", "revoke", `{"spiffe_id": "spiffe://example.org", "reason": "keyCompromise"}`, 400, ReasonSPIFFEIDInvalid},
		{"a URL that is not a SPIFFE ID is spiffe_id_invalid", "hold", `{"spiffe_id": "https://example.org/x", "reason": "keyCompromise", "hold": "1h"}`, 400, ReasonSPIFFEIDInvalid},
		{"a SPIFFE ID with a dot segment is spiffe_id_invalid", "revoke", `{"spiffe_id": "spiffe://example.org/a/../b", "reason": "keyCompromise"}`, 400, ReasonSPIFFEIDInvalid},
		{"a missing SPIFFE ID is spiffe_id_invalid", "release", `{}`, 400, ReasonSPIFFEIDInvalid},
		{"an overlong SPIFFE ID is spiffe_id_invalid", "revoke", `{"spiffe_id": "spiffe://example.org/` + long + `", "reason": "keyCompromise"}`, 400, ReasonSPIFFEIDInvalid},
		{"a hold reason RFC 5280 has not is revocation_reason_invalid", "revoke", `{"spiffe_id": "` + ciID + `", "reason": "certificateHold"}`, 400, ReasonRevocationReasonInvalid},
		{"a missing reason is bad_request", "revoke", `{"spiffe_id": "` + ciID + `"}`, 400, ReasonBadRequest},
		{"a zero hold is hold_invalid", "revoke", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise", "hold": "0s"}`, 400, ReasonHoldInvalid},
		{"a negative hold is hold_invalid", "hold", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise", "hold": "-1h"}`, 400, ReasonHoldInvalid},
		{"a hold over 30 days is hold_invalid", "hold", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise", "hold": "721h"}`, 400, ReasonHoldInvalid},
		{"a hold that is not a duration is hold_invalid", "revoke", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise", "hold": "tomorrow"}`, 400, ReasonHoldInvalid},
		{"a hold request without a hold is hold_invalid", "hold", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise"}`, 400, ReasonHoldInvalid},
		{"a release with a reason is bad_request", "release", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise"}`, 400, ReasonBadRequest},
		{"an unknown field is bad_request", "revoke", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise", "scope": "all"}`, 400, ReasonBadRequest},
		{"two objects are bad_request", "revoke", `{"spiffe_id": "` + ciID + `", "reason": "keyCompromise"} {}`, 400, ReasonBadRequest},
		{"a non-object is bad_request", "hold", `["` + ciID + `"]`, 400, ReasonBadRequest},
		{"a body over 4 KiB is body_too_large", "revoke", `{"spiffe_id": "` + ciID + `", "reason": "` + strings.Repeat("x", 5000) + `"}`, 413, ReasonBodyTooLarge},
		{"releasing an identity not on hold is identity_not_on_hold", "release", `{"spiffe_id": "` + ciID + `"}`, 404, ReasonIdentityNotOnHold},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := hs.revoker()
			if c.path == "release" {
				cr = hs.admin()
			}
			res, raw := hs.call(cr, http.MethodPost, "/v1/identities/"+c.path, c.body, "")
			wantProblem(t, c.name, res, raw, c.status, c.reason)
		})
	}
	// Nothing was held or revoked by any of them.
	if list, err := hs.st.ActiveHolds(hs.ctx, hs.clk.Now(), 0); err != nil || len(list) != 0 {
		t.Errorf("holds after refused requests: %+v, %v", list, err)
	}
	// Roles: an auditor may list but not revoke or hold; no credentials is 401.
	for _, p := range []string{"revoke", "hold"} {
		res, raw := hs.call(hs.auditor(), http.MethodPost, "/v1/identities/"+p, `{"spiffe_id": "`+ciID+`", "reason": "keyCompromise", "hold": "1h"}`, "")
		wantProblem(t, "an auditor calling "+p, res, raw, http.StatusForbidden, ReasonForbidden)
	}
	res, raw := hs.call(creds{}, http.MethodGet, "/v1/identities/holds", "", "")
	wantProblem(t, "listing holds anonymously", res, raw, http.StatusUnauthorized, ReasonUnauthorized)
}

// holdDuringIssuance is a HoldKeeper whose first check (Precheck for an
// enrollment, Check for a renewal) passes and then places a real hold, as an
// operator's hold committing between the handler's first check and the
// certificate's record would (or, for an enrollment, a hold placed through
// another replica that the snapshot does not show yet).
type holdDuringIssuance struct {
	HoldKeeper
	mu     sync.Mutex
	placed bool
}

func (h *holdDuringIssuance) Precheck(ctx context.Context, id string) error {
	return h.firstPasses(ctx, id, h.HoldKeeper.Precheck)
}

func (h *holdDuringIssuance) Check(ctx context.Context, id string) error {
	return h.firstPasses(ctx, id, h.HoldKeeper.Check)
}

func (h *holdDuringIssuance) firstPasses(ctx context.Context, id string, check func(context.Context, string) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.placed {
		return check(ctx, id)
	}
	h.placed = true
	_, err := h.Place(ctx, hold.Request{SPIFFEID: id, Duration: time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita"})
	return err
}

func TestACertificateIssuedWhileTheHoldCommitsIsRevokedAndNotReturned(t *testing.T) {
	for _, action := range []string{"enroll", "renew"} {
		t.Run(action, func(t *testing.T) {
			var racing *holdDuringIssuance
			hs := newHoldServerWith(t, func(h HoldKeeper) HoldKeeper {
				racing = &holdDuringIssuance{HoldKeeper: h}
				if action == "renew" {
					racing.placed = true // armed after the first enrollment
				}
				return racing
			})
			var res *http.Response
			var raw []byte
			if action == "enroll" {
				res, raw, _ = hs.enroll(t, "acme/payments", "racing")
			} else {
				var cur tls.Certificate
				res, raw, cur = hs.enroll(t, "acme/payments", "")
				if res.StatusCode != http.StatusCreated {
					t.Fatalf("enroll: %d %s", res.StatusCode, raw)
				}
				racing.mu.Lock()
				racing.placed = false
				racing.mu.Unlock()
				res, raw, _ = hs.renew(t, cur, "racing")
			}
			wantProblem(t, action+" racing a hold", res, raw, http.StatusForbidden, ReasonIdentityOnHold)
			// The certificate was recorded (issue or renew entry), then revoked.
			var issuedSerial string
			for _, e := range hs.auditByRequestID()["racing"] {
				if e.Decision == "allow" && (e.Action == "issue" || e.Action == "renew") {
					issuedSerial = e.Target
				}
			}
			if issuedSerial == "" {
				t.Fatalf("no issuance entry for the racing request: %v", auditActions(hs.auditByRequestID()["racing"]))
			}
			c, err := hs.st.GetCertificate(hs.ctx, issuedSerial)
			if err != nil || c.Status != store.CertRevoked || c.RevocationReason != "keyCompromise" {
				t.Fatalf("the certificate issued during the hold = %+v, %v; want revoked for the hold's reason", c.Status, err)
			}
			if got := auditActions(hs.auditByRequestID()["racing"]); !strings.Contains(strings.Join(got, " "), "revoke/allow/") ||
				!strings.HasSuffix(got[len(got)-1], "/deny/identity_on_hold") {
				t.Errorf("audit of the racing request = %v; want the issuance, its revocation and the denial", got)
			}
		})
	}
}

// TestAHoldPlacedThroughAnotherReplica: the server's Holds has a snapshot of
// the holds in force (taken by an enrollment) when another replica (a
// second hold.Holds on the same store) places a hold. A renewal is refused
// before anything is recorded, so the certificate it presented is not
// superseded and can renew once the hold ends (with the snapshot it would
// be recorded, revoked and refused, and the presented certificate left
// superseded). An enrollment within the snapshot's age is refused all the
// same: issued, recorded, revoked, not returned.
func TestAHoldPlacedThroughAnotherReplica(t *testing.T) {
	hs := newHoldServer(t)
	res, raw, cur := hs.enroll(t, "acme/payments", "first")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll: %d %s", res.StatusCode, raw)
	}
	other, err := hold.New(hs.st, hs.clk, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Place(hs.ctx, hold.Request{SPIFFEID: ciID, Duration: time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita"}); err != nil {
		t.Fatal(err)
	}
	res, raw, _ = hs.renew(t, cur, "renew-held")
	wantProblem(t, "renewing during another replica's hold", res, raw, http.StatusForbidden, ReasonIdentityOnHold)
	c, err := hs.st.GetCertificate(hs.ctx, serialOf(t, cur))
	if err != nil || c.SupersededBy != "" || c.Status != store.CertActive {
		t.Fatalf("the presented certificate after a refused renewal: superseded by %q, %s, %v; want active and not superseded", c.SupersededBy, c.Status, err)
	}
	res, raw, _ = hs.enroll(t, "acme/payments", "enroll-held")
	wantProblem(t, "enrolling during another replica's hold", res, raw, http.StatusForbidden, ReasonIdentityOnHold)
	if _, err := other.Release(hs.ctx, ciID, "corp-idp:ada", "release-1", ""); err != nil {
		t.Fatal(err)
	}
	res, raw, _ = hs.renew(t, cur, "renew-after")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("renewing after the hold was released: %d %s", res.StatusCode, raw)
	}
}
