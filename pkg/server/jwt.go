package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// JWTSigner signs already-authorised JWT-SVID requests and records them;
// *jwtkeys.Signer fits.
type JWTSigner interface {
	Sign(ctx context.Context, r jwtkeys.Request) (*jwtkeys.Token, error)
}

// JWTStore is what POST /v1/jwt reads and records: the caller's certificate
// and denials. store.Store fits.
type JWTStore interface {
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

var _ JWTStore = store.Store(nil)

// JWTDeps are the collaborators of POST /v1/jwt, served only when both are
// set.
type JWTDeps struct {
	Signer  JWTSigner
	Records JWTStore
}

// ReasonJWTKeyUnavailable means no JWT-SVID signing key is active yet (503;
// the rotation tick creates the first one).
const ReasonJWTKeyUnavailable Reason = "jwt_key_unavailable"

// JWTRequest is the body of POST /v1/jwt.
type JWTRequest struct {
	// Audience lists the token's audiences: 1 to 16, each 1 to 512 bytes.
	Audience []string `json:"audience"`
	// TTL is a Go duration ("5m"); empty means the policy's jwt.ttl.
	TTL string `json:"ttl,omitempty"`
}

// JWTResponse is the 200 answer of POST /v1/jwt.
type JWTResponse struct {
	Token     string    `json:"token"`
	SPIFFEID  string    `json:"spiffe_id"`
	Audience  []string  `json:"audience"`
	KeyID     string    `json:"kid"`
	ExpiresAt time.Time `json:"expires_at"`
}

const actionJWT = jwtkeys.ActionJWT

// ParseJWTRequest decodes a body strictly: one JSON object with audience (1
// to jwtkeys.MaxAudiences non-empty strings of at most
// jwtkeys.MaxAudienceLength bytes, no duplicates) and an optional positive
// ttl; anything else is a 400 *Error (bad_request, ttl_invalid).
func ParseJWTRequest(body []byte) (audience []string, ttl time.Duration, err error) {
	bad := func(detail string) error {
		return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: detail}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req JWTRequest
	if err := dec.Decode(&req); err != nil {
		return nil, 0, bad(`the body must be a JSON object {"audience": ["..."], "ttl": "5m"} without other fields`)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, bad("trailing data after the JSON object")
	}
	if len(req.Audience) == 0 || len(req.Audience) > jwtkeys.MaxAudiences {
		return nil, 0, bad(fmt.Sprintf("audience must list 1 to %d audiences", jwtkeys.MaxAudiences))
	}
	seen := map[string]bool{}
	for _, a := range req.Audience {
		if a == "" || len(a) > jwtkeys.MaxAudienceLength || strings.TrimSpace(a) != a {
			return nil, 0, bad(fmt.Sprintf("each audience must be 1 to %d bytes without surrounding spaces", jwtkeys.MaxAudienceLength))
		}
		if seen[a] {
			return nil, 0, bad("audiences must not repeat")
		}
		seen[a] = true
	}
	if req.TTL != "" {
		ttl, err = time.ParseDuration(req.TTL)
		if err != nil {
			return nil, 0, bad(`ttl is not a duration such as "5m"`)
		}
		if ttl < time.Second {
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLInvalid, Detail: "ttl must be at least 1s (omit it for the policy's default)"}
		}
	}
	return req.Audience, ttl, nil
}

// jwtMinting serves POST /v1/jwt.
type jwtMinting struct {
	d         Deps
	decisions *prometheus.CounterVec
	denials   *denialAudit // bounds audit appends of unauthenticated denials
}

// newJWTMinting returns nil when d.JWT is not set.
func newJWTMinting(d Deps) (*jwtMinting, error) {
	if d.JWT.Signer == nil || d.JWT.Records == nil {
		return nil, nil
	}
	j := &jwtMinting{d: d, decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ca_jwt_decisions_total",
		Help: "POST /v1/jwt answers, by decision (allow, deny) and reason.",
	}, []string{"decision", "reason"})}
	if err := d.Metrics.Register(j.decisions); err != nil {
		return nil, err
	}
	return j, nil
}

// errJWTNotConfigured answers POST /v1/jwt when Deps.JWT is not set: 503
// jwt_key_unavailable, as before the first key exists.
var errJWTNotConfigured = fmt.Errorf("server: JWT-SVID minting is not configured (Deps.JWT): %w", jwtkeys.ErrNoActiveKey)

// mountJWT adds POST /v1/jwt to the API listener.
func (rt *Routes) mountJWT(r chi.Router) {
	h := func(http.ResponseWriter, *http.Request) error { return errJWTNotConfigured }
	if rt.jwt != nil {
		h = rt.jwt.mint
	}
	r.Method(http.MethodPost, "/v1/jwt", rt.edge.handle(h))
}

// mint is POST /v1/jwt: a workload authenticated by its current certificate
// over mTLS gets a JWT-SVID for its own SPIFFE ID. Issuance is audited by the
// signer before the token is returned; every refusal is audited here.
func (j *jwtMinting) mint(w http.ResponseWriter, r *http.Request) error {
	info := &decisionInfo{actor: "anonymous", details: map[string]string{}}
	err := j.mintOnce(w, r, info)
	j.done(r, info, err)
	return err
}

func (j *jwtMinting) mintOnce(w http.ResponseWriter, r *http.Request, info *decisionInfo) error {
	cur, rec, err := currentClientCertificate(r, j.d.JWT.Records, j.d.Clock, info,
		"a JWT-SVID needs the workload's current certificate as the TLS client certificate")
	if cur != nil {
		info.details["serial"] = serialHex(cur)
	}
	if err != nil {
		return err
	}
	if rec.SPIFFEID == "" || rec.SPIFFEID != ClientSPIFFEID(r) {
		return &Error{Kind: KindCredential, Reason: ReasonUnauthorized,
			Detail: "the client certificate carries no SPIFFE ID of its record"}
	}
	info.authenticated = true
	info.actor = rec.SPIFFEID
	if err := checkHold(r.Context(), j.d.Identities.Holds, rec.SPIFFEID); err != nil {
		return err
	}

	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	audience, ttl, err := ParseJWTRequest(body)
	if err != nil {
		return err
	}
	info.details["audience"] = strings.Join(audience, " ")
	pol := j.d.Policy.Load()
	dec, err := pol.DecideJWT(rec.SPIFFEID, audience, ttl)
	if err != nil {
		return err
	}
	tok, err := j.d.JWT.Signer.Sign(r.Context(), jwtkeys.Request{
		SPIFFEID: rec.SPIFFEID, Audience: audience, TTL: dec.TTL, NotAfter: rec.NotAfter,
		RequestID: RequestID(r.Context()), PolicyVersion: dec.PolicyVersion,
	})
	if err != nil {
		return err
	}
	info.issuer = tok.KeyID
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, JWTResponse{
		Token: tok.Token, SPIFFEID: tok.SPIFFEID, Audience: tok.Audience, KeyID: tok.KeyID, ExpiresAt: tok.Expiry.UTC(),
	})
}

// done counts the answer and, for a refusal, appends the denial record
// (action jwt, decision deny). Never the token.
func (j *jwtMinting) done(r *http.Request, info *decisionInfo, err error) {
	line := decisionLine{
		action: actionJWT, source: info.actor, destination: info.details["audience"], serial: info.details["serial"],
		issuer: info.issuer, policyVersion: j.d.Policy.Load().Version(),
	}
	if err == nil {
		j.decisions.WithLabelValues("allow", "").Inc()
		line.decision, line.status = "allow", http.StatusOK
		logDecision(r.Context(), j.d.Log, r, line)
		return
	}
	kind, reason, detail := classify(err)
	status := kind.Status()
	j.decisions.WithLabelValues("deny", string(reason)).Inc()
	line.decision, line.status, line.reason, line.detail = "deny", status, string(reason), detail
	logDecision(r.Context(), j.d.Log, r, line)
	info.details["detail"] = detail
	entry, aerr := j.denials.record(r, j.d.JWT.Records, actionJWT, info, status, func(raw json.RawMessage) store.AuditEntry {
		return store.AuditEntry{
			Time: j.d.Clock.Now(), Actor: clip(info.actor, 256), Action: actionJWT, Target: clip(info.actor, 256),
			Decision: "deny", Reason: string(reason), PolicyVersion: j.d.Policy.Load().Version(),
			RequestID: RequestID(r.Context()), Details: raw,
		}
	})
	if aerr != nil {
		j.d.Log.ErrorContext(r.Context(), "recording a JWT-SVID denial in the audit log failed",
			"request_id", entry.RequestID, "reason", entry.Reason, "err", aerr)
	}
}

// isJWTProblem tells classify that jwtProblem knows err.
func isJWTProblem(err error) bool {
	var de *policy.DenyError
	return errors.Is(err, jwtkeys.ErrNoActiveKey) || errors.Is(err, jwtkeys.ErrTTLTooLong) ||
		errors.Is(err, jwtkeys.ErrInvalidRequest) || errors.Is(err, policy.ErrJWTTTLTooLong) ||
		(errors.As(err, &de) && de.Check == policy.CheckJWTAudience)
}

// jwtProblem maps the signer's and the jwt policy's errors; classify calls
// it.
func jwtProblem(err error) (Kind, Reason, string) {
	var de *policy.DenyError
	switch {
	case errors.Is(err, jwtkeys.ErrNoActiveKey):
		return KindUnavailable, ReasonJWTKeyUnavailable, "no JWT-SVID signing key is active yet; retry later"
	case errors.Is(err, jwtkeys.ErrTTLTooLong), errors.Is(err, policy.ErrJWTTTLTooLong):
		return KindInput, ReasonTTLTooLong, "ttl exceeds the policy's jwt.max_ttl"
	case errors.Is(err, jwtkeys.ErrInvalidRequest):
		return KindInput, ReasonBadRequest, "the JWT-SVID request is invalid"
	case errors.As(err, &de):
		return KindPolicy, ReasonPolicyDenied, de.Detail
	}
	return KindInternal, ReasonInternal, internalDetail
}
