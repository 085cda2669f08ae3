package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Cookie names. __Host- cookies are Secure, host-only and Path=/.
const (
	sessionCookie = "__Host-wca_session"
	loginCookie   = "__Host-wca_login"
)

// Sessions are kept in the store (store.SessionStore), shared by every
// replica: the cookie carries only a random 256-bit session ID and the store
// only its SHA-256, so a copy of the table yields no usable cookie. A
// session ends at logout (a copied cookie is refused from then on), after
// SessionIdleTimeout without a request, and SessionLifetime after sign-in,
// whichever comes first; expired rows are pruned at every sign-in. Roles
// are not kept: every request, reads included, derives them from the
// current policy and the sign-in's ID token claims (an in-memory CEL
// evaluation beside the session read every request makes anyway), so a
// policy reload that takes a role away takes effect at the next click.

// sessionIDBytes is the entropy of a session ID.
const sessionIDBytes = 32

// maxClaimsBytes bounds the ID token claims kept with a session.
const maxClaimsBytes = 16 << 10

// session is who is signed in, for one request.
type session struct {
	Actor string
	// Roles are derived from the current policy for this request.
	Roles []policy.Role
	// CSRF is the form token of this session (derived from its ID).
	CSRF string
	Dev  bool

	idHash string
}

func (s *session) has(r policy.Role) bool { return s != nil && policy.HasRole(s.Roles, r) }

// loginState is what the sign-in redirect must come back with.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"`
}

var errBadCookie = errors.New("dashboard: cookie missing, forged or expired")

// sealer signs and checks the login-state cookie.
type sealer struct{ key []byte }

func (s sealer) seal(v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(raw)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(body)), nil
}

func (s sealer) open(value string, v any) error {
	body, sig, ok := strings.Cut(value, ".")
	if !ok {
		return errBadCookie
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(body)) {
		return errBadCookie
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return errBadCookie
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errBadCookie
	}
	return nil
}

func (s sealer) mac(body string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sessionID parses a session cookie's value: exactly sessionIDBytes of
// unpadded base64url, or nothing.
func sessionID(value string) ([]byte, bool) {
	if len(value) != base64.RawURLEncoding.EncodedLen(sessionIDBytes) {
		return nil, false
	}
	id, err := base64.RawURLEncoding.Strict().DecodeString(value)
	return id, err == nil && len(id) == sessionIDBytes
}

// sessionIDHash is what the store keeps of a session ID.
func sessionIDHash(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:])
}

// csrfToken is the session's form token: keyed by the session ID, so only
// the holder of the cookie can know it, and nothing needs storing.
func csrfToken(id []byte) string {
	m := hmac.New(sha256.New, id)
	m.Write([]byte("workload-ca dashboard csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// touchEvery is how stale a session's idle end may get before a request
// moves it: at most one write a minute per session, not one per click.
func (db *Dashboard) touchEvery() time.Duration {
	return min(time.Minute, db.cfg.SessionIdleTimeout/10)
}

// sessionFrom returns the session r's cookie names if the store holds it
// valid now, with roles derived from the current policy; nil (and no
// error) if there is none: no or forged cookie, ended, expired. An error
// means the store could not answer.
func (db *Dashboard) sessionFrom(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	id, ok := sessionID(c.Value)
	if !ok {
		return nil, nil
	}
	ctx, now := r.Context(), db.clock.Now()
	rec, err := db.d.Store.GetSession(ctx, sessionIDHash(id), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	if rec.IdleExpiresAt.Before(rec.ExpiresAt) && rec.IdleExpiresAt.Sub(now) < db.cfg.SessionIdleTimeout-db.touchEvery() {
		err := db.d.Store.TouchSession(ctx, rec.IDHash, now, now.Add(db.cfg.SessionIdleTimeout))
		if errors.Is(err, store.ErrNotFound) { // ended meanwhile (logout elsewhere)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("extending the session: %w", err)
		}
	}
	return &session{Actor: rec.Actor, Roles: db.rolesOf(rec), CSRF: csrfToken(id), Dev: rec.Dev, idHash: rec.IDHash}, nil
}

// rolesOf derives a session's roles now: for the local admin, all of them
// while the development sign-in is still enabled; for an IdP sign-in, what
// the current policy grants its claims, while the dashboard still signs in
// through that token issuer.
func (db *Dashboard) rolesOf(rec store.DashboardSession) []policy.Role {
	if rec.Dev {
		if !db.cfg.DevLogin {
			return nil
		}
		return []policy.Role{policy.RoleAdmin, policy.RoleAuditor, policy.RoleRevoker}
	}
	if db.cfg.IdP == nil || rec.TokenIssuer == "" || rec.TokenIssuer != db.cfg.IdP.TokenIssuer {
		return nil
	}
	var claims map[string]any
	if err := json.Unmarshal(rec.Claims, &claims); err != nil {
		return nil
	}
	return db.d.Policy.Load().Roles(rec.TokenIssuer, claims)
}

// startSession records a new session for actor in the store and sets its
// cookie. tokenIssuer and claims are what its roles will be derived from
// (none for the local admin, dev). Expired sessions are pruned here, so the
// table never holds more than the sign-ins of one SessionLifetime.
func (db *Dashboard) startSession(w http.ResponseWriter, r *http.Request, actor, tokenIssuer string, claims map[string]any, dev bool) error {
	raw := []byte("{}")
	if claims != nil {
		var err error
		if raw, err = json.Marshal(claims); err != nil {
			return fmt.Errorf("encoding the ID token claims: %w", err)
		}
	}
	if len(raw) > maxClaimsBytes {
		return &errSignIn{"claims_too_large", "the ID token carries too many claims"}
	}
	id := make([]byte, sessionIDBytes)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	ctx, now := r.Context(), db.clock.Now()
	rec := store.DashboardSession{IDHash: sessionIDHash(id), Actor: actor, TokenIssuer: tokenIssuer, Claims: raw, Dev: dev,
		CreatedAt: now, ExpiresAt: now.Add(db.cfg.SessionLifetime), IdleExpiresAt: now.Add(db.cfg.SessionIdleTimeout)}
	if err := db.d.Store.CreateSession(ctx, rec); err != nil {
		return fmt.Errorf("recording the session: %w", err)
	}
	if n, err := db.d.Store.PruneSessions(ctx, now); err != nil {
		db.log.WarnContext(ctx, "dashboard: pruning expired sessions failed", "request_id", db.d.RequestID(ctx), "err", err)
	} else if n > 0 {
		db.log.DebugContext(ctx, "dashboard: pruned expired sessions", "count", n)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(id), Path: "/",
		Expires: rec.ExpiresAt, MaxAge: int(db.cfg.SessionLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return nil
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}

// logout ends the session in the store, so that a copy of its cookie is
// refused on every replica from then on, and audits it. The form must carry
// the session's CSRF token and come from this origin.
func (db *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	s, err := db.sessionFrom(r)
	if err != nil {
		db.internal(w, r, "reading the session", err)
		return
	}
	if s == nil {
		clearCookie(w, sessionCookie)
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	if !checkCSRF(r, s) {
		db.fail(w, r, s, http.StatusForbidden, "The sign-out form expired or did not come from this dashboard; reload and try again.")
		return
	}
	if err := db.d.Store.DeleteSession(context.WithoutCancel(r.Context()), s.idHash); err != nil && !errors.Is(err, store.ErrNotFound) {
		db.internal(w, r, "ending the session", err)
		return
	}
	clearCookie(w, sessionCookie)
	db.auditSignOut(r, s)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (db *Dashboard) auditSignOut(r *http.Request, s *session) {
	details := fmt.Sprintf(`{"via":"dashboard","dev":%t}`, s.Dev)
	e := store.AuditEntry{Time: db.clock.Now(), Actor: clipStr(s.Actor, 256), Action: "signout", Target: "dashboard",
		Decision: "allow", PolicyVersion: db.d.Policy.Load().Version(),
		RequestID: db.d.RequestID(r.Context()), Details: []byte(details)}
	if _, err := db.d.Store.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		db.log.ErrorContext(r.Context(), "recording a sign-out failed", "request_id", e.RequestID, "err", err)
	}
	db.log.InfoContext(r.Context(), "dashboard sign-out", "request_id", e.RequestID, "actor", e.Actor)
}

// checkCSRF accepts a state-changing request only with the session's token
// in the form and, when the browser says where it comes from, from this
// origin.
func checkCSRF(r *http.Request, s *session) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return false
	}
	tok := r.PostFormValue("csrf")
	return s != nil && tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) == 1
}
