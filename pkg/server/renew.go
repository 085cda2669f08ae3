package server

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// renew is POST /v1/renew: a workload authenticates with its current
// certificate over mTLS and gets a new one for a new key, with the same
// identity, if the certificate is one we issued, recorded as active, not
// expired, and the policy rule it was issued under still exists and still
// grants that identity. Every denial is audited.
func (e *enrollment) renew(w http.ResponseWriter, r *http.Request) error {
	info := &decisionInfo{actor: "anonymous", details: map[string]string{}, start: time.Now()}
	err := e.renewOnce(w, r, info)
	e.done(r, actionRenew, info, err)
	return err
}

func (e *enrollment) renewOnce(w http.ResponseWriter, r *http.Request, info *decisionInfo) error {
	cur, rec, err := currentClientCertificate(r, e.d.Enroll.Records, e.d.Clock, info,
		"renewal needs the current certificate as the TLS client certificate")
	var serial string
	if cur != nil {
		serial = serialHex(cur)
		info.target, info.serial = serial, serial // serial becomes the new one once issued
	}
	info.dest, info.issuer = rec.SPIFFEID, rec.IssuerID
	if err != nil {
		return err
	}
	info.authenticated = true
	info.details["rule"] = rec.PolicyRule
	info.details["renewed_from"] = serial
	if err := checkHold(r.Context(), e.d.Identities.Holds, rec.SPIFFEID); err != nil {
		return err
	}

	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	csr, ttl, err := ParseCertRequest(body)
	if err != nil {
		return err
	}
	dec, err := e.decider.DecideRenewal(r.Context(), cur, rec.PolicyRule, csr, ttl)
	if err != nil {
		var ee *enroll.Error
		if errors.As(err, &ee) {
			info.fromEnrollError(ee)
		}
		return err
	}
	if samePublicKey(dec.CSR, cur) {
		return &Error{Status: http.StatusBadRequest, Reason: ReasonKeyReused,
			Detail: "the CSR carries the current certificate's public key; renewal needs a new key"}
	}
	prov, err := linkProvenance(dec.Provenance, rec.Provenance)
	if err != nil {
		return err
	}
	issued, err := e.d.Enroll.Issuer.Issue(r.Context(), issuer.Request{
		PublicKey: dec.PublicKey, SPIFFEID: dec.SPIFFEID, DNSNames: dec.DNSNames, TTL: dec.TTL,
		Provenance: prov, PolicyRule: dec.Rule, PolicyVersion: dec.PolicyVersion, RenewedFrom: serial,
		Actor: dec.SPIFFEID, RequestID: RequestID(r.Context()), Action: actionRenew,
	})
	if err != nil {
		return err
	}
	info.serial, info.issuer = issued.Serial, issued.IssuerID
	if err := recheckHold(r.Context(), e.d, issued.Serial, dec.SPIFFEID); err != nil {
		return err
	}
	return writeIssued(w, issued, dec.SPIFFEID)
}

// samePublicKey compares the CSR's key with the certificate's by their
// SubjectPublicKeyInfo.
func samePublicKey(csr *x509.CertificateRequest, cert *x509.Certificate) bool {
	return csr != nil && bytes.Equal(csr.RawSubjectPublicKeyInfo, cert.RawSubjectPublicKeyInfo)
}

// linkProvenance adds to a renewal's provenance the provenance of the
// original enrollment as "origin": copied from the renewed certificate's
// own origin when that was a renewal too, so that every certificate in a
// chain of renewals carries the proof it all started from, one level deep,
// plus renewed_from linking to its predecessor.
func linkProvenance(renewal, previous json.RawMessage) (json.RawMessage, error) {
	var out map[string]json.RawMessage
	if err := json.Unmarshal(renewal, &out); err != nil {
		return nil, fmt.Errorf("renewal provenance: %w", err)
	}
	origin := previous
	var prev map[string]json.RawMessage
	if json.Unmarshal(previous, &prev) == nil {
		if o, ok := prev["origin"]; ok && isRenewal(prev) {
			origin = o
		}
	}
	if len(origin) > 0 && json.Valid(origin) {
		out["origin"] = origin
	}
	return json.Marshal(out)
}

func isRenewal(p map[string]json.RawMessage) bool {
	var shape string
	_ = json.Unmarshal(p["shape"], &shape)
	return shape == "renewal"
}
