package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// TrustDeps are the trust-bundle and CA-rotation collaborators. With
// Deps.Trust set, /bundle.pem and /bundle.json serve the latest published
// bundle version, and the API listener serves the issuer and bundle
// administration routes.
type TrustDeps struct {
	// Bundles serves the latest published version (*bundle.Cache).
	Bundles BundleSource
	// Versions lists and rolls back bundle versions (*bundle.Publisher and
	// the store).
	Versions BundleVersions
	// Rotation prepares and activates issuers (*issuer.Rotator).
	Rotation RotationService
	// Issuers lists the CA hierarchy (the store).
	Issuers IssuerLister
}

// BundleVersions is what the bundle administration routes need.
type BundleVersions interface {
	Rollback(ctx context.Context, o bundle.RollbackOptions) (store.BundleVersion, error)
	ListBundleVersions(ctx context.Context, before int64, limit int) ([]store.BundleVersion, error)
}

// RotationService is what the rotation routes need; *issuer.Rotator fits.
type RotationService interface {
	Rotate(ctx context.Context, o issuer.RotateOptions) (issuer.RotateResult, error)
	Activate(ctx context.Context, o issuer.ActivateOptions) (issuer.TickResult, error)
	Abandon(ctx context.Context, o issuer.AbandonOptions) (issuer.AbandonResult, error)
}

// IssuerLister lists the CA hierarchy; store.Store fits.
type IssuerLister interface {
	ListIssuers(ctx context.Context) ([]store.Issuer, error)
}

// mountTrust adds the administration routes of the API listener, each
// behind its operator role.
func (rt *Routes) mountTrust(r chi.Router) {
	if rt.d.Trust == nil {
		return
	}
	r.Method(http.MethodGet, "/v1/issuers", rt.edge.handle(rt.operator(policy.RoleAuditor, rt.listIssuers)))
	r.Method(http.MethodPost, "/v1/issuers/rotate", rt.edge.handle(rt.operator(policy.RoleAdmin, rt.rotateIssuers)))
	r.Method(http.MethodPost, "/v1/issuers/activate", rt.edge.handle(rt.operator(policy.RoleAdmin, rt.activateIssuers)))
	r.Method(http.MethodPost, "/v1/issuers/abandon", rt.edge.handle(rt.operator(policy.RoleAdmin, rt.abandonIssuers)))
	r.Method(http.MethodGet, "/v1/bundle/versions", rt.edge.handle(rt.operator(policy.RoleAuditor, rt.listBundleVersions)))
	r.Method(http.MethodPost, "/v1/bundle/rollback", rt.edge.handle(rt.operator(policy.RoleAdmin, rt.rollbackBundle)))
}

// operator runs h only for an operator with role, with the operator in the
// request context (OperatorFrom, actorFrom).
func (rt *Routes) operator(role policy.Role, h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		op, err := rt.authorizeOperator(w, r, role)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), operatorKey, op)))
	}
}

// actorFrom is the identity of the request's operator, for the audit log.
func actorFrom(ctx context.Context) string {
	if op, ok := OperatorFrom(ctx); ok {
		return op.Actor
	}
	return ""
}

// IssuerView is one issuer as GET /v1/issuers shows it.
type IssuerView struct {
	ID        string            `json:"id"`
	Kind      store.IssuerKind  `json:"kind"`
	ParentID  string            `json:"parent_id,omitempty"`
	State     store.IssuerState `json:"state"`
	Subject   string            `json:"subject,omitempty"`
	Issuer    string            `json:"issuer,omitempty"`
	SHA256    string            `json:"sha256,omitempty"`
	NotBefore *time.Time        `json:"not_before,omitempty"`
	NotAfter  *time.Time        `json:"not_after,omitempty"`
	HasKey    bool              `json:"online_key"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

func issuerView(is store.Issuer) IssuerView {
	v := IssuerView{
		ID: is.ID, Kind: is.Kind, ParentID: is.ParentID, State: is.State, HasKey: is.KeyURI != "",
		CreatedAt: is.CreatedAt, UpdatedAt: is.UpdatedAt,
	}
	if is.CertDER != nil {
		h := sha256.Sum256(is.CertDER)
		v.SHA256 = hex.EncodeToString(h[:])
		if c, err := x509.ParseCertificate(is.CertDER); err == nil {
			v.Subject, v.Issuer = c.Subject.String(), c.Issuer.String()
		}
		nb, na := is.NotBefore, is.NotAfter
		v.NotBefore, v.NotAfter = &nb, &na
	}
	return v
}

func (rt *Routes) listIssuers(w http.ResponseWriter, r *http.Request) error {
	list, err := rt.d.Trust.Issuers.ListIssuers(r.Context())
	if err != nil {
		return fmt.Errorf("listing issuers: %w", err)
	}
	items := make([]IssuerView, 0, len(list))
	for _, is := range list {
		items = append(items, issuerView(is))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// RotateRequest is the body of POST /v1/issuers/rotate.
type RotateRequest struct {
	// Root rotates the root too (new root, cross-certificate).
	Root bool `json:"root"`
}

// RotateResponse is the answer of POST /v1/issuers/rotate.
type RotateResponse struct {
	Intermediate     IssuerView  `json:"intermediate"`
	Root             *IssuerView `json:"root,omitempty"`
	CrossCertificate *IssuerView `json:"cross_certificate,omitempty"`
	BundleSequence   int64       `json:"bundle_sequence"`
	ActivateAfter    time.Time   `json:"activate_after"`
}

func (rt *Routes) rotateIssuers(w http.ResponseWriter, r *http.Request) error {
	var req RotateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	res, err := rt.d.Trust.Rotation.Rotate(r.Context(), issuer.RotateOptions{
		Root: req.Root, Actor: actorFrom(r.Context()), RequestID: RequestID(r.Context()),
	})
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	out := RotateResponse{Intermediate: issuerView(res.Intermediate), BundleSequence: res.Bundle.Sequence, ActivateAfter: res.ActivateAfter}
	if res.Root != nil {
		v := issuerView(*res.Root)
		out.Root = &v
	}
	if res.CrossCertificate != nil {
		v := issuerView(*res.CrossCertificate)
		out.CrossCertificate = &v
	}
	return writeJSON(w, http.StatusAccepted, out)
}

// ActivateRequest is the body of POST /v1/issuers/activate.
type ActivateRequest struct {
	// Force activates before the overlap has passed.
	Force bool `json:"force"`
}

// ActivateResponse is the answer of POST /v1/issuers/activate.
type ActivateResponse struct {
	Activated      []string `json:"activated"`
	Retiring       []string `json:"retiring"`
	BundleSequence int64    `json:"bundle_sequence"`
}

func (rt *Routes) activateIssuers(w http.ResponseWriter, r *http.Request) error {
	var req ActivateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	res, err := rt.d.Trust.Rotation.Activate(r.Context(), issuer.ActivateOptions{
		Force: req.Force, Actor: actorFrom(r.Context()), RequestID: RequestID(r.Context()),
	})
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	out := ActivateResponse{Activated: res.Activated, Retiring: res.Retiring, BundleSequence: res.Bundle.Sequence}
	if out.Activated == nil {
		out.Activated = []string{}
	}
	if out.Retiring == nil {
		out.Retiring = []string{}
	}
	return writeJSON(w, http.StatusOK, out)
}

// BundleVersionView is one bundle version as the administration routes
// show it.
type BundleVersionView struct {
	Sequence       int64     `json:"sequence"`
	CreatedAt      time.Time `json:"created_at"`
	Reason         string    `json:"reason"`
	Actor          string    `json:"actor"`
	RolledBackFrom int64     `json:"rolled_back_from,omitempty"`
	// AnchorsSHA256 are the SHA-256 fingerprints of the trust anchors.
	AnchorsSHA256 []string `json:"anchors_sha256"`
	JWTKeyIDs     []string `json:"jwt_kids"`
}

func bundleVersionView(v store.BundleVersion) (BundleVersionView, error) {
	c, err := bundle.ParseContent(v.Content)
	if err != nil {
		return BundleVersionView{}, fmt.Errorf("bundle version %d: %w", v.Sequence, err)
	}
	out := BundleVersionView{
		Sequence: v.Sequence, CreatedAt: v.CreatedAt, Reason: v.Reason, Actor: v.Actor,
		RolledBackFrom: v.RolledBackFrom, AnchorsSHA256: []string{}, JWTKeyIDs: []string{},
	}
	for _, der := range c.X509Authorities {
		h := sha256.Sum256(der)
		out.AnchorsSHA256 = append(out.AnchorsSHA256, hex.EncodeToString(h[:]))
	}
	for _, k := range c.JWTAuthorities {
		out.JWTKeyIDs = append(out.JWTKeyIDs, k.KeyID)
	}
	return out, nil
}

// maxVersionsPage caps GET /v1/bundle/versions?limit.
const maxVersionsPage = 100

func (rt *Routes) listBundleVersions(w http.ResponseWriter, r *http.Request) error {
	limit, before := 20, int64(0)
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxVersionsPage {
			return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: fmt.Sprintf("limit must be 1 to %d", maxVersionsPage)}
		}
		limit = n
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: "before must be a positive sequence number"}
		}
		before = n
	}
	list, err := rt.d.Trust.Versions.ListBundleVersions(r.Context(), before, limit)
	if err != nil {
		return fmt.Errorf("listing bundle versions: %w", err)
	}
	items := make([]BundleVersionView, 0, len(list))
	for _, v := range list {
		view, err := bundleVersionView(v)
		if err != nil {
			return err
		}
		items = append(items, view)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// RollbackRequest is the body of POST /v1/bundle/rollback.
type RollbackRequest struct {
	// ToSequence is the earlier version whose content is republished.
	ToSequence int64 `json:"to_sequence"`
	// Force republishes it even when it is unsafe (rollback_unsafe).
	Force bool `json:"force"`
}

func (rt *Routes) rollbackBundle(w http.ResponseWriter, r *http.Request) error {
	var req RollbackRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	v, err := rt.d.Trust.Versions.Rollback(r.Context(), bundle.RollbackOptions{
		ToSequence: req.ToSequence, Force: req.Force, Actor: actorFrom(r.Context()), RequestID: RequestID(r.Context()),
	})
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	view, err := bundleVersionView(v)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view)
}

// decodeBody decodes a small JSON object strictly; an empty body is {}.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &tooLarge):
		return err
	case err != nil:
		return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: "the body is not the expected JSON object", Err: err}
	}
	if dec.More() {
		return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: "trailing data after the JSON object"}
	}
	return nil
}
