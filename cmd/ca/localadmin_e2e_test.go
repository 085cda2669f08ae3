package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTheLocalAdminSignInNeedsTheDevelopmentPolicyAndTheSetting runs the
// real binary on SQLite and software keys and tries the local-admin
// sign-in from loopback: with a real policy file it is refused and absent
// from the login page even when dashboard.local_admin asks for it; with the
// development policy it needs the setting.
func TestTheLocalAdminSignInNeedsTheDevelopmentPolicyAndTheSetting(t *testing.T) {
	realPolicy := func(dir string) string {
		p := filepath.Join(dir, "policy.yaml")
		writeFile(t, p, "trust_domain: example.org\n", 0o644)
		return p
	}
	localAdminOn := func(dir string) string {
		p := filepath.Join(dir, "ca.yaml")
		writeFile(t, p, "dashboard:\n  local_admin: true\n", 0o644)
		return p
	}
	tests := []struct {
		name    string
		vars    func(dir string) map[string]string
		allowed bool
	}{
		{"a real policy file with local_admin: true is refused", func(dir string) map[string]string {
			return map[string]string{"CA_POLICY_FILE": realPolicy(dir), "CA_CONFIG": localAdminOn(dir)}
		}, false},
		{"the development policy without the setting is refused", func(string) map[string]string {
			return map[string]string{}
		}, false},
		{"the development policy with CA_DASHBOARD_LOCAL_ADMIN=true is allowed", func(string) map[string]string {
			return map[string]string{"CA_DASHBOARD_LOCAL_ADMIN": "true"}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			vars := tt.vars(dir)
			vars["CA_DATA_DIR"] = filepath.Join(dir, "data")
			s := startServe(t, vars)
			_, roots := s.bundle(t)
			c := &http.Client{Timeout: 10 * time.Second,
				Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			res, page := get(t, c, s.apiURL+"/ui/login")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("/ui/login = %d", res.StatusCode)
			}
			if offered := strings.Contains(string(page), "signin-dev"); offered != tt.allowed {
				t.Errorf("the login page offers the local admin: %v, want %v", offered, tt.allowed)
			}
			res, err := c.Post(s.apiURL+"/ui/login/dev", "application/x-www-form-urlencoded", strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var session bool
			for _, ck := range res.Cookies() {
				session = session || ck.Value != ""
			}
			if tt.allowed && (res.StatusCode != http.StatusSeeOther || !session) {
				t.Errorf("local-admin sign-in = %d (session cookie %v), want 303 with a session", res.StatusCode, session)
			}
			if !tt.allowed && (res.StatusCode != http.StatusForbidden || session) {
				t.Errorf("local-admin sign-in = %d (session cookie %v) %s, want 403 without a session", res.StatusCode, session, body)
			}
			s.stop(t)
		})
	}
}
