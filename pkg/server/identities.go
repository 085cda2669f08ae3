package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/names"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Reasons of identity revocation and holds.
const (
	// ReasonIdentityOnHold: enrollment, renewal or a JWT-SVID refused
	// because an operator put the identity on hold (403).
	ReasonIdentityOnHold Reason = "identity_on_hold"
	// ReasonSPIFFEIDInvalid: spiffe_id is not a SPIFFE ID with a path in the
	// CA's trust domain (400).
	ReasonSPIFFEIDInvalid Reason = "spiffe_id_invalid"
	// ReasonHoldInvalid: hold is not a duration between 1m and 720h (400).
	ReasonHoldInvalid Reason = "hold_invalid"
	// ReasonIdentityNotOnHold: a release found no hold in force (404).
	ReasonIdentityNotOnHold Reason = "identity_not_on_hold"
)

// IdentityRevoker revokes every unexpired certificate of a SPIFFE ID;
// *revoke.Revoker fits.
type IdentityRevoker interface {
	RevokeIdentity(ctx context.Context, spiffeID, reason, actor, requestID string) ([]store.Certificate, error)
}

// HoldKeeper places, releases, lists and checks identity holds;
// *hold.Holds fits.
type HoldKeeper interface {
	Check(ctx context.Context, spiffeID string) error
	// Precheck is Check for the check before an enrollment's issuance,
	// which recheckHold follows: it may answer from a snapshot of the
	// holds in force (hold.PrecheckMaxAge old at most).
	Precheck(ctx context.Context, spiffeID string) error
	// Recheck is Check for recheckHold: the same answer, from a read that
	// started after the call, shared with concurrent rechecks.
	Recheck(ctx context.Context, spiffeID string) error
	Place(ctx context.Context, r hold.Request) (store.Hold, error)
	Release(ctx context.Context, spiffeID, actor, requestID, policyVersion string) ([]store.Hold, error)
	Active(ctx context.Context, limit int) ([]store.Hold, error)
}

var _ HoldKeeper = (*hold.Holds)(nil)

// IdentityDeps are the collaborators of /v1/identities/* and of the hold
// check on enrollment, renewal and JWT-SVIDs. With Holds nil nothing is
// held and the identity routes fail with a 500 once authorised; with
// Revoker nil, /v1/identities/revoke does.
type IdentityDeps struct {
	Revoker IdentityRevoker
	Holds   HoldKeeper
}

var errIdentitiesNotConfigured = errors.New("server: identity endpoints are not configured (Deps.Identities)")

// checkHold refuses spiffeID with 403 identity_on_hold when a hold is in
// force (h nil: never). A store failure is returned as is (503
// store_unavailable): a hold that cannot be checked is not assumed absent.
// Renewal and JWT minting call it before signing; recheckHold asks
// Recheck, the same answer from a read shared with concurrent rechecks.
func checkHold(ctx context.Context, h HoldKeeper, spiffeID string) error {
	if h == nil {
		return nil
	}
	return holdRefusal(spiffeID, h.Check(ctx, spiffeID))
}

// precheckHold is checkHold before an enrollment's issuance, which
// recheckHold follows: it may answer from the snapshot of the holds in force
// (hold.Holds.Precheck), so that most enrollments read no hold from the
// store before issuing; the recheck reads it. An enrollment revoked by the
// recheck leaves nothing else behind (its token was spent either way);
// a renewal would leave its predecessor superseded, so renewal uses
// checkHold.
func precheckHold(ctx context.Context, h HoldKeeper, spiffeID string) error {
	if h == nil {
		return nil
	}
	return holdRefusal(spiffeID, h.Precheck(ctx, spiffeID))
}

// holdRefusal is the answer to a hold check's err: 403 identity_on_hold for
// a hold in force, else err as is.
func holdRefusal(spiffeID string, err error) error {
	var oh *hold.OnHoldError
	if errors.As(err, &oh) {
		return &Error{Kind: KindPolicy, Reason: ReasonIdentityOnHold, Err: err,
			Detail: fmt.Sprintf("%s is on hold until %s", spiffeID, oh.Until.UTC().Format(time.RFC3339))}
	}
	return err
}

// recheckHold closes the race between a hold and an issuance that passed
// precheckHold just before the hold committed (or while its snapshot did
// not show the hold yet): called after the certificate is
// recorded and before it is returned, it refuses (403 identity_on_hold) and
// revokes the new certificate (actor "ca:identity-hold", the hold's reason)
// when a hold is now in force. Any issuance recorded before the hold's
// identity revocation ran is revoked by it; any recorded after is seen here,
// because the hold committed first. A certificate whose revocation fails is
// still not returned; the failure is logged and the error answers 500.
func recheckHold(ctx context.Context, d Deps, serial, spiffeID string) error {
	var err error
	if h := d.Identities.Holds; h != nil {
		err = holdRefusal(spiffeID, h.Recheck(ctx, spiffeID))
	}
	var pe *Error
	if err == nil || !errors.As(err, &pe) || pe.Reason != ReasonIdentityOnHold {
		return err
	}
	reason := "privilegeWithdrawn"
	var oh *hold.OnHoldError
	if errors.As(err, &oh) && oh.Reason != "" {
		reason = oh.Reason
	}
	if d.Operators.Revoker == nil {
		return errors.Join(err, errOperatorsNotConfigured)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, _, rerr := d.Operators.Revoker.Revoke(rctx, serial, reason, "ca:identity-hold", RequestID(ctx)); rerr != nil {
		d.Log.ErrorContext(ctx, "revoking a certificate issued while its identity was put on hold failed",
			"serial", serial, "spiffe_id", spiffeID, "request_id", RequestID(ctx), "err", rerr)
		return fmt.Errorf("revoking %s issued during a hold: %w", serial, rerr)
	}
	d.Log.WarnContext(ctx, "a certificate issued while its identity was put on hold was revoked and not returned",
		"serial", serial, "spiffe_id", spiffeID, "request_id", RequestID(ctx))
	return err
}

// IdentityRequest is the body of POST /v1/identities/revoke, /hold and
// /release.
type IdentityRequest struct {
	// SPIFFEID is the identity, in the CA's trust domain.
	SPIFFEID string `json:"spiffe_id"`
	// Reason is an RFC 5280 reason name, as for a single revocation
	// (required by revoke and hold, refused by release).
	Reason string `json:"reason,omitempty"`
	// Hold is a Go duration from 1m to 720h (30 days): optional for revoke,
	// required for hold, refused by release.
	Hold string `json:"hold,omitempty"`
}

// HoldView is one hold as the API shows it.
type HoldView struct {
	ID         int64      `json:"id"`
	SPIFFEID   string     `json:"spiffe_id"`
	Reason     string     `json:"reason"`
	PlacedBy   string     `json:"placed_by"`
	PlacedAt   time.Time  `json:"placed_at"`
	Until      time.Time  `json:"until"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	ReleasedBy string     `json:"released_by,omitempty"`
}

func holdView(h store.Hold) HoldView {
	v := HoldView{ID: h.ID, SPIFFEID: h.SPIFFEID, Reason: h.Reason, PlacedBy: h.PlacedBy, PlacedAt: h.PlacedAt, Until: h.Until}
	if !h.ReleasedAt.IsZero() {
		at := h.ReleasedAt
		v.ReleasedAt, v.ReleasedBy = &at, h.ReleasedBy
	}
	return v
}

// IdentityRevokeResponse is the answer of POST /v1/identities/revoke:
// Revoked counts the certificates this request revoked (those revoked
// before, and expired ones, are not counted), Serials lists them, and Hold
// is the hold placed, if one was asked for.
type IdentityRevokeResponse struct {
	SPIFFEID string    `json:"spiffe_id"`
	Revoked  int       `json:"revoked"`
	Serials  []string  `json:"serials"`
	Hold     *HoldView `json:"hold,omitempty"`
}

// HoldResponse is the answer of POST /v1/identities/hold.
type HoldResponse struct {
	Hold HoldView `json:"hold"`
}

// ReleaseResponse is the answer of POST /v1/identities/release: the holds
// it ended.
type ReleaseResponse struct {
	SPIFFEID string     `json:"spiffe_id"`
	Released []HoldView `json:"released"`
}

// HoldList is the answer of GET /v1/identities/holds: the holds in force,
// soonest-ending first (at most maxHoldList).
type HoldList struct {
	Items []HoldView `json:"items"`
}

const (
	maxIdentityBody = 4 << 10
	maxHoldList     = 1000
)

// identityOp is what an identity request must and must not carry.
type identityOp int

const (
	opRevoke identityOp = iota
	opHold
	opRelease
)

// ParseIdentityRequest decodes an identity body strictly (one JSON object,
// no unknown field, nothing after it, at most 4 KiB) and validates it for
// op against the trust domain td: spiffe_id must be a SPIFFE ID with a path
// in td (400 spiffe_id_invalid), reason an accepted RFC 5280 name (400
// revocation_reason_invalid), hold a duration between hold.MinDuration and
// hold.MaxDuration (400 hold_invalid). It returns the hold duration (0 when
// none).
func ParseIdentityRequest(body io.Reader, td string, op identityOp) (IdentityRequest, time.Duration, error) {
	var req IdentityRequest
	data, err := io.ReadAll(io.LimitReader(body, maxIdentityBody+1))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return req, 0, fmt.Errorf("reading the identity request: %w", err)
		}
		return req, 0, badBody("the request body could not be read", err)
	}
	if len(data) > maxIdentityBody {
		return req, 0, &Error{Kind: KindTooLarge, Reason: ReasonBodyTooLarge,
			Detail: fmt.Sprintf("the request must be at most %d bytes", maxIdentityBody)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, 0, badBody(`the body must be a JSON object {"spiffe_id": ..., "reason": ..., "hold": "24h"} without other fields`, err)
	}
	if dec.More() || trailing(dec) {
		return req, 0, badBody("the body must hold exactly one JSON object", nil)
	}
	if err := validIdentity(req.SPIFFEID, td); err != nil {
		return req, 0, err
	}
	switch op {
	case opRelease:
		if req.Reason != "" || req.Hold != "" {
			return req, 0, badBody(`a release takes only "spiffe_id"`, nil)
		}
		return req, 0, nil
	case opHold:
		if req.Hold == "" {
			return req, 0, &Error{Kind: KindInput, Reason: ReasonHoldInvalid, Detail: `"hold" is required, a duration such as "24h"`}
		}
	}
	if req.Reason == "" {
		return req, 0, badBody(`"reason" is required (an RFC 5280 reason name)`, nil)
	}
	if _, err := revoke.ReasonCode(req.Reason); err != nil {
		return req, 0, err
	}
	if req.Hold == "" {
		return req, 0, nil
	}
	d, err := time.ParseDuration(req.Hold)
	if err == nil {
		err = hold.ValidateDuration(d)
	}
	if err != nil {
		return req, 0, &Error{Kind: KindInput, Reason: ReasonHoldInvalid, Err: err,
			Detail: fmt.Sprintf(`"hold" must be a duration from %s to %s (30 days), such as "24h"`, hold.MinDuration, hold.MaxDuration)}
	}
	return req, d, nil
}

// validIdentity accepts a SPIFFE ID (names.SplitSPIFFEID: at most 2048 bytes), with a path, in
// the trust domain td; anything else is 400 spiffe_id_invalid.
func validIdentity(id, td string) error {
	bad := func(detail string) error {
		return &Error{Kind: KindInput, Reason: ReasonSPIFFEIDInvalid, Detail: detail}
	}
	if id == "" {
		return bad(`"spiffe_id" is required`)
	}
	if len(id) > names.MaxSPIFFEIDBytes {
		return bad("spiffe_id must be at most 2048 bytes")
	}
	idTD, path, err := names.SplitSPIFFEID(id)
	if err != nil || path == "" {
		return bad("spiffe_id must be a SPIFFE ID with a path, such as spiffe://" + td + "/prod/payments")
	}
	if idTD != td {
		return bad("spiffe_id must be in the trust domain " + td)
	}
	return nil
}

// mountIdentities adds the identity revocation and hold routes.
func (rt *Routes) mountIdentities(r chi.Router) {
	rt.operatorRoute(r, http.MethodPost, "/v1/identities/revoke", policy.RoleRevoker, rt.revokeIdentity)
	rt.operatorRoute(r, http.MethodPost, "/v1/identities/hold", policy.RoleRevoker, rt.holdIdentity)
	rt.operatorRoute(r, http.MethodPost, "/v1/identities/release", policy.RoleAdmin, rt.releaseIdentity)
	rt.operatorRoute(r, http.MethodGet, "/v1/identities/holds", policy.RoleAuditor, rt.listHolds)
}

// revokeIdentity is POST /v1/identities/revoke: it places the hold first
// (when asked), so that no enrollment or renewal checked after it can
// replace the certificates about to be revoked, then revokes every
// unexpired certificate of the identity in one transaction, and records the
// whole decision in one more audit entry (action identity_revoke).
func (rt *Routes) revokeIdentity(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Identities.Revoker == nil || rt.d.Identities.Holds == nil {
		return errIdentitiesNotConfigured
	}
	op, _ := OperatorFrom(r.Context())
	req, d, err := ParseIdentityRequest(r.Body, rt.d.Policy.Load().TrustDomain(), opRevoke)
	line := decisionLine{action: "identity_revoke", source: op.Actor, destination: req.SPIFFEID,
		policyVersion: op.PolicyVersion, detail: "reason " + req.Reason}
	if err != nil {
		return rt.identityDenied(r, line, err)
	}
	ctx, rid := r.Context(), RequestID(r.Context())
	resp := IdentityRevokeResponse{SPIFFEID: req.SPIFFEID, Serials: []string{}}
	if d > 0 {
		h, err := rt.d.Identities.Holds.Place(ctx, hold.Request{
			SPIFFEID: req.SPIFFEID, Duration: d, Reason: req.Reason, Actor: op.Actor, RequestID: rid,
			PolicyVersion: op.PolicyVersion, Details: map[string]any{"with_revocation": true},
		})
		if err != nil {
			return rt.identityDenied(r, line, err)
		}
		v := holdView(h)
		resp.Hold = &v
		line.detail += ", hold until " + h.Until.UTC().Format(time.RFC3339)
	}
	certs, err := rt.d.Identities.Revoker.RevokeIdentity(ctx, req.SPIFFEID, req.Reason, op.Actor, rid)
	if err != nil {
		return rt.identityDenied(r, line, err)
	}
	for _, c := range certs {
		resp.Serials = append(resp.Serials, c.Serial)
	}
	resp.Revoked = len(certs)
	line.detail += fmt.Sprintf(", %d certificates revoked", len(certs))
	rt.appendIdentityAudit(r, op, "identity_revoke", req.SPIFFEID, map[string]any{
		"reason": req.Reason, "revoked": len(certs), "serials": clipSerials(resp.Serials), "hold": req.Hold,
	})
	line.decision, line.status = "allow", http.StatusOK
	logDecision(ctx, rt.d.Log, r, line)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, resp)
}

// holdIdentity is POST /v1/identities/hold: a hold without revoking (the
// identity's current certificates stay valid; they cannot renew or mint
// JWT-SVIDs while it lasts).
func (rt *Routes) holdIdentity(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Identities.Holds == nil {
		return errIdentitiesNotConfigured
	}
	op, _ := OperatorFrom(r.Context())
	req, d, err := ParseIdentityRequest(r.Body, rt.d.Policy.Load().TrustDomain(), opHold)
	line := decisionLine{action: hold.ActionHold, source: op.Actor, destination: req.SPIFFEID,
		policyVersion: op.PolicyVersion, detail: "reason " + req.Reason}
	if err != nil {
		return rt.identityDenied(r, line, err)
	}
	h, err := rt.d.Identities.Holds.Place(r.Context(), hold.Request{
		SPIFFEID: req.SPIFFEID, Duration: d, Reason: req.Reason, Actor: op.Actor,
		RequestID: RequestID(r.Context()), PolicyVersion: op.PolicyVersion,
	})
	if err != nil {
		return rt.identityDenied(r, line, err)
	}
	line.decision, line.status = "allow", http.StatusOK
	line.detail += ", until " + h.Until.UTC().Format(time.RFC3339)
	logDecision(r.Context(), rt.d.Log, r, line)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, HoldResponse{Hold: holdView(h)})
}

// releaseIdentity is POST /v1/identities/release: ends every hold of the
// identity in force (404 identity_not_on_hold if none is).
func (rt *Routes) releaseIdentity(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Identities.Holds == nil {
		return errIdentitiesNotConfigured
	}
	op, _ := OperatorFrom(r.Context())
	req, _, err := ParseIdentityRequest(r.Body, rt.d.Policy.Load().TrustDomain(), opRelease)
	line := decisionLine{action: hold.ActionRelease, source: op.Actor, destination: req.SPIFFEID, policyVersion: op.PolicyVersion}
	if err != nil {
		return rt.identityDenied(r, line, err)
	}
	list, err := rt.d.Identities.Holds.Release(r.Context(), req.SPIFFEID, op.Actor, RequestID(r.Context()), op.PolicyVersion)
	if errors.Is(err, hold.ErrNotHeld) {
		err = &Error{Kind: KindNotFound, Reason: ReasonIdentityNotOnHold, Detail: req.SPIFFEID + " is not on hold", Err: err}
	}
	if err != nil {
		return rt.identityDenied(r, line, err)
	}
	resp := ReleaseResponse{SPIFFEID: req.SPIFFEID, Released: make([]HoldView, 0, len(list))}
	for _, h := range list {
		resp.Released = append(resp.Released, holdView(h))
	}
	line.decision, line.status, line.detail = "allow", http.StatusOK, fmt.Sprintf("%d holds released", len(list))
	logDecision(r.Context(), rt.d.Log, r, line)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, resp)
}

// listHolds is GET /v1/identities/holds.
func (rt *Routes) listHolds(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Identities.Holds == nil {
		return errIdentitiesNotConfigured
	}
	list, err := rt.d.Identities.Holds.Active(r.Context(), maxHoldList)
	if err != nil {
		return err
	}
	out := HoldList{Items: make([]HoldView, 0, len(list))}
	for _, h := range list {
		out.Items = append(out.Items, holdView(h))
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}

// identityDenied logs the refused (or failed) identity request and returns
// err for the edge to answer. Refusals of well-authorised operators for bad
// input are logged, not audited: nothing was decided about the identity.
func (rt *Routes) identityDenied(r *http.Request, line decisionLine, err error) error {
	kind, reason, _ := classify(err)
	line.decision, line.status, line.reason = "deny", kind.Status(), string(reason)
	logDecision(r.Context(), rt.d.Log, r, line)
	return err
}

// appendIdentityAudit appends the summary entry of an identity decision; a
// failure is logged (the revocations themselves are already recorded, each
// with its own entry).
func (rt *Routes) appendIdentityAudit(r *http.Request, op *Operator, action, target string, details map[string]any) {
	if rt.d.Operators.Store == nil {
		return
	}
	raw, _ := json.Marshal(details)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	_, err := rt.d.Operators.Store.AppendAudit(ctx, store.AuditEntry{
		Time: rt.d.Clock.Now(), Actor: op.Actor, Action: action, Target: target, Decision: "allow",
		PolicyVersion: op.PolicyVersion, RequestID: RequestID(r.Context()), Details: raw,
	})
	if err != nil {
		rt.d.Log.ErrorContext(r.Context(), "recording an identity decision failed", "request_id", RequestID(r.Context()), "err", err)
	}
}

// clipSerials keeps an audit entry bounded: at most 100 serials (each
// revoked certificate has its own entry anyway).
func clipSerials(s []string) []string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}
