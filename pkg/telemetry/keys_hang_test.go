package telemetry_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

// Timing a signature must not hide the caller's deadline from the token:
// on a token that hangs (testkit's hang module in front of SoftHSM), a
// timed signature bounded by a 300 ms context fails with ErrUnavailable at
// that deadline, not at the key store's much longer operation timeout
// (issue 18).
func TestATimedSignatureOnAHungTokenFailsAtTheCallersDeadline(t *testing.T) {
	h := testkit.HangingSoftHSM(t) // t.Setenv: not parallel
	cfg := h.Config
	cfg.OpTimeout = 5 * time.Second
	inner, err := hsm.OpenPKCS11(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("OpenPKCS11 through the hang module: %v", err)
	}
	t.Cleanup(func() {
		h.Release(t)
		_ = inner.Close()
	})
	ks, err := telemetry.InstrumentKeys(inner, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ks.Generate(context.Background(), "timed-hang", hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("tbs"))

	h.Hang(t)
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err = hsm.WithContext(ctx, key.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
	took := time.Since(start)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("timed sign on the hung token: %v; want ErrUnavailable", err)
	}
	if took > deadline+time.Second {
		t.Errorf("timed sign answered after %v with a %v deadline (the operation timeout is %v)", took, deadline, cfg.OpTimeout)
	}
}
