package dashboard_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/dashboard"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

const (
	caURL         = "https://ca.test"
	clientID      = "workload-ca-dashboard"
	sessionCookie = "__Host-wca_session"
	loginCookie   = "__Host-wca_login"
	testSerial    = "1a2b3c4d5e6f7081"
)

// backends are the real stores the session tests run against.
var backends = []struct {
	name string
	open func(t testing.TB) store.Store
}{
	{"sqlite", testkit.SQLite},
	{"postgres", testkit.Postgres},
}

// forBackends runs test once per real store.
func forBackends(t *testing.T, test func(t *testing.T, open func(t testing.TB) store.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.open) })
	}
}

// policyYAML grants the IdP's pki-revokers the revoker role (or, when
// revokers is false, only auditor) and pki-auditors the auditor role.
func policyYAML(idpURL string, revokers bool) string {
	role := "revoker"
	if !revokers {
		role = "auditor"
	}
	return `trust_domain: example.org
token_issuers:
  - name: corp-idp
    issuer: ` + idpURL + `
    audience: ` + clientID + `
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
  - role: ` + role + `
    issuer: corp-idp
    when: '"pki-revokers" in claims.groups'
`
}

func mustPolicy(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// fakeRevoker records what the dashboard asked to revoke.
type fakeRevoker struct {
	mu    sync.Mutex
	calls []string // serial|reason|actor
}

func (f *fakeRevoker) Revoke(_ context.Context, serial, reason, actor, _ string) (store.Certificate, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, serial+"|"+reason+"|"+actor)
	return store.Certificate{Serial: serial, Status: store.CertRevoked}, true, nil
}

func (f *fakeRevoker) RevokeMany(_ context.Context, scope store.RevokeScope, reason, actor, _ string) ([]store.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, scope.Serial+"|"+reason+"|"+actor)
	return []store.Certificate{{Serial: scope.Serial, Status: store.CertRevoked}}, nil
}

func (f *fakeRevoker) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// fixture is one dashboard (a replica) on a real store, with the test IdP.
type fixture struct {
	t       *testing.T
	st      store.Store
	clock   *clock.Fake
	idp     *testkit.OIDCLogin
	pol     *policy.Holder
	revoker *fakeRevoker
	key     []byte // shared by the replicas, as the configuration says
	h       http.Handler
}

// newFixture starts a dashboard on st; the clock starts at the real time
// (the test IdP signs ID tokens with it).
func newFixture(t *testing.T, st store.Store) *fixture {
	t.Helper()
	f := &fixture{t: t, st: st, clock: clock.NewFake(time.Now()), idp: testkit.NewOIDCLogin(t, clientID), revoker: &fakeRevoker{},
		key: make([]byte, 32)}
	_, _ = rand.Read(f.key)
	f.pol = policy.NewHolder(mustPolicy(t, policyYAML(f.idp.URL, true)))
	f.h = f.replica()
	ctx := context.Background()
	now := f.clock.Now()
	if err := st.InsertIssuer(ctx, store.Issuer{ID: "root-1", Kind: store.KindRoot, KeyURI: "soft:root-1", CertDER: []byte{0x30, 0x03},
		SubjectKeyID: []byte{1}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), State: store.IssuerActive,
		CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	c := store.Certificate{Serial: testSerial, IssuerID: "root-1", SPIFFEID: "spiffe://example.org/ci/acme/ledger",
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(12 * time.Hour), DER: []byte{0x30, 0x01}, PublicKeySHA256: "ab",
		Status: store.CertActive, Provenance: json.RawMessage(`{}`), PolicyRule: "r", PolicyVersion: "v", CreatedAt: now}
	if _, err := st.RecordIssuance(ctx, c, store.AuditEntry{Time: now, Actor: "ci", Action: "issue", Target: testSerial, Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// replica is another dashboard process on the same store, policy and clock.
func (f *fixture) replica() http.Handler {
	f.t.Helper()
	ds, ok := f.st.(dashboard.Store)
	if !ok {
		f.t.Fatalf("%T is not a dashboard.Store", f.st)
	}
	return f.replicaWith(ds, func(*dashboard.Config) {})
}

// replicaWith is a replica on ds whose configuration edit changed.
func (f *fixture) replicaWith(ds dashboard.Store, edit func(*dashboard.Config)) http.Handler {
	f.t.Helper()
	cfg := dashboard.Config{
		ExternalURL: caURL, DevLogin: true, SessionLifetime: 8 * time.Hour, SessionKey: f.key,
		IdP: &dashboard.IdP{TokenIssuer: "corp-idp", ClientID: clientID, HTTPClient: f.idp.Client()},
	}
	edit(&cfg)
	db, err := dashboard.New(cfg, dashboard.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: f.clock, Store: ds, Revoker: f.revoker, Policy: f.pol})
	if err != nil {
		f.t.Fatal(err)
	}
	r := chi.NewRouter()
	db.Mount(r)
	return r
}

// req is one browser request: from loopback, with the session cookie (if
// any); a POST is a same-origin form post unless headers say otherwise.
type req struct {
	method, path string
	cookie       string
	form         url.Values
	headers      map[string]string
	extra        []*http.Cookie
	on           http.Handler
}

func (f *fixture) do(q req) *httptest.ResponseRecorder {
	f.t.Helper()
	var body io.Reader
	if q.form != nil {
		body = strings.NewReader(q.form.Encode())
	}
	r := httptest.NewRequest(q.method, caURL+q.path, body)
	r.RemoteAddr = "127.0.0.1:40000"
	if q.form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if q.method == http.MethodPost {
		r.Header.Set("Origin", caURL)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range q.headers {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	if q.cookie != "" {
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: q.cookie})
	}
	for _, c := range q.extra {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h := q.on
	if h == nil {
		h = f.h
	}
	h.ServeHTTP(w, r)
	return w
}

func cookieOf(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signInDev signs in as the development setup's local admin.
func (f *fixture) signInDev() string {
	f.t.Helper()
	w := f.do(req{method: http.MethodPost, path: "/ui/login/dev", form: url.Values{}})
	c := cookieOf(w, sessionCookie)
	if w.Code != http.StatusSeeOther || c == nil || c.Value == "" {
		f.t.Fatalf("dev sign-in: %d, cookie %v\n%s", w.Code, c, w.Body)
	}
	return c.Value
}

// signInIdP signs sub with groups in through the test IdP (authorization
// code with PKCE) on handler h (nil: the fixture's).
func (f *fixture) signInIdP(h http.Handler, sub string, groups ...any) string {
	f.t.Helper()
	f.idp.SetUser(map[string]any{"sub": sub, "groups": groups})
	start := f.do(req{method: http.MethodGet, path: "/ui/login/start", on: h})
	login := cookieOf(start, loginCookie)
	if start.Code != http.StatusFound || login == nil {
		f.t.Fatalf("login start: %d\n%s", start.Code, start.Body)
	}
	client := *f.idp.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := client.Get(start.Header().Get("Location"))
	if err != nil {
		f.t.Fatal(err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if err != nil || back.Path != "/ui/callback" {
		f.t.Fatalf("the IdP redirected to %q (%v)", res.Header.Get("Location"), err)
	}
	w := f.do(req{method: http.MethodGet, path: back.RequestURI(), extra: []*http.Cookie{login}, on: h})
	c := cookieOf(w, sessionCookie)
	if w.Code != http.StatusOK || c == nil || c.Value == "" {
		f.t.Fatalf("callback: %d, cookie %v\n%s", w.Code, c, w.Body)
	}
	return c.Value
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the session's form token from a page, as the browser has it.
func (f *fixture) csrf(cookie string) string {
	f.t.Helper()
	w := f.do(req{method: http.MethodGet, path: "/ui/", cookie: cookie})
	m := csrfField.FindStringSubmatch(w.Body.String())
	if w.Code != http.StatusOK || m == nil {
		f.t.Fatalf("overview: %d, no CSRF token\n%s", w.Code, w.Body)
	}
	return m[1]
}

// signedIn tells whether cookie opens the overview (h nil: the fixture's);
// it fails the test on anything but the overview or a redirect to sign in.
func (f *fixture) signedIn(h http.Handler, cookie string) bool {
	f.t.Helper()
	w := f.do(req{method: http.MethodGet, path: "/ui/", cookie: cookie, on: h})
	switch {
	case w.Code == http.StatusOK:
		return true
	case w.Code == http.StatusSeeOther && w.Header().Get("Location") == "/ui/login":
		return false
	}
	f.t.Fatalf("GET /ui/: %d %s\n%s", w.Code, w.Header().Get("Location"), w.Body)
	return false
}

func (f *fixture) revokeForm(csrf string) url.Values {
	return url.Values{"csrf": {csrf}, "reason": {"keyCompromise"}, "confirm": {testSerial}}
}

func auditActions(t *testing.T, st store.Store) []string {
	t.Helper()
	entries, err := st.AuditEntries(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Action+"/"+e.Decision+"/"+e.Actor)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestForgedSessionCookiesAreRefused(t *testing.T) {
	f := newFixture(t, testkit.SQLite(t))
	real := f.signInIdP(nil, "rita", "pki-revokers")
	raw, err := base64.RawURLEncoding.DecodeString(real)
	if err != nil {
		t.Fatalf("the session cookie is not base64url: %v", err)
	}
	digest := sha256.Sum256(raw)
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	forged := []struct{ name, value string }{
		{"a random session ID", base64.RawURLEncoding.EncodeToString(random)},
		{"the session ID's SHA-256, as a database read yields it", base64.RawURLEncoding.EncodeToString(digest[:])},
		{"a signed-cookie lookalike", base64.RawURLEncoding.EncodeToString([]byte(`{"a":"local-admin","r":["admin"],"e":9999999999}`)) + ".AAAA"},
		{"the real ID with one character changed", flip(real)},
		{"the real ID with a suffix", real + "A"},
		{"garbage", "%%%"},
	}
	for _, c := range forged {
		t.Run(c.name, func(t *testing.T) {
			if f.signedIn(nil, c.value) {
				t.Errorf("a forged cookie (%s) opened the dashboard", c.name)
			}
		})
	}
	if !f.signedIn(nil, real) {
		t.Error("the real cookie does not open the dashboard")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[3] == 'A' {
		b[3] = 'B'
	} else {
		b[3] = 'A'
	}
	return string(b)
}

func TestSessionsExpire(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(testing.TB) store.Store) {
		t.Run("a session used every 20 minutes ends 8 hours after sign-in", func(t *testing.T) {
			f := newFixture(t, open(t))
			cookie := f.signInDev()
			start := f.clock.Now()
			for f.clock.Now().Sub(start) < 8*time.Hour-20*time.Minute {
				f.clock.Advance(20 * time.Minute)
				if !f.signedIn(nil, cookie) {
					t.Fatalf("the session ended %v after sign-in", f.clock.Now().Sub(start))
				}
			}
			f.clock.Set(start.Add(8 * time.Hour))
			if f.signedIn(nil, cookie) {
				t.Error("the session outlived its 8 hour lifetime")
			}
		})
		t.Run("a session unused for 30 minutes ends", func(t *testing.T) {
			f := newFixture(t, open(t))
			cookie := f.signInDev()
			f.clock.Advance(29 * time.Minute)
			if !f.signedIn(nil, cookie) {
				t.Fatal("the session ended after 29 idle minutes")
			}
			f.clock.Advance(29 * time.Minute) // 58 minutes after sign-in, 29 after the last use
			if !f.signedIn(nil, cookie) {
				t.Fatal("using the session did not extend its idle end")
			}
			f.clock.Advance(30 * time.Minute)
			if f.signedIn(nil, cookie) {
				t.Error("the session survived 30 idle minutes")
			}
		})
	})
}

func TestLogoutEndsACopiedCookieOnEveryReplica(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(testing.TB) store.Store) {
		f := newFixture(t, open(t))
		other := f.replica()
		cookie := f.signInIdP(nil, "rita", "pki-revokers")
		copied := cookie // an attacker's copy of the cookie
		if !f.signedIn(other, copied) {
			t.Fatal("another replica does not know the session")
		}
		csrf := f.csrf(cookie)

		// A cross-site sign-out is refused and ends nothing.
		w := f.do(req{method: http.MethodPost, path: "/ui/logout", cookie: cookie, form: url.Values{"csrf": {csrf}},
			headers: map[string]string{"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"}})
		if w.Code != http.StatusForbidden {
			t.Errorf("cross-site logout: %d, want 403", w.Code)
		}
		if !f.signedIn(nil, cookie) {
			t.Fatal("a cross-site logout ended the session")
		}

		w = f.do(req{method: http.MethodPost, path: "/ui/logout", cookie: cookie, form: url.Values{"csrf": {csrf}}})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/login" {
			t.Fatalf("logout: %d %s", w.Code, w.Header().Get("Location"))
		}
		if c := cookieOf(w, sessionCookie); c == nil || c.MaxAge >= 0 {
			t.Errorf("logout did not clear the cookie: %v", c)
		}
		if f.signedIn(nil, copied) {
			t.Error("a copy of the cookie still opens the dashboard after logout")
		}
		if f.signedIn(other, copied) {
			t.Error("a copy of the cookie still opens the dashboard on another replica after logout")
		}
		w = f.do(req{method: http.MethodPost, path: "/ui/certificates/" + testSerial + "/revoke", cookie: copied, form: f.revokeForm(csrf), on: other})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/login" || len(f.revoker.Calls()) != 0 {
			t.Errorf("revoke with the logged-out cookie: %d %s, revocations %v", w.Code, w.Header().Get("Location"), f.revoker.Calls())
		}
		acts := auditActions(t, f.st)
		for _, want := range []string{"signin/allow/corp-idp:rita", "signout/allow/corp-idp:rita"} {
			if !contains(acts, want) {
				t.Errorf("audit log %v lacks %s", acts, want)
			}
		}
	})
}

func TestCrossSiteRevokeIsRefused(t *testing.T) {
	f := newFixture(t, testkit.SQLite(t))
	cookie := f.signInIdP(nil, "rita", "pki-revokers")
	csrf := f.csrf(cookie)
	otherCSRF := f.csrf(f.signInIdP(nil, "rob", "pki-revokers"))
	path := "/ui/certificates/" + testSerial + "/revoke"
	cases := []struct {
		name    string
		form    url.Values
		headers map[string]string
	}{
		{"a post from another origin is refused", f.revokeForm(csrf), map[string]string{"Origin": "https://evil.test"}},
		{"a post from a sibling subdomain is refused", f.revokeForm(csrf), map[string]string{"Origin": "https://x.ca.test"}},
		{"a plain-HTTP origin is refused", f.revokeForm(csrf), map[string]string{"Origin": "http://ca.test"}},
		{"an opaque (null) origin is refused", f.revokeForm(csrf), map[string]string{"Origin": "null"}},
		{"a cross-site fetch is refused", f.revokeForm(csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"a same-site (not same-origin) fetch is refused", f.revokeForm(csrf), map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"a post without the CSRF token is refused", url.Values{"reason": {"keyCompromise"}, "confirm": {testSerial}}, nil},
		{"a post without the CSRF token or Origin is refused", url.Values{"reason": {"keyCompromise"}, "confirm": {testSerial}},
			map[string]string{"Origin": "", "Sec-Fetch-Site": ""}},
		{"another session's CSRF token is refused", f.revokeForm(otherCSRF), nil},
		{"the CSRF token in the query string is refused", url.Values{"reason": {"keyCompromise"}, "confirm": {testSerial}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := path
			if strings.Contains(c.name, "query string") {
				p += "?csrf=" + url.QueryEscape(csrf)
			}
			w := f.do(req{method: http.MethodPost, path: p, cookie: cookie, form: c.form, headers: c.headers})
			if w.Code != http.StatusForbidden {
				t.Errorf("got %d, want 403", w.Code)
			}
			if calls := f.revoker.Calls(); len(calls) != 0 {
				t.Fatalf("the certificate was revoked: %v", calls)
			}
		})
	}
	w := f.do(req{method: http.MethodPost, path: path, cookie: cookie, form: f.revokeForm(csrf)})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("a same-origin revoke with the token: %d\n%s", w.Code, w.Body)
	}
	if calls := f.revoker.Calls(); len(calls) != 1 || calls[0] != testSerial+"|keyCompromise|corp-idp:rita" {
		t.Errorf("revocations %v, want one by corp-idp:rita", calls)
	}
}

func TestRoleRemovedFromPolicyAfterSignIn(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(testing.TB) store.Store) {
		f := newFixture(t, open(t))
		cookie := f.signInIdP(nil, "rita", "pki-revokers")
		csrf := f.csrf(cookie)
		w := f.do(req{method: http.MethodGet, path: "/ui/certificates/" + testSerial + "/revoke", cookie: cookie})
		if w.Code != http.StatusOK {
			t.Fatalf("the revoker cannot open the revoke form: %d", w.Code)
		}

		// The policy is reloaded: pki-revokers are now only auditors.
		f.pol.Swap(mustPolicy(t, policyYAML(f.idp.URL, false)))
		w = f.do(req{method: http.MethodPost, path: "/ui/certificates/" + testSerial + "/revoke", cookie: cookie, form: f.revokeForm(csrf)})
		if w.Code != http.StatusForbidden {
			t.Errorf("revoke after the revoker role was removed: %d, want 403", w.Code)
		}
		if calls := f.revoker.Calls(); len(calls) != 0 {
			t.Fatalf("the certificate was revoked by a session whose role was removed: %v", calls)
		}
		w = f.do(req{method: http.MethodGet, path: "/ui/certificates/" + testSerial, cookie: cookie})
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), `id="revoke-link"`) {
			t.Errorf("after the reload the detail page still offers revoking (%d)", w.Code)
		}

		// A policy without any role for the account: no page at all.
		f.pol.Swap(mustPolicy(t, `trust_domain: example.org
token_issuers:
  - name: corp-idp
    issuer: `+f.idp.URL+`
    audience: `+clientID+`
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
`))
		if w := f.do(req{method: http.MethodGet, path: "/ui/", cookie: cookie}); w.Code != http.StatusForbidden {
			t.Errorf("overview for a session that lost every role: %d, want 403", w.Code)
		}

		// Given back, the same session works again without signing in.
		f.pol.Swap(mustPolicy(t, policyYAML(f.idp.URL, true)))
		w = f.do(req{method: http.MethodPost, path: "/ui/certificates/" + testSerial + "/revoke", cookie: cookie, form: f.revokeForm(csrf)})
		if w.Code != http.StatusSeeOther || len(f.revoker.Calls()) != 1 {
			t.Errorf("revoke after the role came back: %d, revocations %v", w.Code, f.revoker.Calls())
		}
	})
}
