package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

const dashboardClientID = "workload-ca-dashboard"

// chromiumPath finds Debian's chromium: skipped loudly without it, a failure
// with CI=true.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but chromium is not installed (apt-get install chromium): the dashboard browser test cannot run")
	}
	t.Skip("SKIPPED LOUDLY: chromium is not installed (apt-get install chromium); the dashboard browser test did not run")
	return ""
}

// artifactsDir is TEST_ARTIFACTS_DIR (created) or a temp dir.
func artifactsDir(t *testing.T) string {
	if d := os.Getenv("TEST_ARTIFACTS_DIR"); d != "" {
		d = filepath.Join(d, "dashboard")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestDashboardInChromium drives the real dashboard of a real `ca serve`
// (Postgres, SoftHSM) in headless Chromium: a revoker signs in through the
// test IdP (authorization code + PKCE), searches for a certificate, opens
// it, revokes it with a reason and confirmation and sees the status change;
// an auditor signs in and finds no revoke action, and the revoke page
// refuses them. Screenshots are saved as artifacts.
func TestDashboardInChromium(t *testing.T) {
	chrome := chromiumPath(t)
	dbURL := testkit.PostgresURL(t)
	tok := testkit.SoftHSM(t)
	ci := testkit.NewOIDCIssuer(t)
	idp := testkit.NewOIDCLogin(t, dashboardClientID)
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyPath, `trust_domain: `+e2eTrustDomain+`
token_issuers:
  - name: ci
    issuer: `+ci.URL+`
    audience: `+testkit.DefaultOIDCAudience+`
  - name: corp-idp
    issuer: `+idp.URL+`
    audience: `+dashboardClientID+`
rules:
  - name: github-acme
    issuer: ci
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://`+e2eTrustDomain+`/gh/{{claims.repository|path}}
    max_ttl: 1h
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
  - role: revoker
    issuer: corp-idp
    when: '"pki-revokers" in claims.groups'
`, 0o644)
	// The authorization policy of authz_e2e_test.go: payments in observe
	// mode, for /ui/authz.
	authzPath := filepath.Join(dir, "authz.yaml")
	writeFile(t, authzPath, authzE2EPolicy("observe"), 0o644)
	cfgPath := filepath.Join(dir, "ca.yaml")
	writeFile(t, cfgPath, "enroll:\n  token_issuer_ca_file: "+issuerCAFile(t, ci, dir)+"\ndashboard:\n  idp: corp-idp\nauthz_policy_file: "+authzPath+"\n", 0o644)
	vars := map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Module,
		"CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
	}
	if out, errOut, code := runCA(t, vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	s := startServe(t, vars)
	_, roots := s.bundle(t)
	api := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	// enroll returns the certificate's serial and its key pair with chain.
	enroll := func(repo string) (string, tls.Certificate) {
		t.Helper()
		key := p256(t)
		body, _ := json.Marshal(server.CertRequest{CSR: string(newCSR(t, key, nil))})
		req, _ := http.NewRequest(http.MethodPost, s.apiURL+"/v1/enroll", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+ci.GitHubToken(t, map[string]any{"repository": repo}))
		req.Header.Set("Content-Type", "application/json")
		res, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var got server.CertResponse
		if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != 201 {
			t.Fatalf("enroll %s: %d %v", repo, res.StatusCode, err)
		}
		pair := tls.Certificate{PrivateKey: key}
		for rest := []byte(got.Certificate + got.Chain); ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			pair.Certificate = append(pair.Certificate, b.Bytes)
		}
		return got.Serial, pair
	}
	target, _ := enroll("acme/ledger")
	other, paymentsPair := enroll("acme/payments")
	enroll("acme/search")
	seedAuthzReport(t, s.apiURL, dbURL, roots, paymentsPair)

	shots := artifactsDir(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.Flag("disable-quic", true),
		// The CA's API certificate and the test IdP's are not in the
		// browser's trust store; only this test browser ignores that.
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1280, 900))
	screenshot := func(ctx context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG, below: JPEG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(shots, name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	text := func(ctx context.Context, id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return strings.TrimSpace(v)
	}
	do := func(ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, s.stderr)
		}
	}
	// signIn starts a fresh browser (no cookies) and signs in through the IdP.
	signIn := func(sub string, groups ...any) (context.Context, context.CancelFunc) {
		t.Helper()
		idp.SetUser(map[string]any{"sub": sub, "groups": groups, "email": sub + "@example.org"})
		// Its own profile directory: a browser started on the profile of
		// one that is still shutting down joins that one, cookies and all.
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, chromedp.UserDataDir(t.TempDir()))...)
		ctx, cancel := chromedp.NewContext(allocCtx)
		ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
		do(ctx, "sign-in as "+sub,
			chromedp.Navigate(s.apiURL+"/ui/"),
			chromedp.WaitVisible(chromedp.ID("signin-idp")),
			chromedp.Click(chromedp.ID("signin-idp")),
			chromedp.WaitVisible(chromedp.ID("count-active")),
		)
		return ctx, func() { cancelT(); cancel(); cancelAlloc() }
	}

	ctx, done := signIn("rita", "pki-revokers")
	if actor, active := text(ctx, "actor"), text(ctx, "count-active"); actor != "corp-idp:rita" || active == "0" {
		t.Errorf("overview shows actor %q and %s active", actor, active)
	}
	screenshot(ctx, "1-overview")
	do(ctx, "search",
		chromedp.Navigate(s.apiURL+"/ui/certificates"),
		chromedp.WaitVisible(chromedp.ID("search")),
		chromedp.SendKeys(chromedp.ID("search"), "acme/ledger"),
		chromedp.Click(chromedp.ID("search-button")),
		chromedp.WaitVisible(chromedp.CSS(`#certificates tbody a`)),
	)
	screenshot(ctx, "2-search")
	do(ctx, "open the certificate",
		chromedp.Click(chromedp.CSS(`#certificates tbody a`)),
		chromedp.WaitVisible(chromedp.ID("cert-serial")),
	)
	if serial, status := text(ctx, "cert-serial"), text(ctx, "cert-status"); serial != target || status != "active" {
		t.Fatalf("search found %s (%s), want %s active", serial, status, target)
	}
	screenshot(ctx, "3-certificate-detail")
	do(ctx, "open the revoke form",
		chromedp.Click(chromedp.ID("revoke-link")),
		chromedp.WaitVisible(chromedp.ID("revoke-form")),
		chromedp.SetValue(chromedp.ID("reason"), "superseded"),
		chromedp.SendKeys(chromedp.ID("confirm"), target),
	)
	screenshot(ctx, "4-revoke-confirmation")
	do(ctx, "revoke",
		chromedp.Click(chromedp.ID("revoke-submit")),
		chromedp.WaitVisible(chromedp.ID("revoked-notice")),
	)
	if status := text(ctx, "cert-status"); status != "revoked" {
		t.Errorf("after revoking, status %q", status)
	}
	screenshot(ctx, "5-revoked")
	// The authorization page is the auditors': the revoker-only rita is
	// refused it.
	do(ctx, "revoker opens the authorization page",
		chromedp.Navigate(s.apiURL+"/ui/authz"),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if errText := text(ctx, "error"); !strings.Contains(errText, "auditor role") {
		t.Errorf("revoker on the authorization page: %q", errText)
	}
	do(ctx, "back to the overview",
		chromedp.Navigate(s.apiURL+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("count-active")),
	)

	// Sign out, then replay a copy of the session cookie taken before: the
	// session is ended in the database, so the copy opens nothing.
	copied := browserCookie(t, ctx, s.apiURL+"/ui/", "__Host-wca_session")
	if code, _ := getWithCookie(t, api, s.apiURL+"/ui/", copied); code != http.StatusOK {
		t.Fatalf("the copied session cookie does not work before logout: %d", code)
	}
	do(ctx, "sign out",
		chromedp.Click(chromedp.CSS(`form.who button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("signin-idp")),
	)
	screenshot(ctx, "5b-signed-out")
	if code, loc := getWithCookie(t, api, s.apiURL+"/ui/", copied); code != http.StatusSeeOther || loc != "/ui/login" {
		t.Errorf("the session cookie copied before logout still answers %d %q, want 303 to /ui/login", code, loc)
	}
	done()

	ctx, done = signIn("audrey", "pki-auditors")
	defer done()
	do(ctx, "auditor opens a certificate",
		chromedp.Navigate(s.apiURL+"/ui/certificates/"+other),
		chromedp.WaitVisible(chromedp.ID("cert-serial")),
	)
	revokeLinks, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#revoke-link").length`))
	if err != nil || revokeLinks != 0 {
		t.Errorf("the auditor is offered the revoke action (%d, %v)", revokeLinks, err)
	}
	screenshot(ctx, "6-auditor-detail")
	do(ctx, "auditor opens the revoke page",
		chromedp.Navigate(s.apiURL+"/ui/certificates/"+other+"/revoke"),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if errText := text(ctx, "error"); !strings.Contains(errText, "revoker role") {
		t.Errorf("auditor on the revoke page: %q", errText)
	}
	checkAuthzPage(t, ctx, s.apiURL, screenshot, do, text)

	// The API agrees, and the sign-ins are audited.
	st := s.stderr.String()
	for _, want := range []string{`"msg":"dashboard sign-in"`, `"actor":"corp-idp:rita"`, `"actor":"corp-idp:audrey"`, `"msg":"dashboard sign-out"`} {
		if !strings.Contains(st, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if idp.Logins() != 2 {
		t.Errorf("%d code exchanges, want 2", idp.Logins())
	}
	fmt.Fprintln(os.Stderr, "dashboard screenshots in", shots)
}

// browserCookie reads the cookie name the browser holds for url (HttpOnly
// ones included, through the DevTools protocol).
func browserCookie(t *testing.T, ctx context.Context, url, name string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Action[string](func(ctx context.Context, tg *chromedp.Target) (string, error) {
		var res struct { // the protocol's names; the DevTools decoder is case-sensitive
			Cookies []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"cookies"`
		}
		if err := tg.Call(ctx, "Network.getCookies", map[string]any{"urls": []string{url}}, &res); err != nil {
			return "", err
		}
		for _, c := range res.Cookies {
			if c.Name == name {
				return c.Value, nil
			}
		}
		return "", fmt.Errorf("the browser holds no cookie %s for %s (it has %+v)", name, url, res)
	}))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// getWithCookie GETs url with the session cookie, not following redirects,
// and returns the status and Location.
func getWithCookie(t *testing.T, c *http.Client, url, session string) (int, string) {
	t.Helper()
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.AddCookie(&http.Cookie{Name: "__Host-wca_session", Value: session})
	res, err := nc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Location")
}
