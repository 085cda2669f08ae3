package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// servedBundle fetches /bundle.json and parses it as a SPIFFE relying party.
func servedBundle(t *testing.T, s *servingCA, ifNoneMatch string) (seq int64, roots int, etag string, status int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.publicURL+"/bundle.json", nil)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotModified {
		return 0, 0, res.Header.Get("ETag"), res.StatusCode
	}
	sb, err := spiffebundle.Read(spiffeid.RequireTrustDomainFromString("example.org"), res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /bundle.json = %d, %v", res.StatusCode, err)
	}
	n, _ := sb.SequenceNumber()
	if hdr, _ := strconv.ParseInt(res.Header.Get("X-Bundle-Sequence"), 10, 64); hdr != int64(n) {
		t.Errorf("X-Bundle-Sequence %d, spiffe_sequence %d", hdr, n)
	}
	return int64(n), len(sb.X509Authorities()), res.Header.Get("ETag"), res.StatusCode
}

// awaitSequence polls /bundle.json until the server's cache (rechecking every
// few seconds) serves sequence want.
func awaitSequence(t *testing.T, s *servingCA, want int64) (roots int) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("bundle version %d served", want), func() error {
		seq, n, _, _ := servedBundle(t, s, "")
		if seq != want {
			return fmt.Errorf("the server still serves bundle version %d", seq)
		}
		roots = n
		return nil
	})
	return roots
}

func TestRotationAndRollbackWithTheRealBinary(t *testing.T) {
	vars := map[string]string{"CA_DATA_DIR": filepath.Join(t.TempDir(), "data")}
	s := startServe(t, vars)

	// A fresh CA publishes at start: its anchors, then its first JWT-SVID key,
	// so the starting sequence is whatever those made it; count from there.
	base, roots, etag, _ := servedBundle(t, s, "")
	if base < 1 || roots != 1 {
		t.Fatalf("fresh CA serves bundle version %d with %d roots; want a version with 1 root", base, roots)
	}
	if _, _, _, status := servedBundle(t, s, etag); status != http.StatusNotModified {
		t.Errorf("revalidating with the ETag = %d, want 304", status)
	}

	out, errOut, code := runCA(t, vars, "issuers", "rotate", "--root", "--actor", "e2e-admin")
	if code != 0 || !strings.Contains(out, "prepared int-2 under new root root-2") {
		t.Fatalf("ca issuers rotate --root = %d\n%s\n%s", code, out, errOut)
	}
	if roots := awaitSequence(t, s, base+1); roots != 2 {
		t.Errorf("after a root rotation the bundle has %d roots, want both", roots)
	}
	if _, _, _, status := servedBundle(t, s, etag); status != http.StatusOK {
		t.Errorf("the old ETag after a change = %d, want 200", status)
	}
	if out, errOut, code := runCA(t, vars, "issuers", "activate"); code == 0 || !strings.Contains(errOut, "--force") {
		t.Errorf("activate before the overlap = %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := runCA(t, vars, "issuers", "activate", "--force"); code != 0 || !strings.Contains(out, "activated") {
		t.Fatalf("ca issuers activate --force = %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = runCA(t, vars, "issuers", "list")
	for _, want := range []string{"int-2", "xc-2", "retiring"} {
		if !strings.Contains(out, want) {
			t.Errorf("ca issuers list lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = runCA(t, vars, "bundle", "rollback", "--to", strconv.FormatInt(base, 10), "--actor", "e2e-admin")
	if code != 0 || !strings.Contains(out, "republishes version "+strconv.FormatInt(base, 10)) {
		t.Fatalf("ca bundle rollback = %d\n%s\n%s", code, out, errOut)
	}
	if roots := awaitSequence(t, s, base+2); roots != 1 {
		t.Errorf("after the rollback the bundle has %d roots, want the one of version %d", roots, base)
	}
	out, _, _ = runCA(t, vars, "bundle", "versions")
	if !strings.Contains(out, "rollback") || !strings.Contains(out, "e2e-admin") {
		t.Errorf("ca bundle versions:\n%s", out)
	}
	if _, errOut, code := runCA(t, vars, "bundle", "rollback", "--to", strconv.FormatInt(base+9, 10)); code == 0 || !strings.Contains(errOut, "invalid rollback") {
		t.Errorf("rollback to a future version = %d: %s", code, errOut)
	}
	s.stop(t)
}
