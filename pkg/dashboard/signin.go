package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// oidcClient is the IdP's discovered endpoints, made on first use so that a
// down IdP does not stop `ca serve` from starting.
type oidcClient struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	issuer   string // the policy's name for it
}

// loginTTL bounds the time from the redirect to the IdP to the callback.
const loginTTL = 10 * time.Minute

func (db *Dashboard) idp(ctx context.Context) (*oidcClient, error) {
	db.oidcMu.Lock()
	defer db.oidcMu.Unlock()
	if db.oidc != nil {
		return db.oidc, nil
	}
	cfg := db.cfg.IdP
	ti, ok := db.d.Policy.Load().IssuerByName(cfg.TokenIssuer)
	if !ok {
		return nil, fmt.Errorf("the policy has no token issuer %q for the dashboard", cfg.TokenIssuer)
	}
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	p, err := oidc.NewProvider(ctx, ti.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovering the IdP %s: %w", ti.Issuer, err)
	}
	db.oidc = &oidcClient{
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: db.cfg.ExternalURL + "/ui/callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups"},
		},
		verifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: db.clock.Now}),
		issuer:   cfg.TokenIssuer,
	}
	return db.oidc, nil
}

func (db *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	db.render(w, r, http.StatusOK, "login", "", "Sign in", map[string]any{
		"IdP": db.cfg.IdP != nil, "DevAllowed": db.cfg.DevLogin && loopback(r),
	})
}

// loginStart redirects to the IdP's authorization endpoint with a fresh
// state, nonce and PKCE verifier kept in a short-lived signed cookie.
func (db *Dashboard) loginStart(w http.ResponseWriter, r *http.Request) {
	if db.cfg.IdP == nil {
		db.fail(w, r, nil, http.StatusNotFound, "Sign-in through an IdP is not configured.")
		return
	}
	c, err := db.idp(r.Context())
	if err != nil {
		db.log.WarnContext(r.Context(), "dashboard sign-in: IdP unavailable", "request_id", db.d.RequestID(r.Context()), "err", err)
		db.fail(w, r, nil, http.StatusServiceUnavailable, "The identity provider cannot be reached; try again later.")
		return
	}
	st := loginState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Expires: db.clock.Now().Add(loginTTL).Unix()}
	v, err := db.seal.seal(st)
	if err != nil {
		db.internal(w, r, "sealing the login state", err)
		return
	}
	// Lax, not Strict: it must come back on the IdP's top-level redirect.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: v, Path: "/", MaxAge: int(loginTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, c.oauth.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

// errSignIn is a refused sign-in; its text is shown to the user.
type errSignIn struct{ reason, detail string }

func (e *errSignIn) Error() string { return e.reason + ": " + e.detail }

// callback finishes the authorization code flow: state, code exchange with
// the PKCE verifier, ID token signature, audience, expiry and nonce; then
// roles from the policy for the token's claims. Every outcome is audited.
func (db *Dashboard) callback(w http.ResponseWriter, r *http.Request) {
	actor, roles, claims, err := db.finishLogin(w, r)
	clearCookie(w, loginCookie)
	var refused *errSignIn
	switch {
	case errors.As(err, &refused):
		db.auditSignIn(r, actor, "deny", refused.reason, roles)
		db.fail(w, r, nil, http.StatusForbidden, "Sign-in refused: "+refused.detail)
		return
	case err != nil:
		db.auditSignIn(r, actor, "deny", "idp_unavailable", nil)
		db.log.WarnContext(r.Context(), "dashboard sign-in failed", "request_id", db.d.RequestID(r.Context()), "err", err)
		db.fail(w, r, nil, http.StatusBadGateway, "The identity provider's answer could not be used; try again.")
		return
	}
	if err := db.startSession(w, r, actor, db.cfg.IdP.TokenIssuer, claims, false); err != nil {
		if errors.As(err, &refused) {
			db.auditSignIn(r, actor, "deny", refused.reason, roles)
			db.fail(w, r, nil, http.StatusForbidden, "Sign-in refused: "+refused.detail)
			return
		}
		db.internal(w, r, "starting a session", err)
		return
	}
	db.auditSignIn(r, actor, "allow", "", roles)
	db.signedIn(w, r)
}

func (db *Dashboard) finishLogin(w http.ResponseWriter, r *http.Request) (actor string, roles []policy.Role, claims map[string]any, err error) {
	if db.cfg.IdP == nil {
		return "", nil, nil, &errSignIn{"not_configured", "sign-in through an IdP is not configured"}
	}
	ck, cerr := r.Cookie(loginCookie)
	var st loginState
	if cerr != nil || db.seal.open(ck.Value, &st) != nil || db.clock.Now().Unix() >= st.Expires {
		return "", nil, nil, &errSignIn{"login_state_missing", "the sign-in took too long or did not start here; start again"}
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return "", nil, nil, &errSignIn{"idp_refused", "the identity provider said " + clipStr(e, 64)}
	}
	if q.Get("state") == "" || q.Get("state") != st.State {
		return "", nil, nil, &errSignIn{"login_state_mismatch", "the sign-in answer does not belong to this browser"}
	}
	c, err := db.idp(r.Context())
	if err != nil {
		return "", nil, nil, err
	}
	ctx := r.Context()
	if db.cfg.IdP.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, db.cfg.IdP.HTTPClient)
	}
	tok, err := c.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return "", nil, nil, fmt.Errorf("exchanging the code: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return "", nil, nil, &errSignIn{"id_token_missing", "the identity provider sent no ID token"}
	}
	idt, err := c.verifier.Verify(oidc.ClientContext(r.Context(), db.cfg.IdP.HTTPClient), raw)
	if err != nil {
		return "", nil, nil, &errSignIn{"id_token_invalid", "the ID token does not verify"}
	}
	if idt.Nonce != st.Nonce {
		return "", nil, nil, &errSignIn{"id_token_nonce", "the ID token was not issued for this sign-in"}
	}
	if err := idt.Claims(&claims); err != nil {
		return "", nil, nil, &errSignIn{"id_token_invalid", "the ID token's claims cannot be read"}
	}
	actor = c.issuer + ":" + idt.Subject
	roles = db.d.Policy.Load().Roles(c.issuer, claims)
	if !policy.HasRole(roles, policy.RoleAuditor) && !policy.HasRole(roles, policy.RoleRevoker) {
		return actor, roles, nil, &errSignIn{"forbidden", "the policy grants this account no operator role"}
	}
	return actor, roles, claims, nil
}

// signedIn answers the callback with a page that moves on to the overview:
// the session cookie is SameSite=Strict, and a redirect chain that started at
// the IdP would not carry it.
func (db *Dashboard) signedIn(w http.ResponseWriter, r *http.Request) {
	db.render(w, r, http.StatusOK, "signedin", "", "Signed in", nil)
}

// devLogin signs in the local admin of the development setup: only when
// enabled, only from loopback, only from this origin.
func (db *Dashboard) devLogin(w http.ResponseWriter, r *http.Request) {
	if !db.cfg.DevLogin || !loopback(r) {
		db.auditSignIn(r, "local-admin", "deny", "dev_login_refused", nil)
		db.fail(w, r, nil, http.StatusForbidden, "The local admin sign-in is only for the development setup, from loopback.")
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); (site != "" && site != "same-origin") || (r.Header.Get("Origin") != "" && r.Header.Get("Origin") != "https://"+r.Host) {
		db.fail(w, r, nil, http.StatusForbidden, "Cross-site sign-in refused.")
		return
	}
	roles := []policy.Role{policy.RoleAdmin, policy.RoleAuditor, policy.RoleRevoker}
	if err := db.startSession(w, r, "local-admin", "", nil, true); err != nil {
		db.internal(w, r, "starting a session", err)
		return
	}
	db.auditSignIn(r, "local-admin", "allow", "", roles)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (db *Dashboard) auditSignIn(r *http.Request, actor, decision, reason string, roles []policy.Role) {
	if actor == "" {
		actor = "anonymous"
	}
	details := fmt.Sprintf(`{"via":"dashboard","roles":%q}`, fmt.Sprint(roles))
	e := store.AuditEntry{Time: db.clock.Now(), Actor: clipStr(actor, 256), Action: "signin", Target: "dashboard",
		Decision: decision, Reason: reason, PolicyVersion: db.d.Policy.Load().Version(),
		RequestID: db.d.RequestID(r.Context()), Details: []byte(details)}
	if _, err := db.d.Store.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		db.log.ErrorContext(r.Context(), "recording a sign-in failed", "request_id", e.RequestID, "err", err)
	}
	db.log.InfoContext(r.Context(), "dashboard sign-in", "request_id", e.RequestID, "actor", e.Actor,
		"decision", decision, "reason", reason, "policy_version", e.PolicyVersion)
}

func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func clipStr(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
