package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

//go:embed web/templates/*.html web/static/*
var webFiles embed.FS

// Store is what the pages read, where sign-ins are audited and sessions
// kept; the Postgres and SQLite stores fit.
type Store interface {
	store.SessionStore

	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, string, error)
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]store.AuditEntry, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
	ListIssuers(ctx context.Context) ([]store.Issuer, error)
	LatestBundleSequence(ctx context.Context) (int64, error)
	CRLInfo(ctx context.Context, issuerID string) (store.CRL, error)
	OCSPOldest(ctx context.Context, issuerID string, now time.Time) (time.Time, bool, error)
	Denials(ctx context.Context, q store.DenialQuery) ([]store.DenialGroup, error)
	CertificateStats(ctx context.Context, now, since time.Time) (store.CertificateStats, error)
}

// Revoker revokes one certificate, auditing it, and reports an earlier
// revocation instead of changing it, or a certificate and its renewals
// (RevokeMany); *revoke.Revoker fits.
type Revoker interface {
	Revoke(ctx context.Context, serial, reason, actor, requestID string) (store.Certificate, bool, error)
	RevokeMany(ctx context.Context, scope store.RevokeScope, reason, actor, requestID string) ([]store.Certificate, error)
}

// IdP is the operator identity provider the dashboard signs in through.
type IdP struct {
	// TokenIssuer names the policy's token issuer entry for the IdP: its
	// issuer URL is where discovery starts, and its role entries grant the
	// signed-in user's roles.
	TokenIssuer string
	// ClientID and ClientSecret identify the dashboard at the IdP; an empty
	// secret makes it a public client (PKCE only).
	ClientID, ClientSecret string
	// HTTPClient talks to the IdP (discovery, token endpoint, keys).
	HTTPClient *http.Client
}

// Config is how the dashboard signs people in.
type Config struct {
	// ExternalURL is the API listener's base URL as browsers reach it
	// (https://host:port); the IdP redirects to ExternalURL+"/ui/callback".
	ExternalURL string
	// IdP, when set, enables sign-in through it.
	IdP *IdP
	// DevLogin lets a browser on loopback sign in as a local admin without
	// the IdP: the development setup only; every page then says so.
	DevLogin bool
	// SessionKey signs the short-lived sign-in state cookie (at least 32
	// bytes; the same on every replica, so that the IdP's redirect may come
	// back to any). Nil: a random key per process. Sessions themselves live
	// in the store (session.go) and need no key.
	SessionKey []byte
	// SessionLifetime is how long a sign-in lasts at most (default 8h).
	SessionLifetime time.Duration
	// SessionIdleTimeout ends a session not used for this long (default
	// 30m, at most SessionLifetime).
	SessionIdleTimeout time.Duration
}

// Deps are the dashboard's collaborators. All are required except Revoker
// (without it no revoke action is offered) and RequestID.
type Deps struct {
	Log     *slog.Logger
	Clock   clock.Clock
	Store   Store
	Revoker Revoker
	Policy  *policy.Holder
	// Holds, optional, lists the identity holds (/ui/holds).
	Holds HoldLister
	// AuthzPolicy, optional, yields the service-to-service authorization
	// policy, and Authz reads its overrides and reports (/ui/authz; the
	// page says when none is configured).
	AuthzPolicy AuthzPolicySource
	Authz       AuthzReader
	// RequestID returns the request id the HTTP edge assigned.
	RequestID func(ctx context.Context) string
}

// ErrConfig is returned by New for a configuration it cannot serve.
var ErrConfig = errors.New("dashboard: invalid configuration")

// Dashboard serves the pages under /ui.
type Dashboard struct {
	cfg   Config
	d     Deps
	clock clock.Clock
	log   *slog.Logger
	seal  sealer
	pages map[string]*template.Template

	oidcMu sync.Mutex
	oidc   *oidcClient
}

// New checks cfg and parses the embedded templates.
func New(cfg Config, d Deps) (*Dashboard, error) {
	if d.Log == nil || d.Store == nil || d.Policy == nil {
		return nil, fmt.Errorf("%w: Log, Store and Policy are required", ErrConfig)
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.RequestID == nil {
		d.RequestID = func(context.Context) string { return "" }
	}
	if cfg.IdP != nil && (cfg.IdP.TokenIssuer == "" || cfg.IdP.ClientID == "" || cfg.ExternalURL == "") {
		return nil, fmt.Errorf("%w: IdP sign-in needs the token issuer, a client ID and the external URL", ErrConfig)
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 8 * time.Hour
	}
	if cfg.SessionIdleTimeout <= 0 {
		cfg.SessionIdleTimeout = 30 * time.Minute
	}
	cfg.SessionIdleTimeout = min(cfg.SessionIdleTimeout, cfg.SessionLifetime)
	key := cfg.SessionKey
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	} else if len(key) < 32 {
		return nil, fmt.Errorf("%w: the session key must have at least 32 bytes", ErrConfig)
	}
	cfg.ExternalURL = strings.TrimSuffix(cfg.ExternalURL, "/")
	db := &Dashboard{cfg: cfg, d: d, clock: d.Clock, log: d.Log, seal: sealer{key: key}}
	if err := db.parseTemplates(); err != nil {
		return nil, err
	}
	return db, nil
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": strings.Join,
}

func (db *Dashboard) parseTemplates() error {
	db.pages = map[string]*template.Template{}
	names, err := fs.Glob(webFiles, "web/templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "web/templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(webFiles, "web/templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("dashboard: template %s: %w", n, err)
		}
		db.pages[base] = t
	}
	return nil
}

// Mount adds the dashboard's routes under /ui to r (the API listener's
// router), and / redirects to it.
func (db *Dashboard) Mount(r chi.Router) {
	r.Route("/ui", func(r chi.Router) {
		r.Use(securityHeaders)
		static, _ := fs.Sub(webFiles, "web/static")
		r.Handle("/static/*", http.StripPrefix("/ui/static/", http.FileServer(http.FS(static))))
		r.Get("/login", db.loginPage)
		r.Get("/login/start", db.loginStart)
		r.Get("/callback", db.callback)
		r.Post("/login/dev", db.devLogin)
		r.Post("/logout", db.logout)
		r.Group(func(r chi.Router) {
			r.Use(db.requireSession)
			r.Get("/", db.overview)
			r.Get("/certificates", db.certificates)
			r.Get("/certificates/{serial}", db.certificate)
			r.Get("/certificates/{serial}/revoke", db.revokeConfirm)
			r.Post("/certificates/{serial}/revoke", db.revoke)
			r.Get("/denials", db.denials)
			r.Get("/audit", db.audit)
			r.Get("/holds", db.holds)
			r.Get("/authz", db.authz)
		})
	})
	r.Get("/", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
}

// csp allows only the binary's own files: no inline script or style, no
// framing, forms post only here.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form posts, which the CSRF check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

type sessionKey struct{}

// requireSession sends a browser without a valid session to sign in, and
// refuses a session to which the current policy grants no operator role.
func (db *Dashboard) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := db.sessionFrom(r)
		if err != nil {
			db.internal(w, r, "reading the session", err)
			return
		}
		if s == nil {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		if !s.has(policy.RoleAuditor) && !s.has(policy.RoleRevoker) {
			db.fail(w, r, s, http.StatusForbidden, "Your account holds no operator role (auditor, revoker or admin).")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Session *session
	Dev     bool
	Data    any
}

func (db *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name, nav, title string, data any) {
	t := db.pages[name]
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.Execute(w, page{Title: title, Nav: nav, Session: sessionOf(r), Dev: db.cfg.DevLogin, Data: data}); err != nil {
		db.log.ErrorContext(r.Context(), "rendering a dashboard page", "page", name, "request_id", db.d.RequestID(r.Context()), "err", err)
	}
}

// fail renders an error page; detail is shown to the user and must not
// carry internal errors.
func (db *Dashboard) fail(w http.ResponseWriter, r *http.Request, s *session, status int, detail string) {
	if s != nil && sessionOf(r) == nil {
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, s))
	}
	db.render(w, r, status, "error", "", http.StatusText(status), map[string]any{
		"Status": status, "Detail": detail, "RequestID": db.d.RequestID(r.Context()),
	})
}

// internal logs err and renders a 500 (503 for an unavailable store).
func (db *Dashboard) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	db.log.ErrorContext(r.Context(), "dashboard: "+what, "request_id", db.d.RequestID(r.Context()), "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	db.fail(w, r, nil, status, "Something failed on our side; quote the request id when reporting it.")
}
