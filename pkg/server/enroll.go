package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/jsonappend"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// LeafIssuer signs already-authorised leaf requests and records them;
// *issuer.Issuer and *issuer.Current fit.
type LeafIssuer interface {
	Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error)
}

// EnrollStore is the part of the store that enrollment and renewal use: the
// replay record of provenance tokens, and what POST /v1/jwt uses too
// (JWTStore): the current certificate of a renewing workload, and the audit
// log for denials. store.Store fits.
type EnrollStore interface {
	enroll.ReplayMarker
	JWTStore
}

var _ EnrollStore = store.Store(nil)

// EnrollDeps are the collaborators of POST /v1/enroll and /v1/renew. The
// routes are served only when both are set.
type EnrollDeps struct {
	Issuer  LeafIssuer
	Records EnrollStore
}

// Reasons of enrollment and renewal beyond DESIGN.md's list.
const (
	// ReasonTokenIssuerUnavailable: the token issuer's keys cannot be fetched
	// and nothing fresh enough is cached (503; retry later).
	ReasonTokenIssuerUnavailable Reason = "token_issuer_unavailable"
	// ReasonTTLInvalid: a negative TTL.
	ReasonTTLInvalid Reason = "ttl_invalid"
	// ReasonKeyReused: a renewal CSR carries the public key of the
	// certificate being renewed; renewal requires a new key.
	ReasonKeyReused Reason = "key_reused"
)

// Audit actions of this file.
const (
	actionEnroll = "enroll"
	actionRenew  = "renew"
)

// maxRequestTTL bounds the ttl a request may name at all; the policy bounds
// it further per rule.
const maxRequestTTL = 30 * 24 * time.Hour

// CertRequest is the body of POST /v1/enroll and POST /v1/renew.
type CertRequest struct {
	// CSR is one PEM CERTIFICATE REQUEST.
	CSR string `json:"csr"`
	// TTL is a Go duration ("15m"); empty means the policy rule's default.
	TTL string `json:"ttl,omitempty"`
}

// CertResponse is the 201 answer of enroll and renew.
type CertResponse struct {
	Serial   string   `json:"serial"`
	SPIFFEID string   `json:"spiffe_id"`
	DNSNames []string `json:"dns_names,omitempty"`
	// Certificate is the leaf, PEM.
	Certificate string `json:"certificate"`
	// Chain is the intermediates from the leaf's issuer up, PEM, without the
	// root (which comes from /bundle.pem).
	Chain    string    `json:"chain"`
	NotAfter time.Time `json:"not_after"`
}

// ParseCertRequest decodes a request body strictly: one JSON object with a
// non-empty string csr and an optional ttl that is a positive Go duration of
// at most 720h; unknown fields, trailing data and anything else are refused
// with 400 bad_request. The CSR itself is checked later (enroll.ParseCSR).
func ParseCertRequest(body []byte) (csrPEM []byte, ttl time.Duration, err error) {
	bad := func(detail string) error {
		return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: detail}
	}
	csr, ttlText, ok := certRequestFast(body)
	if !ok {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var req CertRequest
		if err := dec.Decode(&req); err != nil {
			return nil, 0, bad("the body must be a JSON object {\"csr\": PEM, \"ttl\": \"15m\"} without other fields")
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, 0, bad("trailing data after the JSON object")
		}
		csr, ttlText = []byte(req.CSR), req.TTL
	}
	if len(bytes.TrimSpace(csr)) == 0 {
		return nil, 0, bad("csr is required")
	}
	if ttlText != "" {
		ttl, err = time.ParseDuration(ttlText)
		if err != nil {
			return nil, 0, bad("ttl is not a duration such as \"15m\"")
		}
		switch {
		case ttl < 0:
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLInvalid, Detail: "ttl must not be negative"}
		case ttl == 0:
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLInvalid, Detail: "ttl must be positive (omit it for the rule's default)"}
		case ttl > maxRequestTTL:
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLTooLong, Detail: "ttl exceeds 720h"}
		}
	}
	return csr, ttl, nil
}

// certRequestFast reads the body clients send (`ca enroll` and `ca renew`
// marshal a CertRequest): {"csr":"...","ttl":"..."}, ttl optional, no
// whitespace but after the object, strings of printable ASCII whose only
// escape is \n. It reads it in one pass and one copy of the CSR, where
// encoding/json's decoder scans the body twice and copies it three times;
// ok is false for any other body, which the decoder reads. It yields what
// the decoder yields (TestParseCertRequestFastPathMatchesTheDecoder and
// its fuzz target).
func certRequestFast(body []byte) (csr []byte, ttl string, ok bool) {
	rest, ok := bytes.CutPrefix(body, []byte(`{"csr":"`))
	if !ok {
		return nil, "", false
	}
	if csr, rest, ok = plainJSONString(rest); !ok {
		return nil, "", false
	}
	if after, found := bytes.CutPrefix(rest, []byte(`,"ttl":"`)); found {
		var t []byte
		if t, rest, ok = plainJSONString(after); !ok {
			return nil, "", false
		}
		ttl = string(t)
	}
	if rest, ok = bytes.CutPrefix(rest, []byte("}")); !ok {
		return nil, "", false
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, "", false
		}
	}
	return csr, ttl, true
}

// plainJSONString reads a JSON string's content up to its closing quote
// when it is printable ASCII with no escape but \n, and returns it
// unescaped and what follows the quote.
func plainJSONString(b []byte) (s, rest []byte, ok bool) {
	newlines := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s = make([]byte, 0, i-newlines)
			for j := 0; j < i; j++ {
				if b[j] == '\\' {
					s = append(s, '\n')
					j++ // the n
					continue
				}
				s = append(s, b[j])
			}
			return s, b[i+1:], true
		case c == '\\':
			if i+1 == len(b) || b[i+1] != 'n' {
				return nil, nil, false
			}
			i++
			newlines++
		case c < 0x20 || c > 0x7e:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// lineageRevoker is the operators' revoker as the Renewer needs it for
// renewal.on_reuse: revoke_lineage, or nil when there is none.
func lineageRevoker(r CertificateRevoker) enroll.LineageRevoker {
	if r == nil {
		return nil
	}
	return r
}

// enrollment serves /v1/enroll and /v1/renew.
type enrollment struct {
	d         Deps
	decider   *enroll.Decider
	renewer   *enroll.Renewer
	decisions *prometheus.CounterVec
	reuse     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	denials   *denialAudit // bounds audit appends of unauthenticated denials
	load      *admission   // bounds the enrollments and renewals in flight (overload.go)
}

// newEnrollment returns nil when d.Enroll is not set.
func newEnrollment(d Deps) (*enrollment, error) {
	if d.Enroll.Issuer == nil || d.Enroll.Records == nil {
		return nil, nil
	}
	e := &enrollment{
		d:       d,
		decider: enroll.NewDecider(d.Policy, d.Verifier, d.Enroll.Records, d.Clock),
		renewer: enroll.NewRenewer(d.Policy, d.Enroll.Records, lineageRevoker(d.Operators.Revoker), d.Clock),
		reuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_renewal_reuse_total",
			Help: "Renewals refused because the certificate was already renewed (certificate_superseded: possibly two holders of one key), by the policy's renewal.on_reuse (deny, revoke_lineage).",
		}, []string{"on_reuse"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_enroll_decisions_total",
			Help: "Enrollment and renewal answers, by action (enroll, renew), policy rule (\"\" before one matched), decision (allow, deny) and reason.",
		}, []string{"action", "rule", "decision", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ca_enroll_duration_seconds",
			Help:    "Time to answer POST /v1/enroll and /v1/renew (token and CSR checks, policy, issuance), by action and decision.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"action", "decision"}),
	}
	e.load = newAdmission(d.MaxInFlightEnrollments)
	for _, c := range []prometheus.Collector{e.decisions, e.duration, e.reuse, e.load.shed, e.load.inFlight} {
		if err := d.Metrics.Register(c); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// mountEnroll adds the enrollment routes to the API listener.
func (rt *Routes) mountEnroll(r chi.Router) {
	if rt.enroll == nil {
		return
	}
	r.Method(http.MethodPost, "/v1/enroll", rt.edge.handle(rt.enroll.admit(actionEnroll, rt.enroll.enroll)))
	r.Method(http.MethodPost, "/v1/renew", rt.edge.handle(rt.enroll.admit(actionRenew, rt.enroll.renew)))
}

// decisionInfo is what the decision's audit record and log line say about
// who asked for what.
type decisionInfo struct {
	actor, target string
	details       map[string]string
	// dest is the identity asked for when target is something else (the
	// renewed serial); serial and issuer are the issued certificate's.
	dest, serial, issuer string
	start                time.Time
	// authenticated is set once the requester proved who it is (a verified
	// token, or a current client certificate of this CA); denials before
	// that are audited within the denial rate limit (denialaudit.go).
	authenticated bool
}

// enroll is POST /v1/enroll: a provenance token and a CSR in, a certificate
// out; every denial is audited.
func (e *enrollment) enroll(w http.ResponseWriter, r *http.Request) error {
	info := &decisionInfo{actor: "anonymous", details: map[string]string{}, start: time.Now()}
	err := e.enrollOnce(w, r, info)
	e.done(r, actionEnroll, info, err)
	return err
}

func (e *enrollment) enrollOnce(w http.ResponseWriter, r *http.Request, info *decisionInfo) error {
	tok, ok := bearerToken(r)
	if !ok {
		return &Error{Kind: KindBearerMissing, Reason: ReasonUnauthorized,
			Detail: "enrollment needs Authorization: Bearer <provenance token>"}
	}
	body, err := requestBody(r)
	if err != nil {
		return err
	}
	csr, ttl, err := ParseCertRequest(body)
	if err != nil {
		return err
	}
	dec, err := e.decider.Decide(r.Context(), tok, csr, ttl)
	if err != nil {
		var ee *enroll.Error
		if errors.As(err, &ee) {
			info.fromEnrollError(ee)
			info.authenticated = ee.Subject != "" // set only once the token was verified
		}
		return err
	}
	info.authenticated = true
	if dec.Subject != "" {
		info.actor = dec.Subject
	}
	info.details["token_issuer"], info.details["subject"], info.details["rule"] = dec.TokenIssuer, dec.Subject, dec.Rule
	info.target = dec.SPIFFEID
	if err := precheckHold(r.Context(), e.d.Identities.Holds, dec.SPIFFEID); err != nil {
		return err
	}
	issued, err := e.d.Enroll.Issuer.Issue(r.Context(), issuer.Request{
		PublicKey: dec.PublicKey, SPIFFEID: dec.SPIFFEID, DNSNames: dec.DNSNames, TTL: dec.TTL,
		Provenance: dec.Provenance, PolicyRule: dec.Rule, PolicyVersion: dec.PolicyVersion,
		Repository: dec.Repository, TokenIssuer: dec.TokenIssuer, Subject: dec.Subject,
		Actor: info.actor, RequestID: RequestID(r.Context()), Action: "issue",
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

// fromEnrollError copies what the decision got to into the denial record.
// Never the token.
func (info *decisionInfo) fromEnrollError(ee *enroll.Error) {
	if ee.Subject != "" {
		info.actor = ee.Subject
	} else if ee.Issuer != "" {
		info.actor = "token issuer " + ee.Issuer
	}
	for k, v := range map[string]string{
		"token_issuer": ee.Issuer, "subject": ee.Subject, "rule": ee.Rule, "check": ee.Check,
		"detail": ee.Detail, "policy_version": ee.PolicyVersion,
	} {
		if v != "" {
			info.details[k] = v
		}
	}
}

// done counts and times the answer, logs the decision line and, for a
// refusal, appends the denial record. Successful issuance is audited by the
// issuer, in the issuing transaction. A denial that cannot be recorded is
// still refused; the failure is logged.
func (e *enrollment) done(r *http.Request, action string, info *decisionInfo, err error) {
	pol := e.d.Policy.Load()
	line := decisionLine{
		action: action, source: info.actor, destination: info.dest, serial: info.serial, issuer: info.issuer,
		rule: info.details["rule"], policyVersion: info.details["policy_version"], tokenIssuer: info.details["token_issuer"],
		renewedFrom: info.details["renewed_from"],
	}
	if line.destination == "" {
		line.destination = info.target
	}
	if line.policyVersion == "" {
		line.policyVersion = pol.Version()
	}
	if err == nil {
		e.decisions.WithLabelValues(action, line.rule, "allow", "").Inc()
		e.duration.WithLabelValues(action, "allow").Observe(time.Since(info.start).Seconds())
		line.decision, line.status = "allow", http.StatusCreated
		logDecision(r.Context(), e.d.Log, r, line)
		return
	}
	kind, reason, detail := classify(err)
	status := kind.Status()
	noteReservedName(info, err)
	var notRecorded *issuer.NotRecordedError
	if errors.As(err, &notRecorded) {
		// The HSM signed, the database did not record: say which
		// certificate was discarded (issue 18).
		info.details["signed_not_recorded"] = notRecorded.Serial
	}
	e.decisions.WithLabelValues(action, line.rule, "deny", string(reason)).Inc()
	e.duration.WithLabelValues(action, "deny").Observe(time.Since(info.start).Seconds())
	line.decision, line.status, line.reason, line.detail = "deny", status, string(reason), detail
	if d := info.details["detail"]; d != "" {
		line.detail = d
	}
	logDecision(r.Context(), e.d.Log, r, line)
	if _, ok := info.details["detail"]; !ok && detail != "" {
		info.details["detail"] = detail
	}
	entry, aerr := e.denials.record(r, e.d.Enroll.Records, action, info, status, func(raw json.RawMessage) store.AuditEntry {
		rec := store.AuditEntry{
			Time: e.d.Clock.Now(), Actor: clip(info.actor, 256), Action: action, Target: clip(info.target, 256),
			Decision: "deny", Reason: string(reason), PolicyVersion: pol.Version(),
			RequestID: RequestID(r.Context()), Details: raw,
		}
		if v := info.details["policy_version"]; v != "" {
			rec.PolicyVersion = v
		}
		return rec
	})
	if aerr != nil {
		e.d.Log.ErrorContext(r.Context(), "recording a denial in the audit log failed",
			"request_id", entry.RequestID, "action", action, "reason", entry.Reason, "err", aerr)
	}
}

// bearerToken returns the token of an `Authorization: Bearer` header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// writeIssued answers 201 with the certificate and its chain: a
// CertResponse, written as json.NewEncoder(w).Encode writes it, with the
// PEM blocks as pem.EncodeToMemory writes them. It appends the PEM straight
// into the JSON string instead of encoding each certificate and then the
// whole answer (TestWriteIssuedWritesWhatTheEncoderWrote holds it to that).
func writeIssued(w http.ResponseWriter, is *issuer.Issued, spiffeID string) error {
	size := 192 + len(is.Serial) + len(spiffeID) + pemJSONLen(len(is.DER))
	for _, der := range is.Chain {
		size += pemJSONLen(len(der))
	}
	for _, n := range is.Certificate.DNSNames {
		size += len(n) + 3
	}
	b := make([]byte, 0, size)
	b = append(b, `{"serial":`...)
	b = jsonappend.String(b, is.Serial)
	b = append(b, `,"spiffe_id":`...)
	b = jsonappend.String(b, spiffeID)
	if len(is.Certificate.DNSNames) > 0 {
		b = append(b, `,"dns_names":[`...)
		for i, n := range is.Certificate.DNSNames {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonappend.String(b, n)
		}
		b = append(b, ']')
	}
	b = append(b, `,"certificate":"`...)
	b = appendPEMCertificateJSON(b, is.DER)
	b = append(b, `","chain":"`...)
	for _, der := range is.Chain {
		b = appendPEMCertificateJSON(b, der)
	}
	b = append(b, `","not_after":`...)
	notAfter, err := is.NotAfter.UTC().MarshalJSON()
	b = append(append(b, notAfter...), "}\n"...)
	h := w.Header()
	h.Set("Location", "/v1/certificates/"+is.Serial)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	if err != nil { // as the encoder: the status is out, the body is not
		return err
	}
	_, err = w.Write(b)
	return err
}

// appendPEMCertificateJSON appends der as pem.EncodeToMemory encodes a
// CERTIFICATE block, inside a JSON string: its newlines escaped (the
// base64 alphabet and the armour need no other escaping).
func appendPEMCertificateJSON(b, der []byte) []byte {
	b = append(b, `-----BEGIN CERTIFICATE-----\n`...)
	// 48 bytes are one 64-character line, pem's line length.
	for len(der) > 0 {
		n := min(len(der), 48)
		b = base64.StdEncoding.AppendEncode(b, der[:n])
		b = append(b, `\n`...)
		der = der[n:]
	}
	return append(b, `-----END CERTIFICATE-----\n`...)
}

// pemJSONLen is the length appendPEMCertificateJSON appends for n bytes.
func pemJSONLen(n int) int {
	return len(`-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n`) + base64.StdEncoding.EncodedLen(n) + 2*((n+47)/48)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
