package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// hungSigner blocks every Sign until release is closed, like a token behind
// a partition; it counts the calls that reached it.
type hungSigner struct {
	crypto.Signer
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (h *hungSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	<-h.release
	return h.Signer.Sign(r, digest, opts)
}

func TestAHungSignerFailsAtTheDeadlineWithBoundedGoroutines(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hung := &hungSigner{Signer: key, release: make(chan struct{})}
	const size = 4
	w := hsm.NewWorkers(size, nil)
	signer := w.Signer(hung, 0)
	digest := sha256.Sum256([]byte("tbs"))
	before := runtime.NumGoroutine()

	// Many concurrent requests, each with a 300 ms deadline.
	const deadline = 300 * time.Millisecond
	const requests = 40
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	took := make(chan time.Duration, requests)
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			_, err := hsm.WithContext(ctx, signer).Sign(rand.Reader, digest[:], crypto.SHA256)
			took <- time.Since(start)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	close(took)
	for err := range errs {
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign on a hung token: %v; want hsm.ErrUnavailable", err)
		}
	}
	for d := range took {
		if d > deadline+300*time.Millisecond {
			t.Errorf("a caller waited %v with a %v deadline", d, deadline)
		}
	}
	hung.mu.Lock()
	calls := hung.calls
	hung.mu.Unlock()
	if calls != size {
		t.Errorf("%d calls reached the hung token; want exactly the pool size %d", calls, size)
	}
	if got := w.Stuck(); got != size {
		t.Errorf("Stuck() = %d, want %d", got, size)
	}
	// Only the pool's workers are left running, whatever the request count.
	if extra := runtime.NumGoroutine() - before; extra > size+2 {
		t.Errorf("%d goroutines left after %d requests; want at most the %d workers", extra, requests, size)
	}

	// The token answers again: the stuck calls return, workers free up,
	// and signing works.
	close(hung.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sig, err := hsm.WithContext(ctx, signer).Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("sign after the token answers again: %v", err)
	}
	if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
		t.Error("signature does not verify")
	}
	for i := 0; w.Stuck() != 0 && i < 100; i++ {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // the abandoned calls' goroutines finishing, not an expiry wait
	}
	if w.Stuck() != 0 || w.Running() != 0 {
		t.Errorf("after release: stuck %d, running %d; want 0, 0", w.Stuck(), w.Running())
	}
}

func TestAPerCallTimeoutBoundsACallWithoutADeadline(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hung := &hungSigner{Signer: key, release: make(chan struct{})}
	defer close(hung.release)
	w := hsm.NewWorkers(1, nil)
	digest := sha256.Sum256([]byte("tbs"))
	start := time.Now()
	_, err = w.Signer(hung, 200*time.Millisecond).Sign(rand.Reader, digest[:], crypto.SHA256)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign without a context deadline on a hung token: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v with a 200ms per-call timeout", d)
	}
}
