package enroll

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
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

func buildProvenance(t *Token, rule, version string) Provenance {
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
		put(c, "namespace", k8s["namespace"])
		if sa, ok := k8s["serviceaccount"].(map[string]any); ok {
			put(c, "service_account", sa["name"])
			put(c, "service_account_uid", sa["uid"])
		}
		if pod, ok := k8s["pod"].(map[string]any); ok {
			put(c, "pod", pod["name"])
			put(c, "pod_uid", pod["uid"])
		}
		if node, ok := k8s["node"].(map[string]any); ok {
			put(c, "node", node["name"])
		}
	default:
		for _, name := range shapeClaims[p.Shape] {
			put(c, name, t.Claims[name])
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

func put(dst map[string]string, name string, v any) {
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

func clip(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max]
	}
	return s
}
