package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// ca serve prunes as leader every retention.interval: the first run comes
// one interval after start, is counted and logged, and `ca audit verify`
// still verifies the log with its prune entry.
func TestServePrunesEveryIntervalAndTheAuditLogVerifies(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	cfgPath := filepath.Join(t.TempDir(), "ca.yaml")
	writeFile(t, cfgPath, "retention:\n  interval: 10s\n  certificates: 1h\n  ocsp_responses: 1s\n", 0o644)
	vars := map[string]string{"CA_DATA_DIR": dataDir, "CA_CONFIG": cfgPath}
	s := startServe(t, vars)

	fams := scrape(t, s.publicURL+"/metrics")
	if got := sumFamily(fams["ca_store_table_rows"], map[string]string{"table": "audit_log"}); got < 1 {
		t.Errorf("ca_store_table_rows{table=audit_log} = %v at start, want the initialisation's entries", got)
	}
	// Polling a real process's interval, not waiting for an expiry.
	testkit.EventuallyTrue(t, 40*time.Second, "a complete retention run", func() bool {
		fams = scrape(t, s.publicURL+"/metrics")
		return sumFamily(fams["ca_retention_runs_total"], map[string]string{"outcome": "complete"}) >= 1
	})
	if got := sumFamily(fams["ca_store_table_rows"], map[string]string{"table": "certificates"}); got < 1 {
		t.Errorf("ca_store_table_rows{table=certificates} = %v after a run, want the server certificate's row", got)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"retention prune"`) {
		t.Errorf("the prune run was not logged:\n%s", s.stderr)
	}
	s.stop(t)
	out, errOut, code := runCA(t, vars, "audit", "verify")
	if code != 0 {
		t.Fatalf("ca audit verify after a prune: exit %d\n%s%s", code, out, errOut)
	}
}
