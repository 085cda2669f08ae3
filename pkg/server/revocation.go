package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeRequest is the body of POST /v1/certificates/{serial}/revoke.
type RevokeRequest struct {
	// Reason is an RFC 5280 reason name: unspecified, keyCompromise,
	// cACompromise, affiliationChanged, superseded, cessationOfOperation or
	// privilegeWithdrawn.
	Reason string `json:"reason"`
	// Scope is "lineage" to revoke the certificate and every certificate
	// renewed from it, transitively, whatever the reason; keyCompromise
	// always does. Empty revokes the one certificate for other reasons.
	Scope string `json:"scope,omitempty"`
}

// The revocation scopes of RevokeRequest.
const scopeLineage = "lineage"

// RevokeResponse is the answer of a revocation. AlreadyRevoked is true when
// the certificate had been revoked before; Certificate then shows that
// earlier revocation (time and reason), unchanged. Revoked counts the
// certificates this request revoked (the certificate and, for a lineage
// revocation, its descendants; none that were revoked before), and
// RevokedSerials lists them.
type RevokeResponse struct {
	AlreadyRevoked bool            `json:"already_revoked"`
	Certificate    CertificateView `json:"certificate"`
	Revoked        int             `json:"revoked"`
	RevokedSerials []string        `json:"revoked_serials"`
}

// maxRevokeBody bounds the revoke body below the global body limit: it is one
// short JSON object.
const maxRevokeBody = 4 << 10

// ParseRevokeRequest decodes a revoke body strictly: one JSON object with a
// string "reason" that is an accepted RFC 5280 reason name, an optional
// "scope" that is "lineage", no other field, nothing after it. A malformed body is a 400 bad_request *Error, an unknown
// reason a 400 revocation_reason_invalid *Error; an *http.MaxBytesError from
// the reader is returned wrapped, for a 413.
func ParseRevokeRequest(body io.Reader) (RevokeRequest, error) {
	var req RevokeRequest
	data, err := io.ReadAll(io.LimitReader(body, maxRevokeBody+1))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return req, fmt.Errorf("reading the revoke request: %w", err)
		}
		return req, badBody("the request body could not be read", err)
	}
	if len(data) > maxRevokeBody {
		return req, &Error{Kind: KindTooLarge, Reason: ReasonBodyTooLarge,
			Detail: fmt.Sprintf("the revoke request must be at most %d bytes", maxRevokeBody)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, badBody(`the body must be a JSON object {"reason": "<RFC 5280 reason name>", "scope": "lineage"} without other fields`, err)
	}
	if dec.More() || trailing(dec) {
		return req, badBody("the body must hold exactly one JSON object", nil)
	}
	if req.Reason == "" {
		return req, badBody(`"reason" is required`, nil)
	}
	if _, err := revoke.ReasonCode(req.Reason); err != nil {
		return req, err
	}
	if req.Scope != "" && req.Scope != scopeLineage {
		return req, badBody(`"scope" must be "lineage" or absent`, nil)
	}
	return req, nil
}

// descendants tells whether req revokes the certificate's descendants too:
// keyCompromise always does (a stolen key's holder may have renewed), any
// reason with scope lineage does.
func (req RevokeRequest) descendants() bool {
	return req.Reason == "keyCompromise" || req.Scope == scopeLineage
}

// trailing reports whether anything but whitespace follows the first value.
func trailing(dec *json.Decoder) bool {
	rest, _ := io.ReadAll(dec.Buffered())
	return strings.TrimSpace(string(rest)) != ""
}

func badBody(detail string, err error) *Error {
	return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: detail, Err: err}
}

func (rt *Routes) revokeCertificate(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Operators.Revoker == nil {
		return errOperatorsNotConfigured
	}
	sn, err := serialParam(r)
	if err != nil {
		return err
	}
	req, err := ParseRevokeRequest(r.Body)
	if err != nil {
		return err
	}
	op, _ := OperatorFrom(r.Context())
	if req.descendants() {
		return rt.revokeLineage(w, r, sn, req, op)
	}
	c, already, err := rt.d.Operators.Revoker.Revoke(r.Context(), sn, req.Reason, op.Actor, RequestID(r.Context()))
	line := decisionLine{
		action: "revoke", source: op.Actor, destination: c.SPIFFEID, serial: sn, issuer: c.IssuerID,
		policyVersion: op.PolicyVersion, detail: "reason " + req.Reason,
	}
	if err != nil {
		kind, reason, _ := classify(err)
		line.decision, line.status, line.reason = "deny", kind.Status(), string(reason)
		logDecision(r.Context(), rt.d.Log, r, line)
		return fmt.Errorf("revoking %s: %w", sn, err)
	}
	line.decision, line.status = "allow", http.StatusOK
	if already {
		line.detail += " (already revoked; unchanged)"
	}
	logDecision(r.Context(), rt.d.Log, r, line)
	resp := RevokeResponse{AlreadyRevoked: already, Certificate: certificateView(c, rt.d.Clock.Now(), false), RevokedSerials: []string{}}
	if !already {
		resp.Revoked, resp.RevokedSerials = 1, []string{c.Serial}
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, resp)
}

// revokeLineage revokes sn and every certificate renewed from it, in one
// transaction (each audited), and answers with sn's record as it now
// stands and what was revoked.
func (rt *Routes) revokeLineage(w http.ResponseWriter, r *http.Request, sn string, req RevokeRequest, op *Operator) error {
	line := decisionLine{action: "revoke", source: op.Actor, serial: sn, policyVersion: op.PolicyVersion,
		detail: "reason " + req.Reason + ", with descendants"}
	revoked, err := rt.d.Operators.Revoker.RevokeMany(r.Context(), store.RevokeScope{Serial: sn, Descendants: true},
		req.Reason, op.Actor, RequestID(r.Context()))
	var c store.Certificate
	if err == nil {
		if rt.d.Operators.Store == nil {
			err = errOperatorsNotConfigured
		} else {
			c, err = rt.d.Operators.Store.GetCertificate(r.Context(), sn)
		}
	}
	line.destination, line.issuer = c.SPIFFEID, c.IssuerID
	if err != nil {
		kind, reason, _ := classify(err)
		line.decision, line.status, line.reason = "deny", kind.Status(), string(reason)
		logDecision(r.Context(), rt.d.Log, r, line)
		return fmt.Errorf("revoking %s and its descendants: %w", sn, err)
	}
	resp := RevokeResponse{AlreadyRevoked: true, Certificate: certificateView(c, rt.d.Clock.Now(), false),
		Revoked: len(revoked), RevokedSerials: make([]string, 0, len(revoked))}
	for _, rc := range revoked {
		resp.RevokedSerials = append(resp.RevokedSerials, rc.Serial)
		if rc.Serial == sn {
			resp.AlreadyRevoked = false
		}
	}
	line.decision, line.status = "allow", http.StatusOK
	line.detail += fmt.Sprintf(" (%d revoked)", len(revoked))
	logDecision(r.Context(), rt.d.Log, r, line)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, resp)
}
