package authz

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// PeerIDFunc returns the verified SPIFFE ID of the caller of r, "" if there is
// none. It must only return identities whose certificate chain was verified.
type PeerIDFunc func(r *http.Request) string

// VerifiedChainPeer is the SPIFFE ID of the leaf of r.TLS.VerifiedChains[0]:
// set by crypto/tls when the server's ClientAuth is VerifyClientCertIfGiven or
// RequireAndVerifyClientCert. It is the default PeerIDFunc.
func VerifiedChainPeer(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	id, err := x509svid.IDFromCert(r.TLS.VerifiedChains[0][0])
	if err != nil {
		return ""
	}
	return id.String()
}

// MTLSPeer is the PeerIDFunc for servers whose tls.Config comes from
// mtls.ServerTLSConfig. That config verifies the client certificate itself
// (against the trust bundle, in VerifyConnection, failing the handshake
// otherwise) and so leaves VerifiedChains empty; the leaf of
// r.TLS.PeerCertificates is then the verified one. Do not use it with any
// other tls.Config: there PeerCertificates may be unverified.
func MTLSPeer(r *http.Request) string {
	if id := VerifiedChainPeer(r); id != "" {
		return id
	}
	if r.TLS == nil || !r.TLS.HandshakeComplete || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id.String()
}

// DefaultAllowLogEvery is how many allowed calls go by per logged one.
const DefaultAllowLogEvery = 100

// MiddlewareConfig configures Middleware.
type MiddlewareConfig struct {
	// Service is this service's name in the policy (required).
	Service string
	// Policy yields the policy and overrides (required): StaticPolicy or a
	// *Fetcher.
	Policy PolicySource
	// PeerID finds the caller's verified identity; default VerifiedChainPeer.
	// Services using pkg/mtls set MTLSPeer.
	PeerID PeerIDFunc
	// Clock gives request.time and the instant overrides are checked at;
	// default the real clock.
	Clock Clock
	// Log receives one line per deny and would_deny (Warn) and one per
	// AllowLogEvery allowed calls (Info); nil discards.
	Log *slog.Logger
	// AllowLogEvery: log every Nth allow (default DefaultAllowLogEvery; a
	// negative value logs none). Allows by override are always logged.
	AllowLogEvery int
	// Counts, if set, counts every decision (for a Reporter).
	Counts *Counts
}

// Middleware returns an http.Handler middleware that decides every request
// with Policy.Decide: source = PeerID(r), service = cfg.Service, the raw
// (escaped) path without the query. Allowed calls (including would_deny in
// observe mode) go on to next; denied ones get 403 application/problem+json
// with the reason and are not passed on. Every deny and would_deny is logged
// with source_identity, destination_identity, service, endpoint, method,
// path, decision, reason, mode, policy_version (and override); never headers,
// query strings, credentials or bodies.
func Middleware(cfg MiddlewareConfig) (func(http.Handler) http.Handler, error) {
	if cfg.Service == "" || cfg.Policy == nil {
		return nil, errors.New("authz: middleware needs Service and Policy")
	}
	if cfg.PeerID == nil {
		cfg.PeerID = VerifiedChainPeer
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.AllowLogEvery == 0 {
		cfg.AllowLogEvery = DefaultAllowLogEvery
	}
	var allows atomic.Uint64
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, overrides := cfg.Policy.Current()
			source := cfg.PeerID(r)
			path := r.URL.EscapedPath()
			d := p.Decide(Request{Source: source, Service: cfg.Service, Method: r.Method, Path: path, Header: r.Header, Time: cfg.Clock.Now()}, overrides)
			if cfg.Counts != nil {
				cfg.Counts.Add(source, d)
			}
			switch {
			case d.Decision != DecisionAllow:
				logDecision(r.Context(), cfg.Log, slog.LevelWarn, p, cfg.Service, source, r.Method, path, d)
			case d.OverrideID != "":
				logDecision(r.Context(), cfg.Log, slog.LevelWarn, p, cfg.Service, source, r.Method, path, d)
			case cfg.AllowLogEvery > 0 && allows.Add(1)%uint64(cfg.AllowLogEvery) == 1%uint64(cfg.AllowLogEvery):
				logDecision(r.Context(), cfg.Log, slog.LevelInfo, p, cfg.Service, source, r.Method, path, d)
			}
			if !d.Allowed {
				writeDenied(w, d)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

func logDecision(ctx context.Context, log *slog.Logger, level slog.Level, p *Policy, service, source, method, path string, d Decision) {
	attrs := []slog.Attr{
		slog.String("source_identity", source),
		slog.String("destination_identity", p.identityOf(service)),
		slog.String("service", service),
		slog.String("endpoint", d.Endpoint),
		slog.String("method", method),
		slog.String("path", path),
		slog.String("decision", d.Decision),
		slog.String("reason", d.Reason),
		slog.String("mode", d.Mode),
		slog.String("policy_version", d.PolicyVersion),
	}
	if d.OverrideID != "" {
		attrs = append(attrs, slog.String("override", d.OverrideID))
	}
	log.LogAttrs(ctx, level, "authz: decision", attrs...)
}

// problem is the RFC 9457 body of a denial, with the stable reason.
type problem struct {
	Type          string `json:"type"`
	Title         string `json:"title"`
	Status        int    `json:"status"`
	Detail        string `json:"detail"`
	Reason        string `json:"reason"`
	Endpoint      string `json:"endpoint,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
}

var denyDetail = map[string]string{
	ReasonNoWritePermission:  "the caller may read this resource but not write it",
	ReasonNotAllowed:         "the caller is not allowed to call this endpoint",
	ReasonNoRule:             "no endpoint of this service matches the method and path",
	ReasonConditionFalse:     "the endpoint's condition does not hold for this call",
	ReasonIdentityUnverified: "the connection carries no verified SPIFFE identity",
	ReasonPathInvalid:        "the request path does not normalise",
}

func writeDenied(w http.ResponseWriter, d Decision) {
	body, _ := json.Marshal(problem{
		Type:          "urn:workload-ca:problem:" + d.Reason,
		Title:         http.StatusText(http.StatusForbidden),
		Status:        http.StatusForbidden,
		Detail:        denyDetail[d.Reason],
		Reason:        d.Reason,
		Endpoint:      d.Endpoint,
		PolicyVersion: d.PolicyVersion,
	})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(body)
}
