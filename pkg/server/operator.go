package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// OperatorStore is what the operator endpoints read (certificates, the audit
// log, the grouped denials of GET /v1/denials), and where their denials are
// appended; store.Store fits.
type OperatorStore interface {
	DenialStore
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, string, error)
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]store.AuditEntry, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// CertificateRevoker revokes one certificate and reports an earlier
// revocation instead of changing it, or a certificate and its descendants
// (RevokeMany); *revoke.Revoker fits.
type CertificateRevoker interface {
	Revoke(ctx context.Context, serial, reason, actor, requestID string) (store.Certificate, bool, error)
	RevokeMany(ctx context.Context, scope store.RevokeScope, reason, actor, requestID string) ([]store.Certificate, error)
}

// OperatorDeps are what the operator endpoints need besides the policy and
// the token verifier (Deps.Policy, Deps.Verifier; operator tokens are checked
// for signature, issuer, times and audience, and never replay-marked: an
// operator presents the same token until it expires). When a field is nil
// the operator routes still exist and still refuse the unauthorised, but an
// authorised request fails with a 500.
type OperatorDeps struct {
	Store   OperatorStore
	Revoker CertificateRevoker
}

var errOperatorsNotConfigured = errors.New("server: operator endpoints are not configured (Deps.Operators)")

// AuthMethod is how an operator authenticated.
type AuthMethod string

// Operator authentication methods.
const (
	AuthBearer     AuthMethod = "bearer"             // a JWT from an operator token issuer
	AuthClientCert AuthMethod = "client_certificate" // an mTLS client certificate whose SPIFFE ID has a role
)

// Operator is an authenticated operator, as the request context carries it
// once requireRole let the request through.
type Operator struct {
	// Actor names the operator in the audit log: "<token issuer>:<sub>" for a
	// bearer token, the SPIFFE ID for a client certificate.
	Actor  string
	Method AuthMethod
	// TokenIssuer and Subject are set for bearer tokens.
	TokenIssuer, Subject string
	// SPIFFEID and Serial are set for client certificates.
	SPIFFEID, Serial string
	// Roles are what the policy grants, with admin expanded.
	Roles []policy.Role
	// PolicyVersion is the version of the policy that granted them.
	PolicyVersion string
}

// Has tells whether the operator holds role.
func (o *Operator) Has(role policy.Role) bool { return policy.HasRole(o.Roles, role) }

const operatorKey ctxKey = 100

// OperatorFrom returns the operator authenticated for this request, if any.
// Every handler mounted behind requireRole can rely on it being there.
func OperatorFrom(ctx context.Context) (*Operator, bool) {
	o, ok := ctx.Value(operatorKey).(*Operator)
	return o, ok && o != nil
}

// authFailure is why a request is not authenticated: the detail shown to the
// client and the fields recorded with the denial.
type authFailure struct {
	detail      string
	actor       string // what is known of who tried, or ""
	method      AuthMethod
	tokenIssuer string
	tokenReason string // the enroll reason code for a refused token
	// forgery is set for a client certificate that chains to a trusted
	// issuer but is not the one recorded under its serial.
	forgery bool
	cause   error
}

// ourFault returns the error to answer with when authentication failed
// because a dependency is unavailable (the token issuer's keys, the
// database), or nil when it is the credentials' fault (a 401).
func (f *authFailure) ourFault() error {
	if f.cause == nil {
		return nil
	}
	if f.tokenReason == enroll.ReasonTokenIssuerUnavailable {
		return &Error{Kind: KindUnavailable, Reason: ReasonTokenIssuerUnavailable,
			Detail: "the operator token issuer's keys are unavailable; retry later", Err: f.cause}
	}
	if (f.tokenReason == "" || f.tokenReason == enroll.ReasonInternal) && !errors.Is(f.cause, errOperatorsNotConfigured) {
		return fmt.Errorf("operator authentication: %w", f.cause)
	}
	return nil
}

// operatorIdentity authenticates the request: a bearer token if there is an
// Authorization header, else a verified client certificate. Roles may be
// empty (authenticated, not authorised).
func (rt *Routes) operatorIdentity(r *http.Request, pol *policy.Policy) (*Operator, *authFailure) {
	if pol == nil {
		return nil, &authFailure{detail: "no operator policy is loaded"}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		return rt.bearerOperator(r, pol, h)
	}
	if id := ClientSPIFFEID(r); id != "" {
		return rt.certOperator(r, pol, id)
	}
	return nil, &authFailure{detail: "operator credentials required: a bearer token or a client certificate"}
}

func (rt *Routes) bearerOperator(r *http.Request, pol *policy.Policy, header string) (*Operator, *authFailure) {
	scheme, raw, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return nil, &authFailure{detail: "the Authorization header is not a bearer token", method: AuthBearer, tokenReason: enroll.ReasonTokenMalformed}
	}
	tok, err := rt.d.Verifier.Verify(r.Context(), pol, raw)
	if err != nil {
		f := &authFailure{detail: "operator token refused", method: AuthBearer, tokenReason: enroll.Reason(err), cause: err}
		var e *enroll.Error
		if errors.As(err, &e) {
			f.detail += ": " + e.Detail
			f.tokenIssuer = e.Issuer
			if e.Issuer != "" && e.Subject != "" {
				f.actor = e.Issuer + ":" + e.Subject
			}
		}
		return nil, f
	}
	actor := tok.IssuerName + ":" + tok.Subject
	if !pol.OperatorIssuer(tok.IssuerName) {
		return nil, &authFailure{
			detail: fmt.Sprintf("tokens of %q are not operator credentials", tok.IssuerName),
			actor:  actor, method: AuthBearer, tokenIssuer: tok.IssuerName, tokenReason: "not_operator_issuer",
		}
	}
	return &Operator{
		Actor: actor, Method: AuthBearer, TokenIssuer: tok.IssuerName, Subject: tok.Subject,
		Roles: pol.Roles(tok.IssuerName, tok.Claims), PolicyVersion: pol.Version(),
	}, nil
}

// certOperator trusts the TLS layer for the chain (it verified it against the
// CA's trust anchors) and, like the workload paths (currentClientCertificate),
// accepts only the very certificate the CA recorded under that serial (same
// DER), active and unexpired; the role comes from the recorded SPIFFE ID,
// which must be the presented one. A certificate that chains to a trusted
// issuer but is not the recorded one (a borrowed serial, a different SPIFFE
// ID) is a possible forgery: 401, and the denial says so.
func (rt *Routes) certOperator(r *http.Request, pol *policy.Policy, id string) (*Operator, *authFailure) {
	f := &authFailure{actor: id, method: AuthClientCert}
	if rt.d.Operators.Store == nil {
		f.detail, f.cause = "client certificates are not accepted here", errOperatorsNotConfigured
		return nil, f
	}
	info := &decisionInfo{details: map[string]string{}}
	cur, rec, err := currentClientCertificate(r, rt.d.Operators.Store, rt.d.Clock, info,
		"operator credentials required: a bearer token or a client certificate")
	var e *Error
	switch {
	case err == nil && (rec.SPIFFEID == "" || rec.SPIFFEID != id):
		f.detail, f.forgery = "the client certificate's SPIFFE ID is not the one recorded under its serial", true
		return nil, f
	case err == nil:
	case errors.As(err, &e):
		f.detail = e.Detail
		// A certificate that chains to our anchors under a recorded serial
		// but with other bytes was signed by a trusted key outside the
		// CA's records.
		f.forgery = cur != nil && rec.Serial != "" && !bytes.Equal(rec.DER, cur.Raw)
		return nil, f
	default:
		// Fail closed; ourFault makes it a 503 (or 500), not a 401.
		f.detail, f.cause = "the client certificate's status cannot be checked", err
		return nil, f
	}
	return &Operator{
		Actor: rec.SPIFFEID, Method: AuthClientCert, SPIFFEID: rec.SPIFFEID, Serial: rec.Serial,
		Roles: pol.RolesForSPIFFEID(rec.SPIFFEID), PolicyVersion: pol.Version(),
	}, nil
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// requireRole lets a request through only for an operator holding want, with
// the *Operator in its context (OperatorFrom); otherwise it answers the
// problem authorizeOperator returns. Mount it after routing (chi's With), so
// the route pattern is known to the audit entry.
func (rt *Routes) requireRole(want policy.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			op, err := rt.authorizeOperator(w, r, want)
			if err != nil {
				rt.edge.fail(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey, op)))
		})
	}
}

// authorizeOperator authenticates r as an operator and checks that it holds
// want. It returns a *Error: 401 unauthorized (no or bad credentials, kind
// KindBearerMissing, so the answer carries WWW-Authenticate) or 403 forbidden (authenticated, role missing),
// after appending an "authz" deny entry to the audit log naming the actor,
// the route and why.
func (rt *Routes) authorizeOperator(w http.ResponseWriter, r *http.Request, want policy.Role) (*Operator, error) {
	var pol *policy.Policy
	if rt.d.Policy != nil {
		pol = rt.d.Policy.Load()
	}
	op, fail := rt.operatorIdentity(r, pol)
	if fail != nil {
		if err := fail.ourFault(); err != nil {
			// Not the caller's fault: the IdP's keys or the database are
			// unavailable. Refused all the same, as a 503 to retry.
			rt.d.Log.WarnContext(r.Context(), "operator authentication failed on our side",
				"request_id", RequestID(r.Context()), "err", fail.cause)
			kind, reason, _ := classify(err)
			rt.operatorDenied(r, pol, want, kind, reason, fail)
			return nil, err
		}
		rt.operatorDenied(r, pol, want, KindBearerMissing, ReasonUnauthorized, fail)
		return nil, &Error{Kind: KindBearerMissing, Reason: ReasonUnauthorized, Detail: fail.detail, Err: fail.cause}
	}
	if !op.Has(want) {
		rt.operatorDenied(r, pol, want, KindPolicy, ReasonForbidden, &authFailure{
			actor: op.Actor, method: op.Method, tokenIssuer: op.TokenIssuer,
		}, op.Roles...)
		return nil, &Error{Kind: KindPolicy, Reason: ReasonForbidden,
			Detail: fmt.Sprintf("this operation needs the %s role", want)}
	}
	rt.ops.allowed.Inc()
	return op, nil
}

// denialDetails is the structured part of an authz deny audit entry.
type denialDetails struct {
	Method       string        `json:"method"`
	Route        string        `json:"route"`
	Path         string        `json:"path"`
	RequiredRole policy.Role   `json:"required_role"`
	Auth         AuthMethod    `json:"auth,omitempty"`
	TokenIssuer  string        `json:"token_issuer,omitempty"`
	TokenReason  string        `json:"token_reason,omitempty"`
	Roles        []policy.Role `json:"roles,omitempty"`
	Detail       string        `json:"detail,omitempty"`
	// PossibleForgery marks a client certificate that chains to a trusted
	// issuer but is not the certificate recorded under its serial.
	PossibleForgery bool `json:"possible_forgery,omitempty"`
	// Unaudited counts denials before this one that were not appended
	// because of the denial audit rate limit (shared with unauthenticated
	// enroll, renew and jwt denials, see denialaudit.go).
	Unaudited int64 `json:"unaudited_before,omitempty"`
}

// operatorDenied records a refused operator request: always in the log and
// metrics, and in the audit log unless the denial rate limit is exhausted
// (unauthenticated floods must not be able to monopolise audit appends); the
// next audited denial then says how many were skipped. A failing append is
// logged and does not change the answer.
func (rt *Routes) operatorDenied(r *http.Request, pol *policy.Policy, want policy.Role, kind Kind, reason Reason, f *authFailure, roles ...policy.Role) {
	rt.ops.denied.WithLabelValues(string(reason)).Inc()
	route := routePattern(r)
	actor := f.actor
	if actor == "" {
		actor = "anonymous"
	}
	ctx := r.Context()
	status := kind.Status()
	line := decisionLine{
		action: "authz", decision: "deny", reason: string(reason), status: status, source: actor,
		destination: r.Method + " " + route, tokenIssuer: f.tokenIssuer, detail: f.detail,
	}
	if f.tokenReason != "" {
		line.detail = f.tokenReason + ": " + f.detail
	}
	if pol != nil {
		line.policyVersion = pol.Version()
	}
	logDecision(ctx, rt.d.Log, r, line)
	if f.forgery {
		rt.d.Log.WarnContext(ctx, "possible forged operator client certificate: it chains to a trusted issuer but is not the one recorded under its serial",
			"request_id", RequestID(ctx), "actor", actor, "route", route)
	}
	// A possible forgery is always audited: only a holder of a trusted
	// issuer key can produce one, so it cannot be used to flood the log.
	skipped, ok := rt.ops.limiter.take(rt.d.Clock.Now())
	if !ok && !f.forgery {
		rt.ops.unaudited.Inc()
		return
	}
	if rt.d.Operators.Store == nil {
		return
	}
	details, _ := json.Marshal(denialDetails{
		Method: r.Method, Route: route, Path: clipString(r.URL.Path, 256), RequiredRole: want, Auth: f.method,
		TokenIssuer: f.tokenIssuer, TokenReason: f.tokenReason, Roles: roles, Detail: f.detail, Unaudited: skipped,
		PossibleForgery: f.forgery,
	})
	e := store.AuditEntry{
		Time: rt.d.Clock.Now(), Actor: clipString(actor, 512), Action: "authz", Target: r.Method + " " + route,
		Decision: "deny", Reason: string(reason), RequestID: RequestID(ctx), Details: details,
	}
	if pol != nil {
		e.PolicyVersion = pol.Version()
	}
	// The denial is recorded even if the client hangs up, within a short
	// bound when the store is what failed (the partition drill: 7 s).
	actx, cancel := denialAuditContext(ctx, reason)
	defer cancel()
	if _, err := rt.d.Operators.Store.AppendAudit(actx, e); err != nil {
		rt.d.Log.ErrorContext(ctx, "recording an operator denial failed", "request_id", RequestID(ctx), "err", err)
	}
}

func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		return rc.RoutePattern()
	}
	return r.URL.Path
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// operatorRoute mounts h at method+pattern behind requireRole(role). Every
// operator endpoint is mounted through it.
func (rt *Routes) operatorRoute(r chi.Router, method, pattern string, role policy.Role, h HandlerFunc) {
	r.With(rt.requireRole(role)).Method(method, pattern, rt.edge.handle(h))
}

// operatorState is the operator edge's per-process state: metrics and the
// denial audit limiter.
type operatorState struct {
	allowed   prometheus.Counter
	denied    *prometheus.CounterVec
	unaudited prometheus.Counter
	limiter   *denialLimiter
}

// Denial audit rate limit: a burst of denialBurst, refilled at denialRate
// per second, per process.
const (
	denialRate  = 20
	denialBurst = 100
)

func newOperatorState(reg prometheus.Registerer) (*operatorState, error) {
	s := &operatorState{
		allowed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ca_operator_requests_allowed_total",
			Help: "Operator requests that passed authentication and authorisation.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_operator_requests_denied_total",
			Help: "Operator requests refused, by reason (unauthorized, forbidden, or the unavailable dependency).",
		}, []string{"reason"}),
		unaudited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ca_operator_denials_unaudited_total",
			Help: "Operator denials not appended to the audit log because of the denial rate limit.",
		}),
		limiter: &denialLimiter{rate: denialRate, burst: denialBurst},
	}
	for _, c := range []prometheus.Collector{s.allowed, s.denied, s.unaudited} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// denialLimiter is a token bucket over the injected clock.
type denialLimiter struct {
	rate, burst float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	started bool
	skipped int64
}

// take spends one token. ok is false when none is left; otherwise skipped is
// how many calls were refused since the previous successful one.
func (l *denialLimiter) take(now time.Time) (skipped int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.tokens, l.last, l.started = l.burst, now, true
	}
	if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens = min(l.burst, l.tokens+el*l.rate)
		l.last = now
	}
	if l.tokens < 1 {
		l.skipped++
		return 0, false
	}
	l.tokens--
	skipped, l.skipped = l.skipped, 0
	return skipped, true
}
