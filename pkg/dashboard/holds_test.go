package dashboard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

func TestHoldsPageListsTheIdentitiesOnHold(t *testing.T) {
	st := testkit.SQLite(t)
	clk := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	h, err := hold.New(st, clk, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte("trust_domain: example.org\n"))
	if err != nil {
		t.Fatal(err)
	}
	ds, ok := st.(Store)
	if !ok {
		t.Fatalf("%T is not a dashboard store", st)
	}
	db, err := New(Config{DevLogin: true, SessionLifetime: 8 * time.Hour, SessionIdleTimeout: 2 * time.Hour}, Deps{Log: slog.New(slog.DiscardHandler), Clock: clk, Store: ds, Holds: h, Policy: policy.NewHolder(pol)})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	db.Mount(r)
	rec := httptest.NewRecorder()
	// A development sign-in (every role), the quickest session to make here.
	if err := db.startSession(rec, httptest.NewRequest(http.MethodGet, "https://ca.example.org/ui/", nil), "local-admin", "", nil, true); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	get := func() (int, string) {
		req := httptest.NewRequest(http.MethodGet, "https://ca.example.org/ui/holds", nil)
		req.AddCookie(cookie)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		body, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(body)
	}

	code, body := get()
	if code != http.StatusOK || !strings.Contains(body, "No identity is on hold") {
		t.Fatalf("empty holds page: %d\n%s", code, body)
	}
	for _, id := range []string{"spiffe://example.org/prod/payments", "spiffe://example.org/ci/acme/<script>"} {
		if _, err := h.Place(context.Background(), hold.Request{SPIFFEID: id, Duration: time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita"}); err != nil {
			t.Fatal(err)
		}
	}
	code, body = get()
	if code != http.StatusOK {
		t.Fatalf("holds page: %d\n%s", code, body)
	}
	for _, want := range []string{"spiffe://example.org/prod/payments", "2031-01-02 04:04:05Z", "keyCompromise", "corp-idp:rita", "&lt;script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("holds page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("a SPIFFE ID is rendered unescaped")
	}
	// Ended holds are not listed.
	clk.Advance(time.Hour)
	if _, body = get(); !strings.Contains(body, "No identity is on hold") {
		t.Errorf("holds page after the holds ended still lists some:\n%s", body)
	}
	// Without a session, sign in first.
	req := httptest.NewRequest(http.MethodGet, "https://ca.example.org/ui/holds", nil)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusSeeOther {
		t.Errorf("anonymous /ui/holds = %d, want a redirect to sign in", w.Code)
	}
}
