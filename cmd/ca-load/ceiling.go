package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// ceiling is the SoftHSM signing rate measured through pkg/hsm.
type ceiling struct {
	// PerWorkers is signatures per second at each number of signing goroutines.
	PerWorkers map[int]float64 `json:"sigs_per_s_by_workers"`
	// Best is the highest of them: what the token can sign per second.
	Best float64 `json:"sigs_per_s"`
}

// measureCeiling signs SHA-256 digests with a fresh P-256 key on the token
// (the CA's key type) from 1, 2, 4 and 8 goroutines for d each.
func measureCeiling(tok *softhsmToken, d time.Duration) (ceiling, error) {
	// SoftHSM reads its configuration when crypto11 first initialises the
	// module in this process.
	if err := os.Setenv("SOFTHSM2_CONF", tok.conf); err != nil {
		return ceiling{}, err
	}
	ks, err := hsm.OpenPKCS11(tok.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return ceiling{}, fmt.Errorf("opening the SoftHSM token: %w", err)
	}
	defer ks.Close()
	key, err := ks.Generate(context.Background(), "bench-ceiling", hsm.ECDSAP256)
	if err != nil {
		return ceiling{}, fmt.Errorf("generating the ceiling key: %w", err)
	}
	digest := sha256.Sum256([]byte("ceiling"))
	c := ceiling{PerWorkers: map[int]float64{}}
	for _, workers := range []int{1, 2, 4, 8} {
		var n atomic.Int64
		var firstErr error
		var once sync.Once
		deadline := time.Now().Add(d)
		start := time.Now()
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if _, err := key.Signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						once.Do(func() { firstErr = err })
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return c, fmt.Errorf("signing: %w", firstErr)
		}
		rate := float64(n.Load()) / time.Since(start).Seconds()
		c.PerWorkers[workers] = rate
		c.Best = max(c.Best, rate)
	}
	return c, nil
}
