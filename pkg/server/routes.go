package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

// Pinger is a dependency whose health /readyz checks: the store or the key
// store.
type Pinger interface {
	Ping(ctx context.Context) error
}

// AnchorSource yields the trust anchors (root certificates) relying parties
// should trust now; *issuer.Issuer fits.
type AnchorSource interface {
	TrustAnchors(ctx context.Context) ([]*x509.Certificate, error)
}

// Deps is what the routes need. Every field is required except Clock (the
// real clock by default).
type Deps struct {
	Log     *slog.Logger
	Clock   clock.Clock
	Store   Pinger
	Keys    Pinger
	Anchors AnchorSource
	// Metrics is the registry /metrics exposes and the edge registers its
	// collectors in; never the global one.
	Metrics *prometheus.Registry
	// BodyLimit caps request bodies, in bytes.
	BodyLimit int64
	// ReadyTimeout bounds each dependency check of /readyz.
	ReadyTimeout time.Duration
	// RequestTimeout is every request's deadline, inherited by the store,
	// HSM and outgoing calls made for it (deadline.go); zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxInFlightEnrollments bounds the enrollments and renewals answered at
	// once; one more gets 503 overloaded with Retry-After at once
	// (overload.go). Zero means DefaultMaxInFlightEnrollments.
	MaxInFlightEnrollments int
	// Trust, optional, serves the published trust bundle (/bundle.pem from
	// it instead of Anchors, /bundle.json) and the issuer and bundle
	// administration routes; see TrustDeps.
	Trust *TrustDeps
	// Policy is the current policy (token issuers, enrollment rules,
	// operator roles). Handlers Load it once per request; `ca serve` swaps
	// it on SIGHUP.
	Policy *policy.Holder
	// Verifier verifies provenance and operator tokens against the token
	// issuers of Policy, caching their keys. One per process.
	Verifier *enroll.Verifier
	// Enroll, when its fields are set, serves POST /v1/enroll and
	// /v1/renew (pkg/server/enroll.go).
	Enroll EnrollDeps
	// Operators are the inventory, revocation and audit endpoints'
	// collaborators (pkg/server/operator.go).
	Operators OperatorDeps
	// Revocation, optional, serves /crl/{issuer}.crl and /ocsp on both
	// listeners (pkg/server/crl.go, ocsp.go); without it they answer 404.
	Revocation RevocationSource
	// JWT, when its fields are set, serves POST /v1/jwt (pkg/server/jwt.go).
	JWT JWTDeps
	// Identities serves /v1/identities/* and holds identities on hold
	// (pkg/server/identities.go); optional.
	Identities IdentityDeps
	// ArtifactLogLevel is the level of the public listener's access-log
	// lines for signed artifacts (OCSP, CRLs, the trust bundle); every other
	// request is logged at info. The zero value is info; debug keeps the
	// lines out of an info log, for OCSP at high request rates (the
	// ca_http_* metrics still count every request).
	ArtifactLogLevel slog.Level
	// ArtifactLogSample logs one in this many successful artifact answers
	// on the public listener, with "sample_one_in" on the line (0 or 1:
	// every one). Failures (status >= 400) are always logged, at info.
	ArtifactLogSample int
	// Authz, optional, serves /v1/authz/* (pkg/server/authz.go) when its
	// Policy is set.
	Authz AuthzDeps
	// AuditLogRole, optional, is reported as checks.audit_log by /readyz
	// without ever failing it: AuditLogAppendOnly, AuditLogAlterable,
	// AuditLogNoRoles or AuditLogUnknown, as `ca serve` found its database role at start.
	AuditLogRole string
}

// Values of Deps.AuditLogRole.
const (
	// AuditLogAppendOnly: the runtime role may only INSERT and SELECT on the
	// audit log (Postgres, two roles).
	AuditLogAppendOnly = "append_only"
	// AuditLogAlterable: the runtime role owns the audit log, is a
	// superuser, or holds UPDATE, DELETE, TRUNCATE or TRIGGER on it, so it
	// could disable the append-only triggers and change entries.
	AuditLogAlterable = "alterable_by_runtime_role"
	// AuditLogNoRoles: SQLite has no database roles; not applicable.
	AuditLogNoRoles = "not_applicable"
	// AuditLogUnknown: the role's privileges could not be read at start.
	AuditLogUnknown = "unknown"
)

// Routes builds the two listeners' routers over shared dependencies. Add an
// endpoint by adding a method (one file per concept) and mounting it in API
// or Public.
type Routes struct {
	d       Deps
	edge    edge
	metrics *metrics
	ids     *requestIDs
	enroll  *enrollment
	ops     *operatorState
	jwt     *jwtMinting
	ready   *readiness
	authz   *authzState
}

// ErrMissingDependency is returned by NewRoutes when a required Deps field is
// nil or zero.
var ErrMissingDependency = errors.New("server: missing dependency")

// NewRoutes checks d and registers the edge's metrics in d.Metrics.
func NewRoutes(d Deps) (*Routes, error) {
	missing := map[string]bool{
		"Log": d.Log == nil, "Store": d.Store == nil, "Keys": d.Keys == nil,
		"Anchors": d.Anchors == nil, "Metrics": d.Metrics == nil,
		"BodyLimit": d.BodyLimit <= 0, "ReadyTimeout": d.ReadyTimeout <= 0,
		"Policy": d.Policy == nil || d.Policy.Load() == nil, "Verifier": d.Verifier == nil,
	}
	for _, name := range []string{"Log", "Store", "Keys", "Anchors", "Metrics", "BodyLimit", "ReadyTimeout", "Policy", "Verifier"} {
		if missing[name] {
			return nil, fmt.Errorf("%w: Deps.%s", ErrMissingDependency, name)
		}
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.RequestTimeout <= 0 {
		d.RequestTimeout = DefaultRequestTimeout
	}
	if d.MaxInFlightEnrollments <= 0 {
		d.MaxInFlightEnrollments = DefaultMaxInFlightEnrollments
	}
	m, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	ops, err := newOperatorState(d.Metrics)
	if err != nil {
		return nil, err
	}
	enr, err := newEnrollment(d)
	if err != nil {
		return nil, err
	}
	jm, err := newJWTMinting(d)
	if err != nil {
		return nil, err
	}
	da, err := newDenialAudit(d.Metrics, ops.limiter, d.Clock)
	if err != nil {
		return nil, err
	}
	if enr != nil {
		enr.denials = da
	}
	if jm != nil {
		jm.denials = da
	}
	return &Routes{d: d, edge: edge{log: d.Log, bursts: newBurstLog(d.Clock)}, metrics: m, ids: newRequestIDs(), ops: ops, enroll: enr, jwt: jm, ready: newReadiness(d)}, nil
}

// Public is the plain-HTTP listener's router: only public things (health,
// bundles, metrics; later CRLs and OCSP).
func (rt *Routes) Public() chi.Router {
	r := rt.base("public")
	rt.mountArtifacts(r)
	r.Method(http.MethodGet, "/metrics", promhttpHandler(rt.d.Metrics))
	return r
}

// API is the HTTPS listener's router: the signed artifacts and health too, and
// later the /v1 API.
func (rt *Routes) API() chi.Router {
	r := rt.base("api")
	rt.mountArtifacts(r)
	rt.mountTrust(r)
	rt.mountEnroll(r)
	rt.mountJWT(r)
	rt.mountOperator(r)
	rt.mountIdentities(r)
	rt.mountAuthz(r)
	return r
}

// mountArtifacts adds what both listeners serve.
func (rt *Routes) mountArtifacts(r chi.Router) {
	r.Method(http.MethodGet, "/healthz", rt.edge.handle(rt.healthz))
	r.Method(http.MethodGet, "/readyz", rt.edge.handle(rt.readyz))
	if rt.d.Trust != nil {
		r.Method(http.MethodGet, "/bundle.pem", rt.edge.handle(rt.bundlePEMVersioned))
		r.Method(http.MethodGet, "/bundle.json", rt.edge.handle(rt.bundleJSON))
	} else {
		r.Method(http.MethodGet, "/bundle.pem", rt.edge.handle(rt.bundlePEM))
	}
	rt.mountRevocation(r)
}

// artifactRoutes are the route patterns of signed artifacts, whose access
// log level Deps.ArtifactLogLevel sets on the public listener.
var artifactRoutes = map[string]bool{
	"/ocsp": true, "/ocsp/{request}": true, "/crl/{issuer}.crl": true,
	"/bundle.pem": true, "/bundle.json": true,
}

// base is a router with the shared middleware chain and problem+json answers
// for unknown routes and wrong methods.
func (rt *Routes) base(listener string) *chi.Mux {
	r := chi.NewRouter()
	access := &accessLog{
		listener: listener, log: rt.d.Log.With(slog.String("listener", listener)),
		ids: rt.ids, metrics: rt.metrics, artifactLevel: slog.LevelInfo,
	}
	if listener == "public" {
		access.artifactLevel, access.artifacts = rt.d.ArtifactLogLevel, artifactRoutes
		access.artifactSample = uint64(max(rt.d.ArtifactLogSample, 0))
	}
	r.Use(access.middleware, recoverer(rt.edge), requestDeadline(rt.d.RequestTimeout), limitBody(rt.d.BodyLimit), middleware.GetHead)
	r.NotFound(func(w http.ResponseWriter, req *http.Request) {
		writeProblem(w, req, KindNotFound, ReasonNotFound, "no such resource")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				w.Header().Add("Allow", m)
			}
		}
		writeProblem(w, req, KindMethod, ReasonMethodNotAllowed, "method not allowed on this resource")
	})
	return r
}
