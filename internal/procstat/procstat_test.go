package procstat_test

import (
	"crypto/sha256"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/procstat"
	"github.com/workload-ca/workload-ca/internal/testkit"
)

// TestReadSeesThisProcessWork reads this process's own /proc entries: CPU
// grows by about the work done, RSS and its peak are set.
func TestReadSeesThisProcessWork(t *testing.T) {
	before, err := procstat.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	sharesBefore := procstat.ReadShares()
	sum := sha256.Sum256(nil)
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		sum = sha256.Sum256(sum[:])
	}
	after, err := procstat.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	shares := procstat.ReadShares().Minus(sharesBefore)
	if d := after.CPUSeconds - before.CPUSeconds; d < 0.1 || d > 5 {
		t.Fatalf("CPU over 300 ms of hashing: %.2f s", d)
	}
	if shares.Self < 0.1 || shares.Machine < shares.Self*0.5 {
		t.Fatalf("shares over 300 ms of hashing: %+v", shares)
	}
	if after.RSSBytes <= 0 || after.HWMBytes < after.RSSBytes {
		t.Fatalf("RSS %d, peak %d", after.RSSBytes, after.HWMBytes)
	}
	if _, err := procstat.Read(-1); err == nil {
		t.Fatal("a process that does not exist was read")
	}
}

// TestPostgresCPU sums the CPU of the postgres processes: they exist (the
// test database server runs here) and have used some.
func TestPostgresCPU(t *testing.T) {
	testkit.Postgres(t) // the server is up, or the test fails in CI
	u, err := url.Parse(testkit.PostgresAdminURL())
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h != "" && h != "localhost" && !net.ParseIP(h).IsLoopback() {
		t.Skipf("the test Postgres runs on %s, not here: no local postgres process to read", h)
	}
	if got := procstat.PostgresCPU(); got <= 0 {
		t.Fatalf("postgres CPU %.2f s: no postgres process read", got)
	}
}
