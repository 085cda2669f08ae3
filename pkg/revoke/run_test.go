package revoke

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// Run regenerates the CRL as soon as a revocation in this process kicks it,
// long before its (hour-long) tick.
func TestRunRegeneratesPromptlyAfterARevocation(t *testing.T) {
	cfg := shortConfig()
	cfg.Tick = 10 * time.Minute // only the kick can explain a prompt CRL
	f := newFixture(t, sqliteBackend, cfg)
	p := f.publisher()
	rv := f.revoker(p)
	l := f.leaf("x", time.Hour)
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	waitCRL := func(number int64) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("CRL %d published", number), func() error {
			c, err := f.st.CRLInfo(f.ctx, f.interID)
			if err == nil && c.Number < number {
				err = fmt.Errorf("the latest CRL is number %d", c.Number)
			}
			return err
		})
	}
	waitCRL(1) // Run's first tick
	start := time.Now()
	if _, _, err := rv.Revoke(f.ctx, l.Serial, "keyCompromise", "op", "req"); err != nil {
		t.Fatal(err)
	}
	waitCRL(2)
	t.Logf("CRL regenerated %s after the revocation", time.Since(start))
	if c, _ := f.st.CRLInfo(f.ctx, f.interID); c.Entries != 1 {
		t.Errorf("the regenerated CRL has %d entries, want 1", c.Entries)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}
