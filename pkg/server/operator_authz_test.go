package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

// operatorEndpoint is one operator route, the role it needs, and what an
// authorised request to it may answer (authorisation passed; the operation
// itself may still refuse, e.g. a second rotation is 409).
type operatorEndpoint struct {
	method, pattern, path, body string
	role                        policy.Role
	allowed                     func(status int) bool
}

func exactly(want int) func(int) bool { return func(s int) bool { return s == want } }

// anOutcome accepts any answer of an operation that ran: not an
// authentication or authorisation refusal and not a server failure.
func anOutcome(s int) bool { return s != 401 && s != 403 && s < 500 }

// identity is one way of calling: its credentials and what it should be.
type identity struct {
	name  string
	c     creds
	roles []policy.Role // nil with unauthenticated
	// unauthenticated identities get 401 everywhere.
	unauthenticated bool
	actor           string // expected audit actor of its denials
	basic           bool   // sends a Basic Authorization header
}

func TestTheAuthorizationMatrix(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	issued, _ := o.leaf("spiffe://example.org/prod/payments", time.Hour)
	_, breakGlass := o.leaf(breakGlassID, time.Hour)
	_, noRole := o.leaf(noRoleID, time.Hour)
	revokedGlass, revokedGlassCert := o.leaf(breakGlassID, time.Hour)
	if _, _, err := o.st.RevokeCertificate(o.ctx, revokedGlass.Serial, o.clk.Now(), "keyCompromise", auditEntryForTest(revokedGlass.Serial)); err != nil {
		t.Fatal(err)
	}
	rogue := testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(o.clk), testkit.WithOIDCAudience(operatorAudience))
	now := o.clk.Now()

	endpoints := []operatorEndpoint{
		{"GET", "/v1/certificates", "/v1/certificates?status=active&limit=5", "", policy.RoleAuditor, exactly(200)},
		{"GET", "/v1/certificates/{serial}", "/v1/certificates/" + issued.Serial, "", policy.RoleAuditor, exactly(200)},
		{"POST", "/v1/certificates/{serial}/revoke", "/v1/certificates/" + issued.Serial + "/revoke", `{"reason":"superseded"}`, policy.RoleRevoker, exactly(200)},
		{"GET", "/v1/audit", "/v1/audit?limit=5", "", policy.RoleAuditor, exactly(200)},
		{"GET", "/v1/issuers", "/v1/issuers", "", policy.RoleAuditor, exactly(200)},
		{"GET", "/v1/bundle/versions", "/v1/bundle/versions", "", policy.RoleAuditor, exactly(200)},
		{"POST", "/v1/issuers/rotate", "/v1/issuers/rotate", `{}`, policy.RoleAdmin, anOutcome},
		{"POST", "/v1/issuers/activate", "/v1/issuers/activate", `{}`, policy.RoleAdmin, anOutcome},
		{"POST", "/v1/bundle/rollback", "/v1/bundle/rollback", `{"to_sequence": 1}`, policy.RoleAdmin, anOutcome},
	}
	all := []policy.Role{policy.RoleAdmin, policy.RoleAuditor, policy.RoleRevoker}
	identities := []identity{
		{name: "anonymous", unauthenticated: true, actor: "anonymous"},
		{name: "a token with no role", c: creds{bearer: o.token("nobody", "engineering")}, roles: []policy.Role{}, actor: "corp-idp:nobody"},
		{name: "an auditor token", c: creds{bearer: o.token("audrey", "pki-auditors")}, roles: []policy.Role{policy.RoleAuditor}, actor: "corp-idp:audrey"},
		{name: "a revoker token", c: creds{bearer: o.token("rita", "pki-revokers")}, roles: []policy.Role{policy.RoleRevoker}, actor: "corp-idp:rita"},
		{name: "an admin token", c: creds{bearer: o.token("ada", "pki-admins")}, roles: all, actor: "corp-idp:ada"},
		{name: "a client-certificate admin", c: creds{cert: &breakGlass}, roles: all, actor: breakGlassID},
		{name: "a client certificate without a role", c: creds{cert: &noRole}, roles: []policy.Role{}, actor: noRoleID},
		{name: "a revoked client-certificate admin", c: creds{cert: &revokedGlassCert}, unauthenticated: true, actor: breakGlassID},
		{name: "a token from a non-operator (enrollment) issuer", c: creds{bearer: o.ci.GitHubToken(t, map[string]any{"groups": []any{"pki-admins"}})},
			unauthenticated: true, actor: "github:repo:acme/payments:ref:refs/heads/main"},
		{name: "a token from an unknown issuer", c: creds{bearer: rogue.Mint(t, map[string]any{"sub": "ada", "groups": []any{"pki-admins"}})},
			unauthenticated: true, actor: "anonymous"},
		{name: "an expired admin token", c: creds{bearer: o.idp.Mint(t, map[string]any{"sub": "ada", "groups": []any{"pki-admins"}},
			testkit.WithIssuedAt(now.Add(-2*time.Hour)), testkit.WithLifetime(10*time.Minute))}, unauthenticated: true, actor: "corp-idp:ada"},
		{name: "an admin token for another audience", c: creds{bearer: o.idp.Mint(t, map[string]any{"sub": "ada", "groups": []any{"pki-admins"}, "aud": "someone-else"})},
			unauthenticated: true, actor: "corp-idp:ada"},
		{name: "a non-bearer Authorization header", basic: true, unauthenticated: true, actor: "anonymous"},
	}

	type denial struct {
		id, route, actor string
		reason           Reason
	}
	var denials []denial
	var allowedIDs []string
	n := 0
	for _, id := range identities {
		for _, ep := range endpoints {
			n++
			reqID := fmt.Sprintf("matrix-%d", n)
			name := fmt.Sprintf("%s calling %s %s", id.name, ep.method, ep.pattern)
			res, body := o.callWithHeader(id.c, ep.method, ep.path, ep.body, reqID, id.basic)
			want := "allowed"
			switch {
			case id.unauthenticated:
				want = "401"
			case !policy.HasRole(id.roles, ep.role):
				want = "403"
			}
			switch want {
			case "401":
				if res.StatusCode != 401 || decodeProblem(t, res).Reason != ReasonUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s: got %d %s, want 401 unauthorized with a challenge", name, res.StatusCode, body)
				}
				denials = append(denials, denial{reqID, ep.method + " " + ep.pattern, id.actor, ReasonUnauthorized})
			case "403":
				if res.StatusCode != 403 || decodeProblem(t, res).Reason != ReasonForbidden {
					t.Errorf("%s: got %d %s, want 403 forbidden", name, res.StatusCode, body)
				}
				denials = append(denials, denial{reqID, ep.method + " " + ep.pattern, id.actor, ReasonForbidden})
			default:
				if !ep.allowed(res.StatusCode) {
					t.Errorf("%s: got %d %s, want the operation to run", name, res.StatusCode, body)
				}
				allowedIDs = append(allowedIDs, reqID)
			}
		}
	}

	audit := o.auditByRequestID()
	for _, d := range denials {
		var authz []string
		for _, e := range audit[d.id] {
			if e.Action == "authz" {
				authz = append(authz, e.Decision)
				var det denialDetails
				_ = json.Unmarshal(e.Details, &det)
				if e.Decision != "deny" || e.Reason != string(d.reason) || e.Target != d.route || e.Actor != d.actor ||
					det.Method+" "+det.Route != d.route || det.RequiredRole == "" || e.PolicyVersion == "" {
					t.Errorf("denial %s of %s recorded as %+v details %s; want actor %q reason %s", d.id, d.route, e, e.Details, d.actor, d.reason)
				}
			}
		}
		if len(authz) != 1 {
			t.Errorf("denial %s (%s, %s by %s) has %d authz audit entries, want 1", d.id, d.route, d.reason, d.actor, len(authz))
		}
	}
	for _, id := range allowedIDs {
		for _, e := range audit[id] {
			if e.Action == "authz" {
				t.Errorf("allowed request %s has an authz denial: %+v", id, e)
			}
		}
	}
	if len(denials) == 0 || len(allowedIDs) == 0 {
		t.Fatal("the matrix exercised nothing")
	}
	t.Logf("%d requests: %d denied and audited, %d allowed", n, len(denials), len(allowedIDs))
}

// callWithHeader is call, optionally with a Basic Authorization header
// instead of any credentials.
func (o *operatorServer) callWithHeader(c creds, method, path, body, requestID string, basic bool) (*http.Response, []byte) {
	if !basic {
		return o.call(c, method, path, body, requestID)
	}
	o.extraHeader = map[string]string{"Authorization": "Basic YWRhOnNlY3JldA=="}
	defer func() { o.extraHeader = nil }()
	return o.call(c, method, path, body, requestID)
}

// TestEveryRouteWithARoleRefusesTheAnonymous walks the API router: every
// route whose operation in api/openapi.yaml names an x-role answers an
// anonymous request with 401 and a role-less operator with 403, so a route
// added later cannot forget its guard while documenting one.
func TestEveryRouteWithARoleRefusesTheAnonymous(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	doc := loadOpenAPI(t)
	nobody := creds{bearer: o.token("nobody", "engineering")}
	checked := 0
	err := chi.Walk(o.routes.API(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		item := doc.Paths.Find(route)
		if item == nil || item.GetOperation(method) == nil {
			return nil // the drift test reports it
		}
		if _, ok := item.GetOperation(method).Extensions["x-role"]; !ok {
			return nil
		}
		path := strings.NewReplacer("{serial}", "01", "{issuer}", "x").Replace(route)
		body := ""
		if method == http.MethodPost {
			body = "{}"
		}
		if res, raw := o.call(creds{}, method, path, body, ""); res.StatusCode != 401 {
			t.Errorf("anonymous %s %s: %d %s", method, route, res.StatusCode, raw)
		}
		if res, raw := o.call(nobody, method, path, body, ""); res.StatusCode != 403 {
			t.Errorf("role-less %s %s: %d %s", method, route, res.StatusCode, raw)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 9 {
		t.Errorf("only %d routes with an x-role were found", checked)
	}
}
