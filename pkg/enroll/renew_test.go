package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// issuedLeaf is a certificate with its key, as a renewing workload holds it.
type issuedLeaf struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func leafFor(t *testing.T, serial int64, id string, dns []string, notAfter time.Time) issuedLeaf {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), URIs: []*url.URL{u}, DNSNames: dns, NotBefore: t0, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuedLeaf{c, k}
}

// memRecords is the in-memory stand-in for the store's certificate records.
type memRecords struct {
	mu   sync.Mutex
	recs map[string]store.Certificate
	fail error
}

func (m *memRecords) GetCertificate(_ context.Context, serial string) (store.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return store.Certificate{}, m.fail
	}
	c, ok := m.recs[serial]
	if !ok {
		return store.Certificate{}, fmt.Errorf("mem: %w", store.ErrNotFound)
	}
	return c, nil
}

// memRevoker records the scopes it was asked to revoke.
type memRevoker struct {
	mu     sync.Mutex
	scopes []store.RevokeScope
}

func (m *memRevoker) RevokeMany(_ context.Context, scope store.RevokeScope, reason, _, _ string) ([]store.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if reason != "keyCompromise" {
		return nil, fmt.Errorf("reason %q", reason)
	}
	m.scopes = append(m.scopes, scope)
	return []store.Certificate{{Serial: scope.Serial}, {Serial: "other"}}, nil
}

// enrollmentProvenanceJSON is what Decide records for a GitHub token of
// acme/payments on main.
func enrollmentProvenanceJSON(ref string) json.RawMessage {
	claims := map[string]any{"repository": "acme/payments", "ref": ref, "repository_owner": "acme", "sub": "repo:acme/payments"}
	raw, _ := json.Marshal(claims)
	return Provenance{TokenIssuer: "github", Sub: "repo:acme/payments", Shape: ShapeGitHub,
		Claims: map[string]string{"repository": "acme/payments", "ref": ref}, PolicyRule: "payments-main", TokenClaims: raw}.JSON()
}

type renewFixture struct {
	*fixture
	recs    *memRecords
	revoker *memRevoker
	r       *Renewer
	cur     issuedLeaf
	rec     store.Certificate
}

func newRenewFixture(t *testing.T) *renewFixture {
	f := &renewFixture{fixture: newFixture(t), recs: &memRecords{recs: map[string]store.Certificate{}}, revoker: &memRevoker{}}
	f.r = NewRenewer(f.holder, f.recs, f.revoker, f.clk)
	f.cur = leafFor(t, 0xabc, "spiffe://example.org/prod/payments", []string{"payments.prod.internal", "api.prod.internal"}, t0.Add(time.Hour))
	f.rec = store.Certificate{
		Serial: "abc", IssuerID: "int-1", SPIFFEID: "spiffe://example.org/prod/payments", DNSNames: f.cur.cert.DNSNames,
		NotBefore: t0, NotAfter: t0.Add(time.Hour), DER: f.cur.cert.Raw, Status: store.CertActive,
		Provenance: enrollmentProvenanceJSON("refs/heads/main"), PolicyRule: "payments-main",
		Lineage: "abc", Repository: "acme/payments", TokenIssuer: "github", Subject: "repo:acme/payments",
		LineageStartedAt: t0, CreatedAt: t0,
	}
	f.recs.recs["abc"] = f.rec
	return f
}

// withPolicy swaps in the fixture policy with one edit of the
// payments-main rule.
func (f *renewFixture) withPolicy(t *testing.T, from, to string) {
	t.Helper()
	src := fmt.Sprintf(fixturePolicy, f.gh.URL, f.gl.URL, f.k8s.URL)
	if !strings.Contains(src, from) {
		t.Fatalf("the fixture policy has no %q", from)
	}
	p, err := policy.Parse([]byte(strings.Replace(src, from, to, 1)))
	if err != nil {
		t.Fatal(err)
	}
	f.holder.Swap(p)
}

func TestRenewerAllowsARenewalOfACurrentCertificate(t *testing.T) {
	f := newRenewFixture(t)
	f.clk.Set(t0.Add(10 * time.Minute))
	d, err := f.r.Decide(context.Background(), f.cur.cert, newCSR(t, csrOpts{}), 0, "req")
	if err != nil {
		t.Fatal(err)
	}
	if d.SPIFFEID != f.rec.SPIFFEID || !slices.Equal(d.DNSNames, f.rec.DNSNames) || d.TTL != 30*time.Minute ||
		d.RenewedFrom != "abc" || d.Lineage != "abc" || d.Rule != "payments-main" || d.TokenIssuer != "github" {
		t.Errorf("renewal decision %+v", d)
	}
	var p RenewalProvenance
	if err := json.Unmarshal(d.Provenance, &p); err != nil || p.RenewedFrom != "abc" || p.Lineage != "abc" || p.PolicyRule != "payments-main" {
		t.Fatalf("provenance %s (%v)", d.Provenance, err)
	}
	if bytes.Contains(d.Provenance, []byte("token_claims")) || bytes.Contains(d.Provenance, []byte(`"origin"`)) {
		t.Errorf("a renewal's provenance repeats the enrollment's (the store keeps it once per lineage): %s", d.Provenance)
	}

	// A renewal of that renewal still finds the enrollment's claims, in
	// the lineage's provenance the store returns as Origin.
	next := leafFor(t, 0xdef, f.rec.SPIFFEID, f.rec.DNSNames, t0.Add(2*time.Hour))
	rec := f.rec
	rec.Serial, rec.DER, rec.Provenance, rec.RenewedFrom, rec.NotAfter = "def", next.cert.Raw, d.Provenance, "abc", t0.Add(2*time.Hour)
	rec.Origin = f.rec.Provenance
	f.recs.recs["def"] = rec
	d2, err := f.r.Decide(context.Background(), next.cert, newCSR(t, csrOpts{dns: []string{"api.prod.internal"}}), 15*time.Minute, "req")
	if err != nil {
		t.Fatalf("renewing the renewal: %v", err)
	}
	if d2.Lineage != "abc" || d2.RenewedFrom != "def" || !slices.Equal(d2.DNSNames, []string{"api.prod.internal"}) {
		t.Errorf("second renewal %+v", d2)
	}
}

func TestRenewerReadsTheOriginOfARenewalRecordedBeforeLineageRows(t *testing.T) {
	f := newRenewFixture(t)
	f.clk.Set(t0.Add(10 * time.Minute))
	next := leafFor(t, 0xdef, f.rec.SPIFFEID, f.rec.DNSNames, t0.Add(2*time.Hour))
	old, err := json.Marshal(RenewalProvenance{Shape: "renewal", RenewedFrom: "abc", Lineage: "abc", SPIFFEID: f.rec.SPIFFEID,
		PolicyRule: "payments-main", PolicyVersion: "v0", Origin: f.rec.Provenance})
	if err != nil {
		t.Fatal(err)
	}
	rec := f.rec
	rec.Serial, rec.DER, rec.Provenance, rec.RenewedFrom, rec.NotAfter = "def", next.cert.Raw, old, "abc", t0.Add(2*time.Hour)
	f.recs.recs["def"] = rec
	if _, err := f.r.Decide(context.Background(), next.cert, newCSR(t, csrOpts{}), 0, "req"); err != nil {
		t.Fatalf("a renewal carrying its origin (no lineage row) is renewed on it: %v", err)
	}
	rec.Provenance = json.RawMessage(`{"shape":"renewal","renewed_from":"abc","lineage":"abc"}`)
	f.recs.recs["def"] = rec
	_, err = f.r.Decide(context.Background(), next.cert, newCSR(t, csrOpts{}), 0, "req")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonPolicyDenied || e.Check != policy.CheckClaimsMissing {
		t.Errorf("a renewal with neither an origin nor a lineage row is refused with claims_missing: %v", err)
	}
}

func TestRenewerRefusals(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *renewFixture)
		csr    func(t *testing.T, f *renewFixture) []byte
		ttl    time.Duration
		reason string
		check  string
	}{
		{name: "a certificate this CA did not record is refused with unauthorized",
			setup:  func(t *testing.T, f *renewFixture) { delete(f.recs.recs, "abc") },
			reason: ReasonUnauthorized},
		{name: "a certificate other than the one recorded under its serial is refused with unauthorized",
			setup:  func(t *testing.T, f *renewFixture) { r := f.rec; r.DER = []byte("other"); f.recs.recs["abc"] = r },
			reason: ReasonUnauthorized},
		{name: "a revoked certificate is refused with certificate_revoked",
			setup: func(t *testing.T, f *renewFixture) {
				r := f.rec
				r.Status, r.RevocationReason = store.CertRevoked, "keyCompromise"
				f.recs.recs["abc"] = r
			},
			reason: ReasonCertificateRevoked},
		{name: "an expired certificate is refused with unauthorized",
			setup:  func(t *testing.T, f *renewFixture) { f.clk.Set(t0.Add(time.Hour)) },
			reason: ReasonUnauthorized},
		{name: "a certificate renewed before is refused with certificate_superseded",
			setup:  func(t *testing.T, f *renewFixture) { r := f.rec; r.SupersededBy = "def"; f.recs.recs["abc"] = r },
			reason: ReasonCertificateSuperseded, check: CheckSuperseded},
		{name: "a lineage older than the default reauthenticate_after is refused with reauthentication_required",
			setup: func(t *testing.T, f *renewFixture) {
				r := f.rec
				r.LineageStartedAt = t0.Add(-policy.DefaultReauthenticateAfter - time.Second)
				f.recs.recs["abc"] = r
			},
			reason: ReasonReauthenticationRequired, check: CheckReauthenticate},
		{name: "a lineage older than the rule's own reauthenticate_after is refused with reauthentication_required",
			setup: func(t *testing.T, f *renewFixture) {
				f.withPolicy(t, "    ttl: 30m\n", "    ttl: 30m\n    reauthenticate_after: 1h\n")
				r := f.rec
				r.LineageStartedAt = t0.Add(-61 * time.Minute)
				f.recs.recs["abc"] = r
			},
			reason: ReasonReauthenticationRequired, check: CheckReauthenticate},
		{name: "a rule removed from the policy stops renewal",
			setup:  func(t *testing.T, f *renewFixture) { f.withPolicy(t, "name: payments-main", "name: payments-renamed") },
			reason: ReasonPolicyDenied, check: policy.CheckRuleRemoved},
		{name: "a rule whose when no longer holds for the recorded claims stops renewal",
			setup: func(t *testing.T, f *renewFixture) {
				f.withPolicy(t, `claims.ref == "refs/heads/main"`, `claims.ref == "refs/heads/release"`)
			},
			reason: ReasonPolicyDenied, check: policy.CheckCondition},
		{name: "a rule that now grants another SPIFFE ID stops renewal",
			setup: func(t *testing.T, f *renewFixture) {
				f.withPolicy(t, "spiffe_id: spiffe://example.org/prod/payments\n", "spiffe_id: spiffe://example.org/prod/payments-v2\n")
			},
			reason: ReasonPolicyDenied, check: policy.CheckIdentityChanged},
		{name: "a rule that no longer grants a DNS name stops renewal",
			setup: func(t *testing.T, f *renewFixture) {
				f.withPolicy(t, "dns_names: [payments.prod.internal, api.prod.internal]", "dns_names: [payments.prod.internal]")
			},
			reason: ReasonPolicyDenied, check: policy.CheckIdentityChanged},
		{name: "a lineage whose enrollment recorded no claims cannot renew",
			setup: func(t *testing.T, f *renewFixture) {
				r := f.rec
				r.Provenance = json.RawMessage(`{"token_issuer":"github","shape":"github"}`)
				f.recs.recs["abc"] = r
			},
			reason: ReasonPolicyDenied, check: policy.CheckClaimsMissing},
		{name: "a CSR for the current key is refused with key_reused",
			csr:    func(t *testing.T, f *renewFixture) []byte { return newCSR(t, csrOpts{key: f.cur.key}) },
			reason: ReasonKeyReused},
		{name: "a CSR asking for more names than the certificate had is refused",
			csr: func(t *testing.T, f *renewFixture) []byte {
				return newCSR(t, csrOpts{dns: []string{"x.prod.internal"}})
			},
			reason: ReasonPolicyDenied, check: policy.CheckNames},
		{name: "a ttl above the rule's max_ttl is refused", ttl: 2 * time.Hour, reason: ReasonTTLTooLong},
		{name: "a bad CSR is refused",
			csr:    func(t *testing.T, f *renewFixture) []byte { return []byte("x") },
			reason: ReasonCSRMalformed},
		{name: "an unreachable store is store_unavailable",
			setup:  func(t *testing.T, f *renewFixture) { f.recs.fail = fmt.Errorf("down: %w", store.ErrUnavailable) },
			reason: ReasonStoreUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRenewFixture(t)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			csr := newCSR(t, csrOpts{})
			if tc.csr != nil {
				csr = tc.csr(t, f)
			}
			_, err := f.r.Decide(context.Background(), f.cur.cert, csr, tc.ttl, "req")
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason || e.Check != tc.check {
				t.Fatalf("Decide = %v (%+v), want %s/%s", err, e, tc.reason, tc.check)
			}
			if len(f.revoker.scopes) != 0 {
				t.Errorf("on_reuse deny revoked %v", f.revoker.scopes)
			}
		})
	}
}

func TestRenewerRevokesTheLineageOnReuseWhenThePolicySaysSo(t *testing.T) {
	f := newRenewFixture(t)
	src := fmt.Sprintf(fixturePolicy, f.gh.URL, f.gl.URL, f.k8s.URL) + "renewal:\n  on_reuse: revoke_lineage\n"
	p, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f.holder.Swap(p)
	r := f.rec
	r.Serial, r.Lineage, r.SupersededBy = "abc", "123", "def"
	f.recs.recs["abc"] = r

	_, err = f.r.Decide(context.Background(), f.cur.cert, newCSR(t, csrOpts{}), 0, "req")
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonCertificateSuperseded || e.OnReuse != "revoke_lineage" || e.Revoked != 2 || e.Lineage != "123" {
		t.Fatalf("Decide = %v (%+v), want certificate_superseded with the lineage revoked", err, e)
	}
	if want := []store.RevokeScope{{Serial: "123", Descendants: true}}; !slices.Equal(f.revoker.scopes, want) {
		t.Errorf("revoked %v, want %v (the whole lineage, from its first certificate)", f.revoker.scopes, want)
	}
}

func TestRenewerAnswersALostRaceAsSuperseded(t *testing.T) {
	f := newRenewFixture(t)
	d, err := f.r.Decide(context.Background(), f.cur.cert, newCSR(t, csrOpts{}), 0, "req")
	if err != nil {
		t.Fatal(err)
	}
	err = f.r.Reused(context.Background(), d, "req", fmt.Errorf("issuer: recording: %w", store.ErrSuperseded))
	if got := reasonOf(t, err); got != ReasonCertificateSuperseded {
		t.Errorf("a renewal that lost the race: %v, want certificate_superseded", err)
	}
	other := errors.New("hsm down")
	if err := f.r.Reused(context.Background(), d, "req", other); err != other {
		t.Errorf("another failure became %v", err)
	}
}
