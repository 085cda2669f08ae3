package enroll

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestEachTokenShapeGetsTheIdentityThePolicySays(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		token string
		csr   []byte
		id    string
		dns   []string
		ttl   time.Duration
		rule  string
		shape string
		prov  map[string]string
	}{
		{"a GitHub Actions job on payments main gets the prod identity", f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{}),
			"spiffe://example.org/prod/payments", []string{"payments.prod.internal", "api.prod.internal"}, 30 * time.Minute, "payments-main", ShapeGitHub,
			map[string]string{"repository": "acme/payments", "ref": "refs/heads/main", "sha": "0123456789abcdef0123456789abcdef01234567", "run_id": "9876543210", "job_workflow_ref": "acme/payments/.github/workflows/deploy.yml@refs/heads/main"}},
		{"a GitHub Actions job on another acme repository gets its CI identity", f.gh.GitHubToken(t, map[string]any{"repository": "acme/Web-App_2", "ref": "refs/heads/x"}), newCSR(t, csrOpts{}),
			"spiffe://example.org/ci/acme/Web-App_2", nil, 15 * time.Minute, "any-repo-ci", ShapeGitHub,
			map[string]string{"repository": "acme/Web-App_2", "ref": "refs/heads/x"}},
		{"a GitLab CI production job gets the project identity", f.gl.GitLabToken(t, nil), newCSR(t, csrOpts{}),
			"spiffe://example.org/gitlab/platform/billing", nil, time.Hour, "gitlab-deploy", ShapeGitLab,
			map[string]string{"project_path": "platform/billing", "pipeline_id": "556677", "environment": "production", "ref": "main"}},
		{"a Kubernetes service account gets its namespace identity and DNS name", f.k8s.KubernetesToken(t, "payments", "api", nil), newCSR(t, csrOpts{}),
			"spiffe://example.org/ns/payments/sa/api", []string{"api.svc.internal"}, time.Hour, "k8s-workloads", ShapeKubernetes,
			map[string]string{"namespace": "payments", "service_account": "api", "pod": "api-7d9f8c-abcde"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := f.d.Decide(context.Background(), tc.token, tc.csr, 0)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.SPIFFEID != tc.id || !slices.Equal(d.DNSNames, tc.dns) || d.TTL != tc.ttl || d.Rule != tc.rule {
				t.Errorf("decision id %q dns %v ttl %v rule %q; want %q %v %v %q", d.SPIFFEID, d.DNSNames, d.TTL, d.Rule, tc.id, tc.dns, tc.ttl, tc.rule)
			}
			if d.PolicyVersion != f.pol.Version() || d.PublicKey == nil || d.KeyType != policy.KeyECDSAP256 {
				t.Errorf("decision version %q key %T type %s", d.PolicyVersion, d.PublicKey, d.KeyType)
			}
			var p Provenance
			if err := json.Unmarshal(d.Provenance, &p); err != nil {
				t.Fatal(err)
			}
			if p.Shape != tc.shape || p.PolicyRule != tc.rule || p.PolicyVersion != f.pol.Version() || p.Sub != d.Subject || p.Iss == "" || p.TokenIssuer == "" || p.JTI == "" {
				t.Errorf("provenance %+v", p)
			}
			for k, v := range tc.prov {
				if p.Claims[k] != v {
					t.Errorf("provenance claim %s = %q, want %q", k, p.Claims[k], v)
				}
			}
			// All the claims are kept, so that a renewal can re-evaluate the
			// rule's when on them; never the token.
			claims, ok := p.enrollmentClaims()
			if !ok || claims["sub"] != d.Subject || len(p.TokenClaims) == 0 || strings.Contains(string(d.Provenance), tc.token) {
				t.Errorf("provenance token_claims %s", p.TokenClaims)
			}
			if m, err := f.pol.Recheck(context.Background(), d.Rule, d.TokenIssuer, claims, d.SPIFFEID, d.DNSNames); err != nil || m.Rule != d.Rule {
				t.Errorf("the recorded claims do not re-evaluate to the same decision: %v", err)
			}
		})
	}
}

func TestProvenanceKeepsClaimsOnlyUpToTheirBound(t *testing.T) {
	f := newFixture(t)
	big := strings.Repeat("x", maxTokenClaims)
	d, err := f.d.Decide(context.Background(), f.gh.GitHubToken(t, map[string]any{"padding": big}), newCSR(t, csrOpts{}), 0)
	if err != nil {
		t.Fatal(err)
	}
	var p Provenance
	if err := json.Unmarshal(d.Provenance, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.TokenClaims) != 0 || len(d.Provenance) > maxTokenClaims {
		t.Errorf("oversized claims were kept (%d bytes of provenance)", len(d.Provenance))
	}
	if claims, ok := p.enrollmentClaims(); !ok || claims["repository"] != "acme/payments" || claims["sub"] != d.Subject {
		t.Errorf("without token_claims a renewal falls back to the shape's claims: %v", claims)
	}
}

func TestDecideRefusesWithReasonRuleAndDenialRecord(t *testing.T) {
	f := newFixture(t)
	weak, strong := rsaKeys(t)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	good := newCSR(t, csrOpts{})
	tests := []struct {
		name    string
		token   string
		csr     []byte
		ttl     time.Duration
		reason  string
		rule    string
		check   string
		subject bool // whether the denial names the verified subject
	}{
		{"a fork's token is refused with policy_denied", f.gh.GitHubToken(t, map[string]any{"repository_owner": "evil", "repository": "evil/x"}), good, 0, ReasonPolicyDenied, "", policy.CheckNoRuleMatched, true},
		{"a repository that climbs out of the path is refused with policy_denied", f.gh.GitHubToken(t, map[string]any{"repository": "acme/../../admin", "ref": "x"}), good, 0, ReasonPolicyDenied, "any-repo-ci", policy.CheckSPIFFEID, true},
		{"an encoded slash in the repository is refused with policy_denied", f.gh.GitHubToken(t, map[string]any{"repository": "a%2Fb", "ref": "x"}), good, 0, ReasonPolicyDenied, "any-repo-ci", policy.CheckSPIFFEID, true},
		{"a namespace the policy does not cover is refused with policy_denied", f.k8s.KubernetesToken(t, "kube-system", "admin", nil), good, 0, ReasonPolicyDenied, "", policy.CheckNoRuleMatched, true},
		{"a ttl above max_ttl is refused with ttl_too_long", f.gh.GitHubToken(t, nil), good, 2 * time.Hour, ReasonTTLTooLong, "payments-main", "", true},
		{"a negative ttl is refused with ttl_invalid", f.gh.GitHubToken(t, nil), good, -time.Minute, ReasonTTLInvalid, "payments-main", "", true},
		{"a 1024-bit RSA key is refused with csr_weak_key", f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{key: weak}), 0, ReasonCSRWeakKey, "payments-main", "", true},
		{"a key type the rule does not list is refused with policy_denied", f.gh.GitHubToken(t, map[string]any{"ref": "x"}), newCSR(t, csrOpts{key: ed}), 0, ReasonPolicyDenied, "any-repo-ci", policy.CheckKeyType, true},
		{"an RSA key on an ECDSA-only rule is refused with policy_denied", f.gh.GitHubToken(t, map[string]any{"ref": "x"}), newCSR(t, csrOpts{key: strong}), 0, ReasonPolicyDenied, "any-repo-ci", policy.CheckKeyType, true},
		{"a CSR asking for a DNS name the rule does not grant is refused with policy_denied", f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{dns: []string{"evil.prod.internal"}}), 0, ReasonPolicyDenied, "payments-main", policy.CheckNames, true},
		{"a CSR asking for another SPIFFE ID is refused with policy_denied", f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{uris: []string{"spiffe://example.org/admin"}}), 0, ReasonPolicyDenied, "payments-main", policy.CheckNames, true},
		{"a CA:true CSR is refused with csr_forbidden_extension", f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{extra: []pkix.Extension{basicConstraints(t, true, true)}}), 0, ReasonCSRForbiddenExtension, "payments-main", "", true},
		{"a garbage CSR is refused with csr_malformed", f.gh.GitHubToken(t, nil), []byte("nope"), 0, ReasonCSRMalformed, "payments-main", "", true},
		{"a bad token is refused before the CSR is looked at", f.gh.UnsignedToken(t, nil), []byte("nope"), 0, ReasonTokenBadSignature, "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.d.Decide(context.Background(), tc.token, tc.csr, tc.ttl)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decide error = %v, want *Error", err)
			}
			if e.Reason != tc.reason || e.Rule != tc.rule || e.Check != tc.check {
				t.Errorf("got reason %q rule %q check %q (%s); want %q %q %q", e.Reason, e.Rule, e.Check, e.Detail, tc.reason, tc.rule, tc.check)
			}
			if e.PolicyVersion != f.pol.Version() {
				t.Errorf("denial record lacks the policy version")
			}
			if tc.subject && (e.Subject == "" || e.Issuer == "") {
				t.Errorf("denial record lacks issuer/subject: %+v", e)
			}
			if !tc.subject && e.Subject != "" {
				t.Errorf("an unverified token's subject %q was recorded", e.Subject)
			}
		})
	}
}

func TestCSRMayAskForASubsetOfTheGrantedNames(t *testing.T) {
	f := newFixture(t)
	d, err := f.d.Decide(context.Background(), f.gh.GitHubToken(t, nil),
		newCSR(t, csrOpts{dns: []string{"API.prod.internal"}, uris: []string{"spiffe://example.org/prod/payments"}, commonName: "ignored"}), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.DNSNames, []string{"api.prod.internal"}) || d.SPIFFEID != "spiffe://example.org/prod/payments" || d.TTL != 10*time.Minute {
		t.Errorf("decision %v %q %v", d.DNSNames, d.SPIFFEID, d.TTL)
	}
}

func TestATokenEnrollsOnce(t *testing.T) {
	f := newFixture(t)
	tok := f.gh.GitHubToken(t, nil)
	good := newCSR(t, csrOpts{})

	// A fixable client error does not spend the token...
	if _, err := f.d.Decide(context.Background(), tok, good, 5*time.Hour); Reason(err) != ReasonTTLTooLong {
		t.Fatalf("first try: %v, want ttl_too_long", err)
	}
	// ...so the corrected request succeeds with the same token,
	if _, err := f.d.Decide(context.Background(), tok, good, 0); err != nil {
		t.Fatalf("corrected request: %v", err)
	}
	// and any later use is a replay, with a fresh CSR or not,
	if _, err := f.d.Decide(context.Background(), tok, newCSR(t, csrOpts{}), 0); Reason(err) != ReasonTokenReplayed {
		t.Fatalf("replay: %v, want token_replayed", err)
	}
	// and a replay with a bad request is refused for the request.
	if _, err := f.d.Decide(context.Background(), tok, []byte("nope"), 0); Reason(err) == "" {
		t.Fatal("a replay with a bad CSR was accepted")
	}
	// A token without jti is recognised by its hash.
	noJTI := f.gh.GitHubToken(t, map[string]any{"jti": nil})
	if _, err := f.d.Decide(context.Background(), noJTI, good, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Decide(context.Background(), noJTI, good, 0); Reason(err) != ReasonTokenReplayed {
		t.Fatalf("replay without jti: %v, want token_replayed", err)
	}
}

func TestReplayStoreFailureIsStoreUnavailable(t *testing.T) {
	f := newFixture(t)
	f.replay.fail = errors.New("connection refused")
	if _, err := f.d.Decide(context.Background(), f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{}), 0); Reason(err) != ReasonStoreUnavailable {
		t.Fatalf("Decide = %v, want store_unavailable", err)
	}
}

func TestPolicyReloadAppliesToTheNextDecision(t *testing.T) {
	f := newFixture(t)
	stricter, err := policy.Parse([]byte("trust_domain: example.org\ntoken_issuers:\n  - {name: github, issuer: '" + f.gh.URL + "', audience: 'https://ca.example.org'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.holder.Swap(stricter)
	_, err = f.d.Decide(context.Background(), f.gh.GitHubToken(t, nil), newCSR(t, csrOpts{}), 0)
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonPolicyDenied || e.PolicyVersion != stricter.Version() {
		t.Fatalf("Decide after reload = %v, want policy_denied under the new version", err)
	}
}

// TestReplayProtectionWithRealStores runs the replay path against the real
// SQLite and Postgres stores: one token, several concurrent enrollments,
// exactly one winner.
func TestReplayProtectionWithRealStores(t *testing.T) {
	testkit.EachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t)
		d := NewDecider(f.holder, f.v, st, f.clk)
		tok := f.gh.GitHubToken(t, nil)
		csr := newCSR(t, csrOpts{})
		var ok, replayed atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := d.Decide(context.Background(), tok, csr, 0)
				switch Reason(err) {
				case "":
					ok.Add(1)
				case ReasonTokenReplayed:
					replayed.Add(1)
				default:
					t.Errorf("Decide: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || replayed.Load() != 7 {
			t.Fatalf("%d succeeded and %d were replays; want 1 and 7", ok.Load(), replayed.Load())
		}
		// Still refused after the token's own expiry passes inside the
		// leeway; a new token of the same job enrolls.
		f.clk.Advance(5*time.Minute + 10*time.Second)
		if _, err := d.Decide(context.Background(), tok, csr, 0); Reason(err) != ReasonTokenReplayed {
			t.Fatalf("replay near expiry: %v, want token_replayed", err)
		}
		if _, err := d.Decide(context.Background(), f.gh.GitHubToken(t, nil), csr, 0); err != nil {
			t.Fatalf("a new token: %v", err)
		}
	})
}

// TestATokenExpiringBeyondTheStoresRangeIsStillMarked: exp may be as far
// as 2^62 seconds (go-jose's bound), which neither store's timestamp holds.
// The mark used to overflow on its way in and wrap to a past time, an
// expired leftover that the replay then replaced: the same token enrolled
// twice. Now the mark is kept until the year 9999.
func TestATokenExpiringBeyondTheStoresRangeIsStillMarked(t *testing.T) {
	testkit.EachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t)
		d := NewDecider(f.holder, f.v, st, f.clk)
		csr := newCSR(t, csrOpts{})
		for _, exp := range []float64{1 << 61, 1<<62 - 1<<20, 253402300800 + 3600} {
			tok := f.gh.GitHubToken(t, map[string]any{"exp": exp})
			if _, err := d.Decide(context.Background(), tok, csr, 0); err != nil {
				t.Fatalf("exp %g: first use: %v", exp, err)
			}
			if _, err := d.Decide(context.Background(), tok, csr, 0); Reason(err) != ReasonTokenReplayed {
				t.Fatalf("exp %g: second use: %v, want token_replayed", exp, err)
			}
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	f := newFixture(b)
	csr := newCSR(b, csrOpts{})
	toks := make([]string, 0, 1024)
	for i := 0; i < cap(toks); i++ {
		toks = append(toks, f.gh.GitHubToken(b, nil))
	}
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.pol, toks[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(toks) {
			f.replay = newMemReplay()
			f.d = NewDecider(f.holder, f.v, f.replay, f.clk)
			i = 0
		}
		if _, err := f.d.Decide(ctx, toks[i], csr, 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
