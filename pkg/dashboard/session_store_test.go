package dashboard_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/dashboard"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// countingStore counts session writes and can make session reads fail as
// an unreachable database does.
type countingStore struct {
	dashboard.Store
	touches atomic.Int64
	down    atomic.Bool
}

func (c *countingStore) TouchSession(ctx context.Context, idHash string, now, idleUntil time.Time) error {
	c.touches.Add(1)
	return c.Store.TouchSession(ctx, idHash, now, idleUntil)
}

func (c *countingStore) GetSession(ctx context.Context, idHash string, now time.Time) (store.DashboardSession, error) {
	if c.down.Load() {
		return store.DashboardSession{}, fmt.Errorf("test: %w", store.ErrUnavailable)
	}
	return c.Store.GetSession(ctx, idHash, now)
}

func TestTheStoreKeepsOnlyTheSessionIDHash(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(testing.TB) store.Store) {
		f := newFixture(t, open(t))
		w := f.do(req{method: "POST", path: "/ui/login/dev", form: map[string][]string{}})
		c := cookieOf(w, sessionCookie)
		if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
			t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", c)
		}
		id, err := base64.RawURLEncoding.DecodeString(c.Value)
		if err != nil || len(id) != 32 {
			t.Fatalf("the cookie carries %q, want a 32-byte random ID (%v)", c.Value, err)
		}
		sum := sha256.Sum256(id)
		now := f.clock.Now()
		rec, err := f.st.GetSession(context.Background(), hex.EncodeToString(sum[:]), now)
		if err != nil {
			t.Fatalf("no session stored under the ID's SHA-256: %v", err)
		}
		if rec.Actor != "local-admin" || !rec.Dev || !rec.ExpiresAt.Equal(now.Add(8*time.Hour).Truncate(time.Microsecond)) ||
			!rec.IdleExpiresAt.Equal(now.Add(30*time.Minute).Truncate(time.Microsecond)) {
			t.Errorf("stored session %+v: want local-admin, dev, 8h lifetime, 30m idle", rec)
		}
		for _, key := range []string{c.Value, hex.EncodeToString(id)} {
			if _, err := f.st.GetSession(context.Background(), key, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the session is stored under the raw ID %q (%v)", key, err)
			}
		}
		if strings.Contains(string(rec.Claims), c.Value) {
			t.Error("the stored claims contain the session ID")
		}
	})
}

func TestSessionIdleEndMovesAtMostOnceAMinute(t *testing.T) {
	st := testkit.SQLite(t)
	f := newFixture(t, st)
	cs := &countingStore{Store: st.(dashboard.Store)}
	h := f.replicaWith(cs, func(*dashboard.Config) {})
	cookie := f.signInDev()
	for i := 0; i < 5; i++ {
		f.clock.Advance(10 * time.Second)
		if !f.signedIn(h, cookie) {
			t.Fatal("signed out while in use")
		}
	}
	if n := cs.touches.Load(); n != 0 {
		t.Errorf("%d session writes in the first minute, want none", n)
	}
	f.clock.Advance(15 * time.Second) // 65 s after sign-in
	f.signedIn(h, cookie)
	f.signedIn(h, cookie)
	if n := cs.touches.Load(); n != 1 {
		t.Errorf("%d session writes after a minute, want 1", n)
	}
}

func TestAnUnreachableStoreIsNotASignOut(t *testing.T) {
	st := testkit.SQLite(t)
	f := newFixture(t, st)
	cs := &countingStore{Store: st.(dashboard.Store)}
	h := f.replicaWith(cs, func(*dashboard.Config) {})
	cookie := f.signInDev()
	cs.down.Store(true)
	for _, path := range []string{"/ui/", "/ui/certificates/" + testSerial} {
		w := f.do(req{method: "GET", path: path, cookie: cookie, on: h})
		if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "unavailable: test") {
			t.Errorf("GET %s with the store down: %d, want 503 without internal detail", path, w.Code)
		}
	}
	w := f.do(req{method: "POST", path: "/ui/logout", cookie: cookie, form: map[string][]string{"csrf": {"x"}}, on: h})
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("logout with the store down: %d, want 503", w.Code)
	}
	cs.down.Store(false)
	if !f.signedIn(h, cookie) {
		t.Error("the session did not survive the outage")
	}
}

func TestTheLocalAdminSessionEndsWithTheDevelopmentSignIn(t *testing.T) {
	st := testkit.SQLite(t)
	f := newFixture(t, st)
	cookie := f.signInDev()
	prod := f.replicaWith(st.(dashboard.Store), func(c *dashboard.Config) { c.DevLogin = false })
	if w := f.do(req{method: "GET", path: "/ui/", cookie: cookie, on: prod}); w.Code != http.StatusForbidden {
		t.Errorf("a local-admin session on a replica without the development sign-in: %d, want 403", w.Code)
	}
	csrf := f.csrf(cookie)
	w := f.do(req{method: "POST", path: "/ui/certificates/" + testSerial + "/revoke", cookie: cookie, form: f.revokeForm(csrf), on: prod})
	if w.Code != http.StatusForbidden || len(f.revoker.Calls()) != 0 {
		t.Errorf("revoke as local admin without the development sign-in: %d, revocations %v", w.Code, f.revoker.Calls())
	}
}

func TestAnIdPSessionNeedsTheSameIdP(t *testing.T) {
	st := testkit.SQLite(t)
	f := newFixture(t, st)
	cookie := f.signInIdP(nil, "rita", "pki-revokers")
	other := f.replicaWith(st.(dashboard.Store), func(c *dashboard.Config) { c.IdP = nil })
	if w := f.do(req{method: "GET", path: "/ui/", cookie: cookie, on: other}); w.Code != http.StatusForbidden {
		t.Errorf("an IdP session on a replica without that IdP: %d, want 403", w.Code)
	}
}
