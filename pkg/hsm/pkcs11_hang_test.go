//go:build cgo

package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// TestAHungTokenFailsFastAndTheStoreAnswersAgainWhenItRecovers runs the
// PKCS#11 store against a real module that hangs on purpose (testkit's hang
// module in front of SoftHSM: C_Sign blocks while a flag file exists), as a
// network HSM behind a partition would: requests get ErrUnavailable at their
// deadline, the calls stuck in the module are bounded by the workers,
// counted and logged, the readiness probe fails within its bound, and when
// the module answers again the same signers sign without reopening the
// store, also after the store retired its context for a call that outlived
// OpTimeout.
func TestAHungTokenFailsFastAndTheStoreAnswersAgainWhenItRecovers(t *testing.T) {
	h := testkit.HangingSoftHSM(t) // t.Setenv: not parallel
	var logs testkit.LockedBuffer
	const workers = 4
	cfg := h.Config
	cfg.Workers = workers
	cfg.OpTimeout = 500 * time.Millisecond
	cfg.ReconnectTimeout = 500 * time.Millisecond
	cfg.MinBackoff = 10 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	s, err := hsm.OpenPKCS11(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("OpenPKCS11 through the hang module: %v", err)
	}
	t.Cleanup(func() {
		h.Release(t)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	key, err := s.Generate(context.Background(), "hang-ca", hsm.ECDSAP256)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	digest := sha256.Sum256([]byte("tbs"))
	signWithin := func(d time.Duration) ([]byte, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		start := time.Now()
		sig, err := hsm.WithContext(ctx, key.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
		return sig, time.Since(start), err
	}
	verify := func(sig []byte) {
		t.Helper()
		if !ecdsa.VerifyASN1(key.Signer.Public().(*ecdsa.PublicKey), digest[:], sig) {
			t.Fatal("signature does not verify")
		}
	}
	sig, _, err := signWithin(5 * time.Second)
	if err != nil {
		t.Fatalf("sign before the hang: %v", err)
	}
	verify(sig)

	// 1. The token hangs. One request gives up at its deadline; its call
	// stays stuck, and readiness says so at once although a search (what
	// Ping does, never signing) would still answer.
	h.Hang(t)
	const deadline = 300 * time.Millisecond
	if _, _, err := signWithin(deadline); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign on the hung token: %v; want ErrUnavailable", err)
	}
	if got := hsm.StuckCalls(s); got != 1 {
		t.Fatalf("%d calls stuck after one request; want 1", got)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Ping with a signature stuck in the token: %v; want ErrUnavailable", err)
	}

	// Many requests, each with a request deadline.
	before := runtime.NumGoroutine()
	const requests = 24
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, took, err := signWithin(deadline)
			if took > deadline+400*time.Millisecond {
				t.Errorf("a request waited %v with a %v deadline", took, deadline)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign on the hung token: %v; want ErrUnavailable", err)
		}
	}
	if got := hsm.StuckCalls(s); got != workers {
		t.Errorf("%d calls stuck in the module; want exactly the %d workers", got, workers)
	}
	if extra := runtime.NumGoroutine() - before; extra > workers+2 {
		t.Errorf("%d goroutines more than before %d requests; want at most the %d workers", extra, requests, workers)
	}
	if !strings.Contains(logs.String(), "PKCS#11 call abandoned at its deadline") {
		t.Errorf("abandoned calls were not logged:\n%s", logs.String())
	}
	// Readiness (Ping, which never signs) fails within its own bound: every
	// worker is held by a stuck call.
	pctx, cancel := context.WithTimeout(context.Background(), deadline)
	start := time.Now()
	err = s.Ping(pctx)
	cancel()
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Ping while every worker is stuck: %v; want ErrUnavailable", err)
	}
	if took := time.Since(start); took > deadline+400*time.Millisecond {
		t.Errorf("Ping took %v with a %v deadline", took, deadline)
	}

	// 2. The token answers again: the stuck calls return, and the same
	// signer signs without the store being reopened.
	h.Release(t)
	sig, _, err = signWithin(5 * time.Second)
	if err != nil {
		t.Fatalf("sign after the token answers again: %v", err)
	}
	verify(sig)
	waitFor(t, "the stuck calls to return", func() bool { return hsm.StuckCalls(s) == 0 })
	if !strings.Contains(logs.String(), "an abandoned PKCS#11 call returned") {
		t.Errorf("returning stuck calls were not logged:\n%s", logs.String())
	}

	// 3. A call without a request deadline outlives OpTimeout: the store
	// retires its context, readiness fails within ReconnectTimeout while the
	// old context cannot close, and after the release the store reconnects
	// by itself.
	h.Hang(t)
	start = time.Now()
	_, err = key.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign without a deadline on the hung token: %v; want ErrUnavailable", err)
	}
	if took := time.Since(start); took > cfg.OpTimeout+400*time.Millisecond {
		t.Errorf("sign took %v with OpTimeout %v", took, cfg.OpTimeout)
	}
	if !strings.Contains(logs.String(), "PKCS#11 token failed") {
		t.Errorf("the store did not retire the hung context:\n%s", logs.String())
	}
	pctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	start = time.Now()
	err = s.Ping(pctx)
	cancel()
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Ping while the token hangs: %v; want ErrUnavailable", err)
	}
	if took := time.Since(start); took > cfg.ReconnectTimeout+400*time.Millisecond {
		t.Errorf("Ping took %v with ReconnectTimeout %v", took, cfg.ReconnectTimeout)
	}
	h.Release(t)
	var lastErr error
	waitFor(t, "signing after the reconnect", func() bool {
		sig, _, lastErr = signWithin(2 * time.Second)
		return lastErr == nil
	})
	verify(sig)
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping after the reconnect: %v", err)
	}
	if !strings.Contains(logs.String(), "PKCS#11 token reconnected") {
		t.Errorf("the reconnect was not logged:\n%s", logs.String())
	}
}

// waitFor polls cond for up to 10 s: for work other goroutines finish (a
// module returning, a reconnect in its own goroutine), not for expiry.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 200 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
