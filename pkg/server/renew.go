package server

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Reasons of renewal (issue 12: renewal lineage).
const (
	// ReasonCertificateSuperseded: the client certificate was already
	// renewed once; a certificate can be renewed once (403).
	ReasonCertificateSuperseded Reason = "certificate_superseded"
	// ReasonReauthenticationRequired: the certificate's lineage is older
	// than its rule's reauthenticate_after; enroll again with a fresh
	// token (403).
	ReasonReauthenticationRequired Reason = "reauthentication_required"
)

// renew is POST /v1/renew: a workload authenticates with its current
// certificate over mTLS and gets a new one for a new key, with the same
// identity. pkg/enroll's Renewer decides; this maps its answer. Every
// denial is audited.
func (e *enrollment) renew(w http.ResponseWriter, r *http.Request) error {
	info := &decisionInfo{actor: "anonymous", details: map[string]string{}, start: time.Now()}
	err := e.renewOnce(w, r, info)
	e.done(r, actionRenew, info, err)
	return err
}

func (e *enrollment) renewOnce(w http.ResponseWriter, r *http.Request, info *decisionInfo) error {
	// VerifiedChains is empty without a client certificate.
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return &Error{Kind: KindCredential, Reason: ReasonUnauthorized,
			Detail: "renewal needs the current certificate as the TLS client certificate"}
	}
	cur := r.TLS.VerifiedChains[0][0]
	if id := ClientSPIFFEID(r); id != "" {
		info.actor = id
	}
	serial := serialHex(cur)
	info.target, info.serial = serial, serial // serial becomes the new one once issued
	info.details["renewed_from"] = serial

	body, err := requestBody(r)
	if err != nil {
		return err
	}
	csr, ttl, err := ParseCertRequest(body)
	if err != nil {
		return err
	}
	reqID := RequestID(r.Context())
	dec, err := e.renewer.Decide(r.Context(), cur, csr, ttl, reqID)
	info.dest, info.issuer = dec.Record.SPIFFEID, dec.Record.IssuerID
	if dec.Record.Lineage != "" {
		info.details["lineage"] = dec.Record.Lineage
	}
	if dec.Record.Status == store.CertRevoked {
		info.details["revocation_reason"] = dec.Record.RevocationReason
	}
	if dec.Record.Serial != "" && bytes.Equal(dec.Record.DER, cur.Raw) && dec.Record.Status == store.CertActive &&
		e.d.Clock.Now().Before(dec.Record.NotAfter) {
		// A current certificate of this CA: its refusals are always
		// audited, past the anonymous denials' limit.
		info.authenticated = true
	}
	if err != nil {
		return e.renewalRefused(r, info, err)
	}
	info.details["rule"] = dec.Rule
	// Renewal reads the hold from the store (not precheckHold's snapshot):
	// recording a renewal supersedes the presented certificate, and a
	// renewal revoked by recheckHold would leave it superseded, so the
	// workload could not renew once the hold ends (and under on_reuse:
	// revoke_lineage, trying would revoke its lineage).
	if err := checkHold(r.Context(), e.d.Identities.Holds, dec.SPIFFEID); err != nil {
		return err
	}
	issued, err := e.d.Enroll.Issuer.Issue(r.Context(), issuer.Request{
		PublicKey: dec.PublicKey, SPIFFEID: dec.SPIFFEID, DNSNames: dec.DNSNames, TTL: dec.TTL,
		Provenance: dec.Provenance, PolicyRule: dec.Rule, PolicyVersion: dec.PolicyVersion, RenewedFrom: dec.RenewedFrom,
		Actor: dec.SPIFFEID, RequestID: reqID, Action: actionRenew,
	})
	if err != nil {
		// A concurrent renewal of the same certificate won (on this
		// replica or another): the same answer as a renewal of a
		// superseded certificate.
		return e.renewalRefused(r, info, e.renewer.Reused(r.Context(), dec, reqID, err))
	}
	info.serial, info.issuer = issued.Serial, issued.IssuerID
	if err := recheckHold(r.Context(), e.d, issued.Serial, dec.SPIFFEID); err != nil {
		return err
	}
	return writeIssued(w, issued, dec.SPIFFEID)
}

// renewalRefused records what the refusal says in the decision record and,
// for a renewal of a superseded certificate, logs the possible key theft at
// WARN and counts it.
func (e *enrollment) renewalRefused(r *http.Request, info *decisionInfo, err error) error {
	var ee *enroll.Error
	if !errors.As(err, &ee) {
		return err
	}
	info.fromEnrollError(ee)
	if ee.Subject != "" {
		info.actor = ee.Subject // the certificate's identity, not a token subject
	}
	if ee.Reason != enroll.ReasonCertificateSuperseded {
		return err
	}
	info.details["on_reuse"] = ee.OnReuse
	info.details["revoked"] = strconv.Itoa(ee.Revoked)
	e.reuse.WithLabelValues(ee.OnReuse).Inc()
	e.d.Log.WarnContext(r.Context(), "renewal of an already-renewed certificate refused: possibly a stolen key (two holders of one key)",
		"serial", info.target, "spiffe_id", info.dest, "lineage", ee.Lineage, "on_reuse", ee.OnReuse,
		"lineage_revoked", ee.Revoked, "remote_addr", r.RemoteAddr, "request_id", RequestID(r.Context()))
	return err
}
