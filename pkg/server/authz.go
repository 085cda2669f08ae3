package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Reasons of the service-to-service authorization routes (issue 19). The
// decision reasons themselves (allowed, policy_not_allowed, ...) are in the
// body of a 200 decision, not problems; they are listed here so the OpenAPI
// enum and the dashboard know them.
const (
	ReasonAuthzAllowed            Reason = authz.ReasonAllowed
	ReasonAuthzOverride           Reason = authz.ReasonOverride
	ReasonAuthzNoWritePermission  Reason = authz.ReasonNoWritePermission
	ReasonAuthzNotAllowed         Reason = authz.ReasonNotAllowed
	ReasonAuthzNoRule             Reason = authz.ReasonNoRule
	ReasonAuthzConditionFalse     Reason = authz.ReasonConditionFalse
	ReasonAuthzIdentityUnverified Reason = authz.ReasonIdentityUnverified
	ReasonAuthzPathInvalid        Reason = authz.ReasonPathInvalid
	// ReasonOverrideNotPending: approving an override that is not pending
	// (already approved, ended or expired), or ending one that is neither
	// pending nor active (409).
	ReasonOverrideNotPending Reason = "override_not_pending"
	// ReasonOverrideInvalid: an override request names no service or
	// endpoint of the policy, or its ttl is not a duration up to 24h (400).
	ReasonOverrideInvalid Reason = "override_invalid"
)

// AuthzReasons lists the reasons of this file, for AllReasons' merge.
func AuthzReasons() []Reason {
	return []Reason{
		ReasonAuthzAllowed, ReasonAuthzOverride, ReasonAuthzNoWritePermission, ReasonAuthzNotAllowed,
		ReasonAuthzNoRule, ReasonAuthzConditionFalse, ReasonAuthzIdentityUnverified, ReasonAuthzPathInvalid,
		ReasonOverrideNotPending, ReasonOverrideInvalid,
	}
}

// AuthzPolicySource yields the current authorization policy; `ca serve`
// swaps it on SIGHUP. Handlers Load it once per request.
type AuthzPolicySource interface {
	Load() *authz.Policy
}

// AuthzPolicySigner signs the payload of GET /v1/authz/policy as a compact
// JWS (typ authz-policy+jwt, x5c: the CA-internal policy-signing
// certificate and its issuer).
type AuthzPolicySigner interface {
	SignAuthzPolicy(ctx context.Context, payload []byte) (string, error)
}

// AuthzStore is what the authorization routes persist: overrides, report
// aggregates, audit entries, and the certificate records that authenticate
// services.
type AuthzStore interface {
	store.AuthzStore
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
}

// AuthzDeps are the collaborators of /v1/authz/*. The routes are mounted
// only when Policy is set.
type AuthzDeps struct {
	Policy AuthzPolicySource
	Store  AuthzStore
	Signer AuthzPolicySigner
	// RefreshHint is the refresh_hint_seconds of the served policy (30s
	// when zero).
	RefreshHint time.Duration
}

// Body and list limits.
const (
	maxAuthzDecideBody   = 4 << 10
	maxAuthzOverrideBody = 4 << 10
	maxAuthzReportBody   = 64 << 10
	maxAuthzReportRows   = 1000
	maxAuthzPolicyCache  = 4096
	// A report's window_end may be at most maxReportSkew ahead of the CA's
	// clock and maxReportAge behind it (a service that buffered reports
	// through a CA outage), so no report lands in a far minute.
	maxReportSkew = 5 * time.Minute
	maxReportAge  = 24 * time.Hour
)

// Audit actions of the authorization routes.
const (
	ActionAuthzDecide          = "authz_decide"
	ActionAuthzReport          = "authz_report"
	ActionAuthzPolicyFetch     = "authz_policy_fetch"
	ActionAuthzOverrideRequest = "authz_override_request"
	ActionAuthzOverrideApprove = "authz_override_approve"
	ActionAuthzOverrideEnd     = "authz_override_end"
)

// authzState is the per-process state of the authorization routes: the
// latest signed policy served to each service, so that an unchanged policy
// keeps its issued_at and ETag, and a change, even back to content served
// before, gets an issued_at no older than the last one (services refuse a
// policy older than the one they enforce).
type authzState struct {
	mu    sync.Mutex
	cache map[string]signedPolicy // by service
}

type signedPolicy struct {
	key      string // hash of the content signed
	issuedAt time.Time
	jws      string
	etag     string
}

// mountAuthz adds the /v1/authz routes when an authorization policy is
// configured.
func (rt *Routes) mountAuthz(r chi.Router) {
	if rt.d.Authz.Policy == nil {
		return
	}
	if rt.authz == nil {
		rt.authz = &authzState{cache: map[string]signedPolicy{}}
	}
	r.Method(http.MethodGet, "/v1/authz/policy", rt.edge.handle(rt.authzPolicy))
	r.Method(http.MethodPost, "/v1/authz/decide", rt.edge.handle(rt.authzDecide))
	r.Method(http.MethodPost, "/v1/authz/reports", rt.edge.handle(rt.authzReports))
	rt.operatorRoute(r, http.MethodPost, "/v1/authz/overrides", policy.RoleAdmin, rt.requestOverride)
	rt.operatorRoute(r, http.MethodPost, "/v1/authz/overrides/{id}/approve", policy.RoleAdmin, rt.approveOverride)
	rt.operatorRoute(r, http.MethodPost, "/v1/authz/overrides/{id}/end", policy.RoleAdmin, rt.endOverride)
	rt.operatorRoute(r, http.MethodGet, "/v1/authz/overrides", policy.RoleAuditor, rt.listOverrides)
}

var errAuthzNotConfigured = errors.New("server: the authorization routes have no store (Deps.Authz.Store)")

// authzCaller authenticates a service by its current client certificate and
// finds its service in pol: 401 unauthorized without a current certificate,
// 404 not_found when no service of the policy has its identity.
func (rt *Routes) authzCaller(r *http.Request, pol *authz.Policy) (id, service string, err error) {
	if rt.d.Authz.Store == nil {
		return "", "", errAuthzNotConfigured
	}
	info := &decisionInfo{actor: "anonymous", details: map[string]string{}}
	_, rec, err := currentClientCertificate(r, rt.d.Authz.Store, rt.d.Clock, info,
		"the authorization routes need the service's current certificate as the TLS client certificate")
	if err != nil {
		return "", "", err
	}
	id = ClientSPIFFEID(r)
	if id == "" || rec.SPIFFEID != id {
		return "", "", &Error{Kind: KindCredential, Reason: ReasonUnauthorized,
			Detail: "the client certificate carries no SPIFFE ID of its record"}
	}
	name, ok := pol.ServiceByIdentity(id)
	if !ok {
		return id, "", &Error{Kind: KindNotFound, Reason: ReasonNotFound,
			Detail: "no service of the authorization policy has the identity " + id}
	}
	return id, name, nil
}

// activeOverrides returns the overrides of service active now, as pkg/authz
// takes them.
func (rt *Routes) activeOverrides(ctx context.Context, service string, now time.Time) ([]authz.Override, error) {
	list, err := rt.d.Authz.Store.ActiveAuthzOverrides(ctx, service, now)
	if err != nil {
		return nil, err
	}
	out := make([]authz.Override, 0, len(list))
	for _, o := range list {
		out = append(out, authz.Override{ID: o.ID, Source: o.Source, Service: o.Service, Endpoint: o.Endpoint, Until: o.Until})
	}
	return out, nil
}

// AuthzPolicyPayload is the payload of the JWS GET /v1/authz/policy serves.
type AuthzPolicyPayload struct {
	Service            string           `json:"service"`
	Identity           string           `json:"identity"`
	Version            string           `json:"version"`
	Policy             string           `json:"policy"`
	Overrides          []authz.Override `json:"overrides"`
	IssuedAt           time.Time        `json:"issued_at"`
	RefreshHintSeconds int              `json:"refresh_hint_seconds"`
}

// authzPolicy is GET /v1/authz/policy: the caller's part of the policy and
// its active overrides, signed. The same content keeps its issued_at, JWS
// and ETag in this process, so If-None-Match answers 304.
func (rt *Routes) authzPolicy(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Authz.Signer == nil {
		return errors.New("server: no authorization policy signer (Deps.Authz.Signer)")
	}
	pol := rt.d.Authz.Policy.Load()
	id, service, err := rt.authzCaller(r, pol)
	if err != nil {
		return err
	}
	now := rt.d.Clock.Now()
	ovr, err := rt.activeOverrides(r.Context(), service, now)
	if err != nil {
		return err
	}
	part, err := pol.ForService(service)
	if err != nil {
		return err
	}
	hint := rt.d.Authz.RefreshHint
	if hint <= 0 {
		hint = 30 * time.Second
	}
	content, _ := json.Marshal([]any{service, id, pol.Version(), part, ovr})
	sum := sha256.Sum256(content)
	key := hex.EncodeToString(sum[:])
	rt.authz.mu.Lock()
	sp, ok := rt.authz.cache[service]
	rt.authz.mu.Unlock()
	if !ok || sp.key != key {
		issued := now.UTC().Truncate(time.Second)
		if ok && issued.Before(sp.issuedAt) {
			issued = sp.issuedAt // never older than what this service was served
		}
		payload, err := json.Marshal(AuthzPolicyPayload{
			Service: service, Identity: id, Version: pol.Version(), Policy: string(part), Overrides: ovr,
			IssuedAt: issued, RefreshHintSeconds: int(hint / time.Second),
		})
		if err != nil {
			return err
		}
		jws, err := rt.d.Authz.Signer.SignAuthzPolicy(r.Context(), payload)
		if err != nil {
			return err
		}
		ps := sha256.Sum256(payload)
		sp = signedPolicy{key: key, issuedAt: issued, jws: jws, etag: `"` + hex.EncodeToString(ps[:]) + `"`}
		rt.authz.mu.Lock()
		if len(rt.authz.cache) >= maxAuthzPolicyCache {
			clear(rt.authz.cache)
		}
		rt.authz.cache[service] = sp
		rt.authz.mu.Unlock()
		// Audited when this process first serves this content to the
		// service (a new policy version or a change of its overrides), not
		// on every refresh.
		ids := make([]string, 0, len(ovr))
		for _, o := range ovr {
			ids = append(ids, o.ID)
		}
		rt.appendAuthzAudit(r, store.AuditEntry{Actor: id, Action: ActionAuthzPolicyFetch, Target: service, Decision: "allow",
			PolicyVersion: pol.Version()}, map[string]any{"etag": sp.etag, "overrides": ids})
	}
	h := w.Header()
	h.Set("ETag", sp.etag)
	h.Set("Cache-Control", "no-cache")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, sp.etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/jose")
	w.WriteHeader(http.StatusOK)
	_, err = io.WriteString(w, sp.jws)
	return err
}

// AuthzDecideRequest is the body of POST /v1/authz/decide.
type AuthzDecideRequest struct {
	Source string `json:"source"`
	Method string `json:"method"`
	Path   string `json:"path"`
}

// authzDecide is POST /v1/authz/decide: a decision for the caller's own
// service, by the same code the services run (authz.Policy.Decide), with the
// active overrides. Audited (action authz_decide).
func (rt *Routes) authzDecide(w http.ResponseWriter, r *http.Request) error {
	pol := rt.d.Authz.Policy.Load()
	id, service, err := rt.authzCaller(r, pol)
	if err != nil {
		return err
	}
	var req AuthzDecideRequest
	if err := decodeStrict(r.Body, maxAuthzDecideBody, &req,
		`the body must be a JSON object {"source": ..., "method": ..., "path": ...} without other fields`); err != nil {
		return err
	}
	if req.Method == "" || len(req.Method) > 32 || req.Path == "" || len(req.Path) > 2048 || len(req.Source) > 2048 {
		return badBody(`"method" (at most 32 bytes) and "path" (at most 2048 bytes) are required`, nil)
	}
	now := rt.d.Clock.Now()
	ovr, err := rt.activeOverrides(r.Context(), service, now)
	if err != nil {
		return err
	}
	d := pol.Decide(authz.Request{Source: req.Source, Service: service, Method: req.Method, Path: req.Path, Time: now}, ovr)
	decision := "allow"
	if d.Decision == "deny" {
		decision = "deny"
	}
	rt.appendAuthzAudit(r, store.AuditEntry{
		Actor: id, Action: ActionAuthzDecide, Target: service, Decision: decision, Reason: d.Reason, PolicyVersion: d.PolicyVersion,
	}, map[string]any{"source": req.Source, "method": req.Method, "path": clipString(req.Path, 256),
		"decision": d.Decision, "endpoint": d.Endpoint, "mode": d.Mode, "override": d.OverrideID})
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, d)
}

// AuthzReport is the body of POST /v1/authz/reports.
type AuthzReport struct {
	Service       string             `json:"service"`
	PolicyVersion string             `json:"policy_version"`
	WindowStart   time.Time          `json:"window_start"`
	WindowEnd     time.Time          `json:"window_end"`
	Counts        []AuthzReportCount `json:"counts"`
}

// AuthzReportCount is one row of a report.
type AuthzReportCount struct {
	Source   string `json:"source"`
	Endpoint string `json:"endpoint"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Count    int64  `json:"count"`
}

// authzReports is POST /v1/authz/reports: the reporter must be the
// destination service; its counts are added into the per-minute aggregates
// of window_end's minute. 202 {"accepted": N}.
func (rt *Routes) authzReports(w http.ResponseWriter, r *http.Request) error {
	pol := rt.d.Authz.Policy.Load()
	id, service, err := rt.authzCaller(r, pol)
	if err != nil {
		return err
	}
	var rep AuthzReport
	if err := decodeStrict(r.Body, maxAuthzReportBody, &rep,
		`the body must be a JSON report {"service", "policy_version", "window_start", "window_end", "counts": [...]}`); err != nil {
		return err
	}
	if rep.Service != service {
		return &Error{Kind: KindPolicy, Reason: ReasonForbidden,
			Detail: fmt.Sprintf("%s reports only for its own service %q", id, service)}
	}
	if len(rep.Counts) > maxAuthzReportRows {
		return &Error{Kind: KindTooLarge, Reason: ReasonBodyTooLarge,
			Detail: fmt.Sprintf("a report has at most %d rows", maxAuthzReportRows)}
	}
	now := rt.d.Clock.Now()
	if rep.WindowEnd.IsZero() || rep.WindowStart.After(rep.WindowEnd) ||
		rep.WindowEnd.After(now.Add(maxReportSkew)) || rep.WindowEnd.Before(now.Add(-maxReportAge)) {
		return badBody(`"window_end" is required, not before "window_start", and within the last 24h (5m of clock skew allowed)`, nil)
	}
	rows := make([]store.AuthzReportCount, 0, len(rep.Counts))
	var total int64
	for _, c := range rep.Counts {
		if c.Count < 0 || c.Decision == "" || c.Reason == "" || len(c.Source) > 2048 || len(c.Endpoint) > 256 ||
			len(c.Decision) > 32 || len(c.Reason) > 64 {
			return badBody(`each count needs "decision", "reason" and a "count" >= 0`, nil)
		}
		rows = append(rows, store.AuthzReportCount{Service: service, Minute: rep.WindowEnd, Source: c.Source,
			Endpoint: c.Endpoint, Decision: c.Decision, Reason: c.Reason, Count: c.Count})
		total += c.Count
	}
	raw, _ := json.Marshal(map[string]any{"rows": len(rows), "requests": total, "policy_version": rep.PolicyVersion,
		"window_start": rep.WindowStart, "window_end": rep.WindowEnd})
	if _, err := rt.d.Authz.Store.AddAuthzReportCounts(r.Context(), rows, store.AuditEntry{
		Time: now, Actor: id, Action: ActionAuthzReport, Target: service, Decision: "allow",
		PolicyVersion: pol.Version(), RequestID: RequestID(r.Context()), Details: raw,
	}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, map[string]int{"accepted": len(rows)})
}

// OverrideRequest is the body of POST /v1/authz/overrides.
type OverrideRequest struct {
	Source   string `json:"source"`
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	TTL      string `json:"ttl"`
	Reason   string `json:"reason"`
}

// OverrideView is one override as the API shows it.
type OverrideView struct {
	ID          string     `json:"id"`
	State       string     `json:"state"`
	Source      string     `json:"source"`
	Service     string     `json:"service"`
	Endpoint    string     `json:"endpoint"`
	Reason      string     `json:"reason"`
	TTL         string     `json:"ttl"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	ApprovedBy  string     `json:"approved_by,omitempty"`
	ApprovedAt  *time.Time `json:"approved_at,omitempty"`
	Until       *time.Time `json:"until,omitempty"`
	EndedBy     string     `json:"ended_by,omitempty"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
}

// OverrideList is the answer of GET /v1/authz/overrides.
type OverrideList struct {
	Items []OverrideView `json:"items"`
}

func overrideView(o store.AuthzOverride, now time.Time) OverrideView {
	v := OverrideView{ID: o.ID, State: string(o.State(now)), Source: o.Source, Service: o.Service, Endpoint: o.Endpoint,
		Reason: o.Reason, TTL: o.TTL.String(), RequestedBy: o.RequestedBy, RequestedAt: o.RequestedAt,
		ApprovedBy: o.ApprovedBy, EndedBy: o.EndedBy}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	v.ApprovedAt, v.Until, v.EndedAt = opt(o.ApprovedAt), opt(o.Until), opt(o.EndedAt)
	return v
}

// requestOverride is POST /v1/authz/overrides: a pending override that a
// different admin must approve. The service and endpoint must exist in the
// current policy; the source must be a SPIFFE ID of the policy's trust
// domain; ttl at most 24h.
func (rt *Routes) requestOverride(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Authz.Store == nil {
		return errAuthzNotConfigured
	}
	op, _ := OperatorFrom(r.Context())
	pol := rt.d.Authz.Policy.Load()
	var req OverrideRequest
	if err := decodeStrict(r.Body, maxAuthzOverrideBody, &req,
		`the body must be a JSON object {"source", "service", "endpoint", "ttl", "reason"} without other fields`); err != nil {
		return err
	}
	invalid := func(detail string) error {
		return &Error{Kind: KindInput, Reason: ReasonOverrideInvalid, Detail: detail}
	}
	if err := validIdentity(req.Source, pol.TrustDomain()); err != nil {
		return err
	}
	info, ok := pol.Describe(req.Service)
	if !ok {
		return invalid(fmt.Sprintf("the authorization policy has no service %q", req.Service))
	}
	found := false
	for _, e := range info.Endpoints {
		found = found || e.Name == req.Endpoint
	}
	if !found {
		return invalid(fmt.Sprintf("service %q has no endpoint %q", req.Service, req.Endpoint))
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl < time.Minute || ttl > store.MaxAuthzOverrideTTL {
		return invalid(`"ttl" must be a duration from 1m to 24h, such as "2h"`)
	}
	if req.Reason == "" || len(req.Reason) > 1024 {
		return invalid(`"reason" is required (at most 1024 bytes): why the override is needed`)
	}
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	now := rt.d.Clock.Now()
	o := store.AuthzOverride{ID: "ovr-" + hex.EncodeToString(idb[:]), Source: req.Source, Service: req.Service,
		Endpoint: req.Endpoint, Reason: req.Reason, TTL: ttl, RequestedBy: op.Actor, RequestedAt: now}
	out, _, err := rt.d.Authz.Store.RequestAuthzOverride(r.Context(), o, rt.overrideAudit(r, op, ActionAuthzOverrideRequest, o, pol.Version()))
	if err != nil {
		return err
	}
	rt.d.Log.InfoContext(r.Context(), "authz override requested", "override", out.ID, "source", out.Source,
		"service", out.Service, "endpoint", out.Endpoint, "ttl", out.TTL.String(), "actor", op.Actor, "request_id", RequestID(r.Context()))
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, overrideView(out, now))
}

// approveOverride is POST /v1/authz/overrides/{id}/approve: by an admin
// other than the requester (403 forbidden otherwise); 409
// override_not_pending unless pending.
func (rt *Routes) approveOverride(w http.ResponseWriter, r *http.Request) error {
	return rt.changeOverride(w, r, ActionAuthzOverrideApprove)
}

// endOverride is POST /v1/authz/overrides/{id}/end: ends a pending or active
// override (409 override_not_pending otherwise).
func (rt *Routes) endOverride(w http.ResponseWriter, r *http.Request) error {
	return rt.changeOverride(w, r, ActionAuthzOverrideEnd)
}

func (rt *Routes) changeOverride(w http.ResponseWriter, r *http.Request, action string) error {
	if rt.d.Authz.Store == nil {
		return errAuthzNotConfigured
	}
	op, _ := OperatorFrom(r.Context())
	id := chi.URLParam(r, "id")
	if id == "" || len(id) > 64 {
		return &Error{Kind: KindNotFound, Reason: ReasonNotFound, Detail: "no such override"}
	}
	now := rt.d.Clock.Now()
	cur, err := rt.d.Authz.Store.GetAuthzOverride(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Kind: KindNotFound, Reason: ReasonNotFound, Detail: "no such override", Err: err}
	}
	if err != nil {
		return err
	}
	e := rt.overrideAudit(r, op, action, cur, rt.d.Authz.Policy.Load().Version())
	var out store.AuthzOverride
	if action == ActionAuthzOverrideApprove {
		out, _, err = rt.d.Authz.Store.ApproveAuthzOverride(r.Context(), id, op.Actor, now, e)
	} else {
		out, _, err = rt.d.Authz.Store.EndAuthzOverride(r.Context(), id, op.Actor, now, e)
	}
	switch {
	case errors.Is(err, store.ErrSameActor):
		return &Error{Kind: KindPolicy, Reason: ReasonForbidden, Err: err,
			Detail: "an override must be approved by a different admin than the one who requested it"}
	case errors.Is(err, store.ErrConflict):
		return &Error{Kind: KindConflict, Reason: ReasonOverrideNotPending, Err: err,
			Detail: fmt.Sprintf("the override is %s", cur.State(now))}
	case err != nil:
		return err
	}
	rt.d.Log.InfoContext(r.Context(), "authz override "+map[string]string{ActionAuthzOverrideApprove: "approved", ActionAuthzOverrideEnd: "ended"}[action],
		"override", out.ID, "source", out.Source, "service", out.Service, "endpoint", out.Endpoint,
		"actor", op.Actor, "request_id", RequestID(r.Context()))
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, overrideView(out, now))
}

// listOverrides is GET /v1/authz/overrides (limit, at most 1000).
func (rt *Routes) listOverrides(w http.ResponseWriter, r *http.Request) error {
	if rt.d.Authz.Store == nil {
		return errAuthzNotConfigured
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return badBody("limit must be 1 to 1000", err)
		}
		limit = n
	}
	list, err := rt.d.Authz.Store.ListAuthzOverrides(r.Context(), limit)
	if err != nil {
		return err
	}
	now := rt.d.Clock.Now()
	out := OverrideList{Items: make([]OverrideView, 0, len(list))}
	for _, o := range list {
		out.Items = append(out.Items, overrideView(o, now))
	}
	sort.SliceStable(out.Items, func(i, j int) bool { return out.Items[i].RequestedAt.After(out.Items[j].RequestedAt) })
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}

func (rt *Routes) overrideAudit(r *http.Request, op *Operator, action string, o store.AuthzOverride, version string) store.AuditEntry {
	raw, _ := json.Marshal(map[string]any{"source": o.Source, "service": o.Service, "endpoint": o.Endpoint,
		"ttl": o.TTL.String(), "reason": clipString(o.Reason, 256), "requested_by": o.RequestedBy})
	return store.AuditEntry{Time: rt.d.Clock.Now(), Actor: op.Actor, Action: action, Target: o.ID, Decision: "allow",
		PolicyVersion: version, RequestID: RequestID(r.Context()), Details: raw}
}

// appendAuthzAudit appends e with details; a failure is logged.
func (rt *Routes) appendAuthzAudit(r *http.Request, e store.AuditEntry, details map[string]any) {
	e.Time, e.RequestID = rt.d.Clock.Now(), RequestID(r.Context())
	e.Details, _ = json.Marshal(details)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if _, err := rt.d.Authz.Store.AppendAudit(ctx, e); err != nil {
		rt.d.Log.ErrorContext(r.Context(), "recording an authorization decision failed", "request_id", RequestID(r.Context()), "err", err)
	}
}

// decodeStrict reads one JSON object of at most limit bytes into v, with no
// unknown field and nothing after it (400 bad_request, 413 body_too_large).
func decodeStrict(body io.Reader, limit int64, v any, shape string) error {
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return fmt.Errorf("reading the request: %w", err)
		}
		return badBody("the request body could not be read", err)
	}
	if int64(len(data)) > limit {
		return &Error{Kind: KindTooLarge, Reason: ReasonBodyTooLarge,
			Detail: fmt.Sprintf("the request must be at most %d bytes", limit)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badBody(shape, err)
	}
	if dec.More() || trailing(dec) {
		return badBody("the body must hold exactly one JSON object", nil)
	}
	return nil
}
