package enroll

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/internal/jsonappend"
)

// Token shapes recognised in provenance.
const (
	ShapeGitHub     = "github"
	ShapeGitLab     = "gitlab"
	ShapeKubernetes = "kubernetes"
	ShapeOIDC       = "oidc"
)

// Provenance is the record of how a certificate was obtained, stored with it
// as JSON. Claims holds the interesting claims of the token's shape, copied as
// strings and truncated; never the token itself.
type Provenance struct {
	TokenIssuer   string            `json:"token_issuer"`
	Iss           string            `json:"iss"`
	Sub           string            `json:"sub"`
	JTI           string            `json:"jti,omitempty"`
	IssuedAt      *time.Time        `json:"iat,omitempty"`
	Shape         string            `json:"shape"`
	Claims        map[string]string `json:"claims,omitempty"`
	PolicyRule    string            `json:"policy_rule"`
	PolicyVersion string            `json:"policy_version"`
	// TokenClaims are all the token's claims (not the token: no signature),
	// so that renewals can re-evaluate the rule's when on them with
	// today's policy. Omitted when they encode to more than
	// maxTokenClaims bytes; such a lineage cannot renew (claims_missing).
	TokenClaims json.RawMessage `json:"token_claims,omitempty"`
}

// maxTokenClaims bounds the claims kept in provenance.
const maxTokenClaims = 8 << 10

var shapeClaims = map[string][]string{
	ShapeGitHub: {"repository", "repository_owner", "repository_id", "ref", "ref_type", "sha", "workflow", "job_workflow_ref",
		"environment", "event_name", "actor", "run_id", "run_attempt", "runner_environment"},
	ShapeGitLab: {"project_path", "project_id", "namespace_path", "ref", "ref_type", "ref_protected", "sha", "pipeline_id",
		"pipeline_source", "job_id", "environment", "user_login"},
}

// tokenShape guesses which CI system issued the claims.
func tokenShape(claims map[string]any) string {
	if _, ok := claims["kubernetes.io"].(map[string]any); ok {
		return ShapeKubernetes
	}
	if _, ok := claims["project_path"]; ok {
		if _, ok := claims["pipeline_id"]; ok {
			return ShapeGitLab
		}
	}
	if _, ok := claims["repository"]; ok {
		if _, ok := claims["job_workflow_ref"]; ok {
			return ShapeGitHub
		}
		if _, ok := claims["run_id"]; ok {
			return ShapeGitHub
		}
	}
	return ShapeOIDC
}

// shapeClaimValues calls put with the name and provenance value of each
// interesting claim of the shape that is present (see putValue), a name
// at most once.
func shapeClaimValues(claims map[string]any, shape string, put func(name, value string)) {
	add := func(name string, v any) {
		if s, ok := putValue(v); ok {
			put(name, s)
		}
	}
	switch shape {
	case ShapeKubernetes:
		k8s := claims["kubernetes.io"].(map[string]any)
		add("namespace", k8s["namespace"])
		if sa, ok := k8s["serviceaccount"].(map[string]any); ok {
			add("service_account", sa["name"])
			add("service_account_uid", sa["uid"])
		}
		if pod, ok := k8s["pod"].(map[string]any); ok {
			add("pod", pod["name"])
			add("pod_uid", pod["uid"])
		}
		if node, ok := k8s["node"].(map[string]any); ok {
			add("node", node["name"])
		}
	default:
		for _, name := range shapeClaims[shape] {
			add(name, claims[name])
		}
	}
}

// provenanceJSON is buildProvenance(t, rule, version).JSON(), byte for
// byte, written without encoding/json's reflection (internal/jsonappend),
// with the token's repository claim as buildProvenance records it (""
// when it has none). Decide runs it for every enrollment;
// TestProvenanceJSONMatchesBuildProvenance holds it to the reference.
func provenanceJSON(t *Token, rule, version string) (json.RawMessage, string) {
	shape := tokenShape(t.Claims)
	// The interesting claims, sorted by name as json.Marshal sorts a map's
	// keys; at most 14 of them, on the stack.
	type claim struct{ name, value string }
	var small [16]claim
	claims := small[:0]
	repository := ""
	shapeClaimValues(t.Claims, shape, func(name, value string) {
		claims = append(claims, claim{name, value})
		if name == "repository" {
			repository = value
		}
	})
	slices.SortFunc(claims, func(a, b claim) int { return strings.Compare(a.name, b.name) })

	b := make([]byte, 0, 2048)
	b = append(b, `{"token_issuer":`...)
	b = jsonappend.String(b, t.IssuerName)
	b = append(b, `,"iss":`...)
	b = jsonappend.String(b, t.Issuer)
	b = append(b, `,"sub":`...)
	b = jsonappend.String(b, clip(t.Subject))
	if jti := clip(t.ID); jti != "" {
		b = append(b, `,"jti":`...)
		b = jsonappend.String(b, jti)
	}
	if !t.IssuedAt.IsZero() {
		at, err := t.IssuedAt.UTC().MarshalJSON()
		if err != nil { // as Provenance.JSON: a verified token's iat is within years 0-9999
			panic(err)
		}
		b = append(b, `,"iat":`...)
		b = append(b, at...)
	}
	b = append(b, `,"shape":`...)
	b = jsonappend.String(b, shape)
	if len(claims) > 0 {
		b = append(b, `,"claims":{`...)
		for i, c := range claims {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonappend.String(b, c.name)
			b = append(b, ':')
			b = jsonappend.String(b, c.value)
		}
		b = append(b, '}')
	}
	b = append(b, `,"policy_rule":`...)
	b = jsonappend.String(b, rule)
	b = append(b, `,"policy_version":`...)
	b = jsonappend.String(b, version)
	// token_claims last, so that claims over maxTokenClaims (or that
	// json.Marshal would refuse) are cut off again.
	before := len(b)
	b = append(b, `,"token_claims":`...)
	start := len(b)
	b, err := jsonappend.Object(b, t.Claims)
	if err != nil || len(b)-start > maxTokenClaims {
		b = b[:before]
	}
	return append(b, '}'), repository
}

// enrollmentClaims returns the claims a lineage's enrollment recorded,
// for re-evaluating its rule: all of them (TokenClaims) when recorded,
// else the string claims of the token's shape plus sub and iss (what
// certificates enrolled before TokenClaims existed kept); ok is false
// when there is nothing to evaluate.
func (p Provenance) enrollmentClaims() (map[string]any, bool) {
	if len(p.TokenClaims) > 0 {
		var all map[string]any
		if err := json.Unmarshal(p.TokenClaims, &all); err == nil && all != nil {
			return all, true
		}
	}
	if len(p.Claims) == 0 && p.Sub == "" {
		return nil, false
	}
	out := map[string]any{}
	for k, v := range p.Claims {
		out[k] = v
	}
	if p.Sub != "" {
		out["sub"] = p.Sub
	}
	if p.Iss != "" {
		out["iss"] = p.Iss
	}
	return out, true
}

// JSON encodes the provenance for the certificate record.
func (p Provenance) JSON() json.RawMessage {
	b, err := json.Marshal(p)
	if err != nil { // a struct of strings cannot fail to marshal
		panic(err)
	}
	return b
}

// putValue is the provenance value of a claim: a non-empty string
// (clipped), an integral number (in decimal), or a boolean; ok is false for
// anything else.
func putValue(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		if x != "" {
			return clip(x), true
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func clip(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max]
	}
	return s
}
