package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/policy"
)

// Cookie names. __Host- cookies are Secure, host-only and Path=/.
const (
	sessionCookie = "__Host-wca_session"
	loginCookie   = "__Host-wca_login"
)

// session is who is signed in. It lives in an HMAC-signed cookie, so any
// replica with the same key can read it and none keeps state.
type session struct {
	Actor   string        `json:"a"`
	Roles   []policy.Role `json:"r"`
	Expires int64         `json:"e"`
	CSRF    string        `json:"c"`
	Dev     bool          `json:"d,omitempty"`
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

// sealer signs and checks cookie values.
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

// sessionFrom returns the valid session of r, or nil.
func (db *Dashboard) sessionFrom(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var s session
	if err := db.seal.open(c.Value, &s); err != nil || db.clock.Now().Unix() >= s.Expires {
		return nil
	}
	return &s
}

// startSession sets the session cookie for actor with roles.
func (db *Dashboard) startSession(w http.ResponseWriter, actor string, roles []policy.Role, dev bool) error {
	exp := db.clock.Now().Add(db.cfg.SessionLifetime)
	v, err := db.seal.seal(session{Actor: actor, Roles: roles, Expires: exp.Unix(), CSRF: randomToken(), Dev: dev})
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", Expires: exp, MaxAge: int(db.cfg.SessionLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return nil
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
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
