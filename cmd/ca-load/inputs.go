package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// csrKey is a pre-generated workload key and its CSR.
type csrKey struct {
	key    *ecdsa.PrivateKey
	csrPEM string
}

// enrollInput is one pre-minted token and a CSR for it.
type enrollInput struct {
	token string
	csr   csrKey
}

// pool hands out pre-generated inputs once each.
type pool[T any] struct {
	items []T
	next  atomic.Int64
}

func (p *pool[T]) take() (T, error) {
	i := p.next.Add(1) - 1
	if int(i) >= len(p.items) {
		var zero T
		return zero, errExhausted
	}
	return p.items[i], nil
}

// parallelMake builds n items on all CPUs.
func parallelMake[T any](n int, mk func(i int) (T, error)) ([]T, error) {
	out := make([]T, n)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				v, err := mk(i)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				out[i] = v
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

func newCSR(i int) (csrKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return csrKey{}, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		return csrKey{}, err
	}
	_ = i
	return csrKey{key: k, csrPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}, nil
}

// mintTokens signs n bench tokens (unique jti, subjects w0..w99) issued at
// now+skew, valid for life.
func (ti *tokenIssuer) mint(n int, now time.Time, life time.Duration) ([]string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ti.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return parallelMake(n, func(i int) (string, error) {
		return ti.token(signer, fmt.Sprintf("w%d", i%100), now, life)
	})
}

func (ti *tokenIssuer) token(signer jose.Signer, sub string, iat time.Time, life time.Duration) (string, error) {
	std := jwt.Claims{
		Issuer: benchTokenIssuer, Subject: sub, Audience: jwt.Audience{benchTokenAudience},
		IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(life)),
		ID: randHex(12),
	}
	return jwt.Signed(signer).Claims(std).Serialize()
}

// enrollInputs pre-generates n tokens and CSRs.
func (ti *tokenIssuer) enrollInputs(n int) (*pool[enrollInput], error) {
	toks, err := ti.mint(n, time.Now(), 20*time.Minute)
	if err != nil {
		return nil, err
	}
	csrs, err := parallelMake(n, newCSR)
	if err != nil {
		return nil, err
	}
	p := &pool[enrollInput]{items: make([]enrollInput, n)}
	for i := range n {
		p.items[i] = enrollInput{token: toks[i], csr: csrs[i]}
	}
	return p, nil
}
