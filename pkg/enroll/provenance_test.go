package enroll

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	josejson "github.com/go-jose/go-jose/v4/json"
)

// referenceProvenance is how provenance was built before provenanceJSON:
// the Provenance struct, encoded by Provenance.JSON (json.Marshal). The
// provenance recorded with each certificate must stay byte for byte what
// it was (operators read it, renewals decode it).
func referenceProvenance(t *Token, rule, version string) Provenance {
	p := Provenance{
		TokenIssuer: t.IssuerName, Iss: t.Issuer, Sub: clip(t.Subject), JTI: clip(t.ID),
		Shape: tokenShape(t.Claims), PolicyRule: rule, PolicyVersion: version,
	}
	if !t.IssuedAt.IsZero() {
		at := t.IssuedAt.UTC()
		p.IssuedAt = &at
	}
	c := map[string]string{}
	switch p.Shape {
	case ShapeKubernetes:
		k8s := t.Claims["kubernetes.io"].(map[string]any)
		referencePut(c, "namespace", k8s["namespace"])
		if sa, ok := k8s["serviceaccount"].(map[string]any); ok {
			referencePut(c, "service_account", sa["name"])
			referencePut(c, "service_account_uid", sa["uid"])
		}
		if pod, ok := k8s["pod"].(map[string]any); ok {
			referencePut(c, "pod", pod["name"])
			referencePut(c, "pod_uid", pod["uid"])
		}
		if node, ok := k8s["node"].(map[string]any); ok {
			referencePut(c, "node", node["name"])
		}
	default:
		for _, name := range shapeClaims[p.Shape] {
			referencePut(c, name, t.Claims[name])
		}
	}
	if len(c) > 0 {
		p.Claims = c
	}
	if raw, err := json.Marshal(t.Claims); err == nil && len(raw) <= maxTokenClaims {
		p.TokenClaims = raw
	}
	return p
}

func referencePut(dst map[string]string, name string, v any) {
	switch x := v.(type) {
	case string:
		if x != "" {
			dst[name] = clip(x)
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			dst[name] = strconv.FormatInt(int64(x), 10)
		}
	case bool:
		dst[name] = strconv.FormatBool(x)
	}
}

// provenanceTokens are verified tokens of every shape, with values that
// need escaping, clipping and every number format.
func provenanceTokens(t *testing.T) []*Token {
	t.Helper()
	var tokens []*Token
	for _, payload := range []string{
		`{"iss":"https://token.actions.githubusercontent.com","sub":"repo:acme/payments:ref:refs/heads/main","aud":"workload-ca","jti":"abc","repository":"acme/payments","repository_owner":"acme","repository_id":"4242","ref":"refs/heads/main","ref_type":"branch","sha":"0123","workflow":"deploy","job_workflow_ref":"acme/payments/.github/workflows/deploy.yml@refs/heads/main","environment":"production","event_name":"push","actor":"octocat","run_id":"9876543210","run_attempt":"1","runner_environment":"github-hosted","exp":1700000300,"iat":1700000000,"nbf":1700000000}`,
		`{"iss":"https://gitlab.example","sub":"project_path:platform/billing","project_path":"platform/billing","project_id":42,"namespace_path":"platform","ref":"main","ref_type":"branch","ref_protected":true,"sha":"x","pipeline_id":1e3,"pipeline_source":"push","job_id":9007199254740993,"environment":"","user_login":"<alice>&co","exp":1700000300.5}`,
		`{"iss":"https://k8s","sub":"system:serviceaccount:payments:api","kubernetes.io":{"namespace":"payments","serviceaccount":{"name":"api","uid":"u-1"},"pod":{"name":"api-7","uid":"u-2"},"node":{"name":"n1"}},"exp":1}`,
		`{"iss":"https://k8s","kubernetes.io":{"namespace":5,"pod":"not an object"}}`,
		`{"iss":"https://other","sub":"` + strings.Repeat("é", 200) + `","run_id":"1","repository":"a\u2028b\u2029c","n":[1.5,-0,1e-7,1e21,123456789012345678901234,0.000001,null,true,{"z":1,"a":[]}],"html":"<script>&amp;</script>","ctl":"\u0000\u001f\b\f\n\r\t\"\\","empty":{},"nested":{"b":{"c":"\u00e9"},"a":null}}`,
		`{"iss":"x","big":"` + strings.Repeat("y", 9000) + `"}`,
		`{}`,
	} {
		var claims map[string]any
		if err := josejson.Unmarshal([]byte(payload), &claims); err != nil {
			t.Fatalf("%s: %v", payload, err)
		}
		reg, err := registeredClaims(claims)
		if err != nil {
			t.Fatal(err)
		}
		tok := &Token{IssuerName: "github", Issuer: reg.Issuer, Subject: reg.Subject, ID: reg.ID, Claims: claims}
		if reg.IssuedAt != nil {
			tok.IssuedAt = reg.IssuedAt.Time()
		}
		tokens = append(tokens, tok)
	}
	// Invalid UTF-8 and a clip inside a rune, which decoded JSON cannot
	// carry but a Token can.
	tokens = append(tokens, &Token{IssuerName: "x\xff<", Issuer: "i", Subject: strings.Repeat("a", 255) + "é", ID: "\xc3",
		IssuedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)),
		Claims:   map[string]any{"repository": "r\xfe", "run_id": 7.0, "i": 3, "t": time.Unix(0, 0)}})
	tokens = append(tokens, &Token{IssuerName: "nil claims"})
	return tokens
}

func TestProvenanceJSONMatchesBuildProvenance(t *testing.T) {
	for _, tok := range provenanceTokens(t) {
		ref := referenceProvenance(tok, "rule<1>", "sha256:v")
		got, repo := provenanceJSON(tok, "rule<1>", "sha256:v")
		if want := ref.JSON(); !bytes.Equal(got, want) {
			t.Errorf("token of %s:\n got %s\nwant %s", tok.Issuer, got, want)
		}
		if repo != ref.Claims["repository"] {
			t.Errorf("token of %s: repository = %q, want %q", tok.Issuer, repo, ref.Claims["repository"])
		}
	}
}

// FuzzProvenanceJSON holds provenanceJSON to the reference for any decoded
// payload's claims, and any strings in the other fields.
func FuzzProvenanceJSON(f *testing.F) {
	f.Add([]byte(`{"iss":"https://i","repository":"a/b","run_id":"1","x":[1e-7,2.5e21,{"b":null,"a":"<&>"}]}`), "a\xffb\u2028")
	f.Add([]byte(`{"kubernetes.io":{"namespace":"n","pod":{"name":"p","uid":1}},"n":-0.0}`), "")
	f.Add([]byte(`{"project_path":"p","pipeline_id":12,"ref_protected":false}`), "\x00\"\\")
	f.Fuzz(func(t *testing.T, payload []byte, s string) {
		var claims map[string]any
		if josejson.Unmarshal(payload, &claims) != nil {
			return
		}
		tok := &Token{IssuerName: s, Issuer: s, Subject: s, ID: s, Claims: claims}
		got, repo := provenanceJSON(tok, s, s)
		ref := referenceProvenance(tok, s, s)
		if want := ref.JSON(); !bytes.Equal(got, want) {
			t.Errorf("claims %s:\n got %s\nwant %s", payload, got, want)
		}
		if repo != ref.Claims["repository"] {
			t.Errorf("claims %s: repository = %q, want %q", payload, repo, ref.Claims["repository"])
		}
	})
}

// The provenance of an enrollment is encoded without encoding/json's
// reflection: a handful of allocations, not one per claim.
func TestProvenanceJSONAllocations(t *testing.T) {
	tok := provenanceTokens(t)[0]
	n := testing.AllocsPerRun(100, func() { _, _ = provenanceJSON(tok, "r", "v") })
	if n > 4 {
		t.Errorf("provenanceJSON = %v allocations, want at most 4", n)
	}
}
