package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// The container image's HEALTHCHECK runs `ca healthcheck`: 0 while /readyz
// answers 200, 1 otherwise.
func TestHealthcheckAsksReadyz(t *testing.T) {
	vars := map[string]string{"CA_DATA_DIR": filepath.Join(t.TempDir(), "data")}
	s := startServe(t, vars)

	out, errOut, code := runCA(t, nil, "healthcheck", "--url", s.publicURL+"/readyz")
	if code != 0 || !strings.Contains(out, `"status":"ready"`) {
		t.Fatalf("healthcheck of a ready CA: exit %d\n%s%s", code, out, errOut)
	}
	// Without --url it asks the configured public_addr.
	cfgVars := map[string]string{"CA_DATA_DIR": vars["CA_DATA_DIR"], "CA_PUBLIC_ADDR": strings.TrimPrefix(s.publicURL, "http://")}
	if out, errOut, code := runCA(t, cfgVars, "healthcheck"); code != 0 || !strings.Contains(out, `"status":"ready"`) {
		t.Fatalf("healthcheck from the configuration: exit %d\n%s%s", code, out, errOut)
	}

	s.stop(t)
	if _, errOut, code := runCA(t, nil, "healthcheck", "--url", s.publicURL+"/readyz"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("healthcheck of a stopped CA: exit %d, want 1 with the cause\n%s", code, errOut)
	}
}

func TestHealthcheckFailsOnANotReadyAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"reason":"hsm_unavailable"}`))
	}))
	defer srv.Close()
	_, errOut, code := runCA(t, nil, "healthcheck", "--url", srv.URL+"/readyz")
	if code != 1 || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "hsm_unavailable") {
		t.Fatalf("healthcheck of a 503: exit %d, want 1 naming the status and reason\n%s", code, errOut)
	}
	if _, errOut, code := runCA(t, nil, "healthcheck", "--url", "ftp://%zz"); code != 2 {
		t.Fatalf("a bad --url: exit %d, want 2 (usage)\n%s", code, errOut)
	}
}

func TestLoopbackIfWildcard(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080":    "127.0.0.1:8080",
		":8080":           "127.0.0.1:8080",
		"[::]:8080":       "[::1]:8080",
		"10.0.0.5:8080":   "10.0.0.5:8080",
		"ca.example:8080": "ca.example:8080",
	} {
		if got := loopbackIfWildcard(in); got != want {
			t.Errorf("loopbackIfWildcard(%q) = %q, want %q", in, got, want)
		}
	}
}
