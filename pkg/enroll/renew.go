package enroll

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Reasons of renewal refusals, beyond the enrollment ones.
const (
	ReasonUnauthorized             = "unauthorized"              // the client certificate is not a current one of this CA
	ReasonCertificateRevoked       = "certificate_revoked"       // the client certificate is revoked
	ReasonCertificateSuperseded    = "certificate_superseded"    // the client certificate was already renewed once
	ReasonReauthenticationRequired = "reauthentication_required" // the lineage is older than its rule's reauthenticate_after
	ReasonKeyReused                = "key_reused"                // the CSR carries the current certificate's key
)

// Checks recorded with renewal refusals (Error.Check), beyond the policy's.
const (
	CheckSuperseded     = "superseded"           // certificate_superseded
	CheckReauthenticate = "reauthenticate_after" // reauthentication_required
)

// RenewalProvenance is the provenance recorded for a renewed certificate.
// The lineage's enrollment provenance is kept once per lineage by the store
// (store.Certificate.Origin), not in every renewal; Origin is set only in
// renewals recorded before that (schema 14 moved it out of the rows it
// migrated), and is read as a fallback.
type RenewalProvenance struct {
	Shape         string          `json:"shape"` // always "renewal"
	RenewedFrom   string          `json:"renewed_from"`
	Lineage       string          `json:"lineage"`
	SPIFFEID      string          `json:"spiffe_id"`
	PolicyRule    string          `json:"policy_rule"`
	PolicyVersion string          `json:"policy_version"`
	Origin        json.RawMessage `json:"origin,omitempty"`
}

// CertificateRecords finds the CA's record of a certificate; the store
// fits.
type CertificateRecords interface {
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
}

// LineageRevoker revokes a certificate and its descendants;
// *revoke.Revoker fits.
type LineageRevoker interface {
	RevokeMany(ctx context.Context, scope store.RevokeScope, reason, actor, requestID string) ([]store.Certificate, error)
}

// Renewer makes renewal decisions: the renewal counterpart of Decider. It
// is safe for concurrent use.
type Renewer struct {
	policies PolicySource
	records  CertificateRecords
	revoker  LineageRevoker
	clock    clock.Clock
}

// NewRenewer returns a Renewer that reads certificate records from records
// and evaluates the policy current at each call. revoker, if not nil,
// carries out renewal.on_reuse: revoke_lineage; without it a reuse is only
// refused.
func NewRenewer(policies PolicySource, records CertificateRecords, revoker LineageRevoker, c clock.Clock) *Renewer {
	return &Renewer{policies: policies, records: records, revoker: revoker, clock: c}
}

// RenewalDecision is an authorised renewal: the Decision for pkg/issuer,
// plus the serial it renews (issuer.Request.RenewedFrom) and the lineage.
type RenewalDecision struct {
	Decision
	RenewedFrom string
	Lineage     string
	// Record is the renewed certificate's record.
	Record store.Certificate
}

// Decide authorises (or refuses) renewing current, the certificate a
// workload presented over mTLS (the TLS layer verified its chain to a
// current trust anchor), for the key in csrPEM, with ttl (0 for the rule's
// default).
//
// Order of checks:
//  1. The record: the certificate is one this CA issued, the very one
//     recorded under its serial, active and unexpired (unauthorized), not
//     revoked (certificate_revoked).
//  2. Renew once: a certificate that was already renewed is refused
//     (certificate_superseded): two holders of one key, one of them
//     possibly a thief. Under renewal.on_reuse: revoke_lineage the whole
//     lineage is revoked (keyCompromise) first. The superseded certificate
//     itself otherwise stays valid until it expires.
//  3. The lineage's age: past its rule's reauthenticate_after since the
//     enrollment, reauthentication_required.
//  4. Today's policy on the provenance recorded at enrollment
//     (policy.Recheck: the rule still exists, takes the same token issuer,
//     its when holds for the recorded claims, it still grants the identity;
//     policy_denied with the check) and the name guard.
//  5. The CSR (csr_*), a new key (key_reused), the rule's key types and the
//     requested names (policy_denied), the TTL (ttl_too_long).
//
// Renew once is checked again, atomically, when the renewal is recorded:
// Issue then fails with store.ErrSuperseded, which Reused turns into the
// same answer. Every error is a *Error.
func (r *Renewer) Decide(ctx context.Context, current *x509.Certificate, csrPEM []byte, ttl time.Duration, requestID string) (RenewalDecision, error) {
	pol := r.policies.Load()
	if pol == nil {
		return RenewalDecision{}, newErr(ReasonInternal, nil, "no policy loaded")
	}
	if current == nil {
		return RenewalDecision{}, newErr(ReasonUnauthorized, nil, "renewal needs the current certificate as the TLS client certificate")
	}
	serial := fmt.Sprintf("%x", current.SerialNumber)
	rec, err := r.records.GetCertificate(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return RenewalDecision{}, newErr(ReasonUnauthorized, nil, "the client certificate is not one this CA issued")
	case errors.Is(err, store.ErrUnavailable):
		return RenewalDecision{}, newErr(ReasonStoreUnavailable, err, "could not read the certificate record")
	case err != nil:
		return RenewalDecision{}, newErr(ReasonInternal, err, "could not read the certificate record")
	}
	fail := func(e *Error) (RenewalDecision, error) {
		if e.Rule == "" {
			e.Rule = rec.PolicyRule
		}
		e.Subject, e.Issuer, e.PolicyVersion = rec.SPIFFEID, rec.TokenIssuer, pol.Version()
		return RenewalDecision{Record: rec}, e
	}
	now := r.clock.Now()
	switch {
	case !bytes.Equal(rec.DER, current.Raw):
		return fail(newErr(ReasonUnauthorized, nil, "the client certificate is not the one recorded under its serial"))
	case rec.Status == store.CertRevoked:
		return fail(newErr(ReasonCertificateRevoked, nil, "the client certificate is revoked (%s)", rec.RevocationReason))
	case rec.Status != store.CertActive:
		return fail(newErr(ReasonUnauthorized, nil, "the client certificate is not active"))
	case !now.Before(rec.NotAfter):
		return fail(newErr(ReasonUnauthorized, nil, "the client certificate has expired"))
	}
	lineage, started := rec.Lineage, rec.LineageStartedAt
	if lineage == "" {
		lineage = rec.Serial
	}
	if started.IsZero() {
		started = rec.CreatedAt
	}
	if rec.SupersededBy != "" {
		return fail(r.reuse(ctx, pol, rec, lineage, requestID))
	}

	deny := func(check, format string, args ...any) (RenewalDecision, error) {
		e := newErr(ReasonPolicyDenied, nil, format, args...)
		e.Check = check
		return fail(e)
	}
	ri, ok := pol.Rule(rec.PolicyRule)
	if !ok {
		return deny(policy.CheckRuleRemoved, "rule %q is no longer in the policy", rec.PolicyRule)
	}
	if age := now.Sub(started); age > ri.ReauthenticateAfter {
		e := newErr(ReasonReauthenticationRequired, nil,
			"the lineage began %s ago, more than the rule's reauthenticate_after %s: enroll again with a fresh token",
			age.Truncate(time.Second), ri.ReauthenticateAfter)
		e.Check = CheckReauthenticate
		return fail(e)
	}
	origin, err := enrollmentProvenance(rec)
	if err != nil {
		return deny(policy.CheckClaimsMissing, "the lineage's enrollment provenance cannot be read: %v", err)
	}
	claims, ok := origin.enrollmentClaims()
	if !ok {
		return deny(policy.CheckClaimsMissing, "the lineage's enrollment recorded no claims to re-evaluate the rule on")
	}
	tokenIssuer := origin.TokenIssuer
	if tokenIssuer == "" {
		tokenIssuer = rec.TokenIssuer
	}
	m, err := pol.Recheck(ctx, rec.PolicyRule, tokenIssuer, claims, rec.SPIFFEID, rec.DNSNames)
	if err != nil {
		var de *policy.DenyError
		if errors.As(err, &de) {
			return fail(&Error{Reason: ReasonPolicyDenied, Detail: de.Detail, Rule: de.Rule, Check: de.Check, Err: err})
		}
		return fail(newErr(ReasonInternal, err, "policy evaluation failed"))
	}
	if len(current.URIs) != 1 || current.URIs[0].String() != rec.SPIFFEID {
		return deny(policy.CheckSPIFFEID, "the current certificate must carry exactly its recorded SPIFFE ID")
	}
	if err := pol.CheckNames(rec.SPIFFEID, rec.DNSNames); err != nil {
		return deny(policy.CheckNameGuard, "the current identity is no longer allowed: %v", err)
	}

	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return fail(asError(err))
	}
	if bytes.Equal(csr.RawSubjectPublicKeyInfo, current.RawSubjectPublicKeyInfo) {
		return fail(newErr(ReasonKeyReused, nil, "the CSR carries the current certificate's public key; renewal needs a new key"))
	}
	kt, _ := KeyTypeOf(csr.PublicKey)
	if !m.AllowsKeyType(kt) {
		return deny(policy.CheckKeyType, "key type %s is not allowed by the rule (allowed: %v)", kt, m.KeyTypes)
	}
	// The identity stays the certificate's: the CSR may ask for a subset of
	// its names, as for enrollment, never for the rule's others.
	m.DNSNames = rec.DNSNames
	dns, err := grantedNames(csr, m)
	if err != nil {
		return fail(asError(err))
	}
	switch {
	case ttl < 0:
		return fail(newErr(ReasonTTLInvalid, nil, "ttl must not be negative"))
	case ttl == 0:
		ttl = m.DefaultTTL
	case ttl > m.MaxTTL:
		return fail(newErr(ReasonTTLTooLong, nil, "ttl %s exceeds the rule's max_ttl %s", ttl, m.MaxTTL))
	}
	prov, err := json.Marshal(RenewalProvenance{
		Shape: "renewal", RenewedFrom: rec.Serial, Lineage: lineage, SPIFFEID: rec.SPIFFEID,
		PolicyRule: m.Rule, PolicyVersion: pol.Version(),
	})
	if err != nil {
		return fail(newErr(ReasonInternal, err, "provenance"))
	}
	return RenewalDecision{
		Decision: Decision{
			PublicKey: csr.PublicKey, KeyType: kt, CSR: csr, SPIFFEID: rec.SPIFFEID, DNSNames: dns, TTL: ttl,
			Rule: m.Rule, PolicyVersion: pol.Version(), TokenIssuer: tokenIssuer, Subject: rec.SPIFFEID, Provenance: prov,
		},
		RenewedFrom: rec.Serial, Lineage: lineage, Record: rec,
	}, nil
}

// Reused is the answer to a renewal whose recording failed with
// store.ErrSuperseded (a concurrent renewal of the same certificate won):
// the same certificate_superseded refusal, and on_reuse, as Decide gives
// when the record already says so. Any other err is returned as it is.
func (r *Renewer) Reused(ctx context.Context, dec RenewalDecision, requestID string, err error) error {
	if !errors.Is(err, store.ErrSuperseded) {
		return err
	}
	pol := r.policies.Load()
	e := r.reuse(ctx, pol, dec.Record, dec.Lineage, requestID)
	e.Rule, e.Subject, e.Issuer, e.PolicyVersion = dec.Rule, dec.SPIFFEID, dec.TokenIssuer, pol.Version()
	if e.Err == nil {
		e.Err = err
	}
	return e
}

// reuse builds the certificate_superseded refusal and, under on_reuse:
// revoke_lineage, revokes the lineage first. A revocation that fails is
// reported in the refusal's detail and cause; the renewal is refused either
// way.
func (r *Renewer) reuse(ctx context.Context, pol *policy.Policy, rec store.Certificate, lineage, requestID string) *Error {
	e := newErr(ReasonCertificateSuperseded, nil,
		"certificate %s was already renewed (as %s); a certificate can be renewed once: possibly two holders of one key",
		rec.Serial, orUnknown(rec.SupersededBy))
	e.Check = CheckSuperseded
	e.OnReuse = string(pol.OnReuse())
	e.Lineage = lineage
	if pol.OnReuse() != policy.OnReuseRevokeLineage {
		return e
	}
	if r.revoker == nil {
		e.Detail += "; the lineage could not be revoked (no revoker configured)"
		return e
	}
	revoked, err := r.revoker.RevokeMany(ctx, store.RevokeScope{Serial: lineage, Descendants: true},
		"keyCompromise", "renewal reuse of "+rec.Serial, requestID)
	if err != nil {
		e.Err = err
		e.Detail += "; revoking the lineage failed"
		return e
	}
	e.Revoked = len(revoked)
	e.Detail += fmt.Sprintf("; the lineage %s was revoked (%d certificates, keyCompromise)", lineage, len(revoked))
	return e
}

func orUnknown(s string) string {
	if s == "" {
		return "another certificate"
	}
	return s
}

// enrollmentProvenance reads the provenance of a lineage's enrollment: the
// lineage's as the store keeps it (rec.Origin), else the record's own for
// an enrollment or the origin an older renewal's provenance carries.
func enrollmentProvenance(rec store.Certificate) (Provenance, error) {
	raw := rec.Origin
	if len(raw) == 0 {
		raw = originOf(rec.Provenance)
	}
	var p Provenance
	if err := json.Unmarshal(raw, &p); err != nil {
		return Provenance{}, err
	}
	return p, nil
}

// originOf is the enrollment provenance within raw: raw itself for an
// enrollment, its origin for a renewal recorded with one (nil for a
// renewal without).
func originOf(raw json.RawMessage) json.RawMessage {
	var p map[string]json.RawMessage
	if json.Unmarshal(raw, &p) != nil {
		return raw
	}
	var shape string
	_ = json.Unmarshal(p["shape"], &shape)
	if shape == "renewal" {
		return p["origin"]
	}
	return raw
}
