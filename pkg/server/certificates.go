package server

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// mountOperator adds the inventory, revocation and audit endpoints of the API
// listener, each behind its role.
func (rt *Routes) mountOperator(r chi.Router) {
	rt.operatorRoute(r, http.MethodGet, "/v1/certificates", policy.RoleAuditor, rt.listCertificates)
	rt.operatorRoute(r, http.MethodGet, "/v1/certificates/{serial}", policy.RoleAuditor, rt.getCertificate)
	rt.operatorRoute(r, http.MethodPost, "/v1/certificates/{serial}/revoke", policy.RoleRevoker, rt.revokeCertificate)
	rt.operatorRoute(r, http.MethodGet, "/v1/audit", policy.RoleAuditor, rt.listAudit)
	rt.mountInventory(r)
}

// CertificateView is one certificate as the operator endpoints show it.
// Status is derived at answer time: active, revoked, or expired.
type CertificateView struct {
	Serial           string           `json:"serial"`
	IssuerID         string           `json:"issuer_id"`
	SPIFFEID         string           `json:"spiffe_id"`
	DNSNames         []string         `json:"dns_names,omitempty"`
	NotBefore        time.Time        `json:"not_before"`
	NotAfter         time.Time        `json:"not_after"`
	Status           store.CertStatus `json:"status"`
	RevokedAt        *time.Time       `json:"revoked_at,omitempty"`
	RevocationReason string           `json:"revocation_reason,omitempty"`
	PolicyRule       string           `json:"policy_rule,omitempty"`
	PolicyVersion    string           `json:"policy_version,omitempty"`
	RenewedFrom      string           `json:"renewed_from,omitempty"`
	// Lineage is the serial of the first certificate of this one's chain
	// of renewals (its own serial for an enrolled certificate).
	Lineage string `json:"lineage,omitempty"`
	// SupersededBy is the serial of the renewal of this certificate, once
	// renewed (a certificate can be renewed once).
	SupersededBy    string    `json:"superseded_by,omitempty"`
	PublicKeySHA256 string    `json:"public_key_sha256"`
	CreatedAt       time.Time `json:"created_at"`
	// Provenance is how the certificate was obtained (token issuer, subject,
	// claims, rule), as recorded at issuance.
	Provenance json.RawMessage `json:"provenance,omitempty"`
	// Certificate is the PEM, in single-certificate answers only.
	Certificate string `json:"certificate,omitempty"`
}

func certificateView(c store.Certificate, now time.Time, withPEM bool) CertificateView {
	v := CertificateView{
		Serial: c.Serial, IssuerID: c.IssuerID, SPIFFEID: c.SPIFFEID, DNSNames: c.DNSNames,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Status: c.EffectiveStatus(now),
		RevocationReason: c.RevocationReason, PolicyRule: c.PolicyRule, PolicyVersion: c.PolicyVersion,
		RenewedFrom: c.RenewedFrom, PublicKeySHA256: c.PublicKeySHA256, CreatedAt: c.CreatedAt,
		Lineage: c.Lineage, SupersededBy: c.SupersededBy,
	}
	if c.Status == store.CertRevoked {
		at := c.RevokedAt
		v.RevokedAt = &at
	}
	if len(c.Provenance) > 0 && json.Valid(c.Provenance) {
		v.Provenance = withOrigin(c.Provenance, c.Origin)
	}
	if withPEM && len(c.DER) > 0 {
		v.Certificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
	}
	return v
}

// CertificatePage is the answer of GET /v1/certificates. NextCursor is absent
// on the last page.
type CertificatePage struct {
	Items      []CertificateView `json:"items"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

func (rt *Routes) listCertificates(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Operators.Store == nil {
		return errOperatorsNotConfigured
	}
	now := rt.d.Clock.Now()
	f, err := ParseCertificateQuery(r.URL.Query(), now)
	if err != nil {
		return err
	}
	page, next, err := rt.d.Operators.Store.ListCertificates(r.Context(), f)
	if err != nil {
		return fmt.Errorf("listing certificates: %w", err)
	}
	out := CertificatePage{Items: make([]CertificateView, 0, len(page)), NextCursor: next}
	for _, c := range page {
		out.Items = append(out.Items, certificateView(c, now, false))
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}

// Bounds on inventory query parameters.
const (
	maxQueryValue     = 2048
	maxExpiringWithin = 10 * 365 * 24 * time.Hour
)

// ParseCertificateQuery turns the query of GET /v1/certificates into a store
// filter at now. Every parameter is optional and may appear once: identity
// (exact SPIFFE ID), identity_prefix, status (active, revoked, expired),
// expiring_within (a positive Go duration), issuer, repository (the CI
// repository of the lineage's enrollment), lineage (a lineage's first
// serial), issued_since (RFC 3339),
// limit (1 to store.MaxListLimit) and cursor (opaque, from next_cursor).
// Anything else, including an unknown parameter, is a 400 bad_request *Error
// naming the parameter. A cursor that decodes badly is refused later, by the
// store, also as bad_request.
func ParseCertificateQuery(q url.Values, now time.Time) (store.CertificateFilter, error) {
	f := store.CertificateFilter{Now: now}
	for key, vals := range q {
		v, err := queryValue(key, vals)
		if err != nil {
			return f, err
		}
		switch key {
		case "identity":
			f.Identity = v
		case "identity_prefix":
			f.IdentityPrefix = v
		case "status":
			switch s := store.CertStatus(v); s {
			case store.CertActive, store.CertRevoked, store.CertExpired:
				f.Status = s
			default:
				return f, badQuery(key, "must be active, revoked or expired")
			}
		case "expiring_within":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > maxExpiringWithin {
				return f, badQuery(key, "must be a positive duration such as 24h, at most 10 years")
			}
			f.ExpiringWithin = d
		case "issuer":
			f.IssuerID = v
		case "repository":
			f.Repository = v
		case "lineage":
			sn, err := revoke.NormalizeSerial(v)
			if err != nil {
				return f, badQuery(key, "must be a serial number of 1 to 40 hex digits")
			}
			f.Lineage = sn
		case "issued_since":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, badQuery(key, "must be an RFC 3339 time such as 2025-01-02T15:04:05Z")
			}
			f.IssuedSince = t
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > store.MaxListLimit {
				return f, badQuery(key, fmt.Sprintf("must be an integer from 1 to %d", store.MaxListLimit))
			}
			f.Limit = n
		case "cursor":
			if v == "" {
				return f, badQuery(key, "must not be empty")
			}
			f.Cursor = v
		default:
			return f, badQuery(key, "is not a known parameter")
		}
	}
	return f, nil
}

// badQuery is the 400 for one query parameter; name is echoed quoted and
// clipped, as the client sent it.
// queryValue is the one value of query parameter key, or a 400 bad_request
// *Error when it is given more than once or is longer than maxQueryValue:
// the rule every query of the API follows.
func queryValue(key string, vals []string) (string, error) {
	if len(vals) != 1 {
		return "", badQuery(key, "must be given once")
	}
	if len(vals[0]) > maxQueryValue {
		return "", badQuery(key, "is too long")
	}
	return vals[0], nil
}

func badQuery(name, problem string) *Error {
	return &Error{Kind: KindInput, Reason: ReasonBadRequest,
		Detail: fmt.Sprintf("query parameter %s %s", strconv.Quote(clipString(name, 64)), problem)}
}

// serialParam normalises the {serial} path parameter (hex, any case, colons
// allowed); a malformed serial is 400 bad_request.
func serialParam(r *http.Request) (string, error) {
	sn, err := revoke.NormalizeSerial(chi.URLParam(r, "serial"))
	if err != nil {
		return "", &Error{Kind: KindInput, Reason: ReasonBadRequest,
			Detail: "the serial number must be 1 to 40 hex digits", Err: err}
	}
	return sn, nil
}

func (rt *Routes) getCertificate(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Operators.Store == nil {
		return errOperatorsNotConfigured
	}
	sn, err := serialParam(r)
	if err != nil {
		return err
	}
	c, err := rt.d.Operators.Store.GetCertificate(r.Context(), sn)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", sn, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, certificateView(c, rt.d.Clock.Now(), true))
}

// withOrigin is a renewal's provenance as the API shows it: with the
// lineage's enrollment provenance under "origin", as renewals recorded it
// before the store kept it once per lineage (store.Certificate.Origin,
// filled in for single certificates). Anything else is returned as is.
func withOrigin(prov, origin json.RawMessage) json.RawMessage {
	if len(origin) == 0 || !json.Valid(origin) {
		return prov
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(prov, &m) != nil || string(m["shape"]) != `"renewal"` || m["origin"] != nil {
		return prov
	}
	m["origin"] = origin
	out, err := json.Marshal(m)
	if err != nil {
		return prov
	}
	return out
}
