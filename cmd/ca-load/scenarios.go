package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// statusError is an unexpected HTTP status.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	b := e.body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, b)
}

// issued is a certificate the server returned, with its key.
type issued struct {
	serial string
	leaf   *x509.Certificate
	tlsCrt tls.Certificate
}

// certResponse is the part of the enroll/renew answer the load generator reads.
type certResponse struct {
	Serial      string `json:"serial"`
	Certificate string `json:"certificate"`
	Chain       string `json:"chain"`
}

// keeper retains up to max issued certificates for later scenarios.
type keeper struct {
	mu    sync.Mutex
	max   int
	certs []issued
}

func (k *keeper) keep(body []byte, in csrKey) error {
	k.mu.Lock()
	full := len(k.certs) >= k.max
	k.mu.Unlock()
	if full {
		return nil
	}
	var cr certResponse
	if err := json.Unmarshal(body, &cr); err != nil {
		return fmt.Errorf("decoding the certificate answer: %w", err)
	}
	blk, _ := pem.Decode([]byte(cr.Certificate))
	if blk == nil {
		return fmt.Errorf("no certificate PEM in the answer")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	crt := tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: in.key, Leaf: leaf}
	for rest := []byte(cr.Chain); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		crt.Certificate = append(crt.Certificate, b.Bytes)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.certs) < k.max {
		k.certs = append(k.certs, issued{serial: cr.Serial, leaf: leaf, tlsCrt: crt})
	}
	return nil
}

func (k *keeper) all() []issued {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]issued(nil), k.certs...)
}

// postJSON posts body and expects want; it returns the answer's body.
func postJSON(ctx context.Context, c *http.Client, url, bearer string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	got := drain(res)
	if res.StatusCode == http.StatusServiceUnavailable && bytes.Contains(got, []byte(`"overloaded"`)) {
		return nil, &shedError{wait: retryAfter(res.Header.Get("Retry-After"))}
	}
	if res.StatusCode != want {
		return nil, &statusError{status: res.StatusCode, body: string(got)}
	}
	return got, nil
}

// retryAfter is a Retry-After in seconds with up to 50% jitter added (1 s
// when missing or malformed), so that shed clients do not come back in step.
func retryAfter(h string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || secs < 1 {
		secs = 1
	}
	d := time.Duration(secs) * time.Second
	return d + mrand.N(d/2)
}

func enrollBody(csrPEM string) []byte {
	b, _ := json.Marshal(map[string]string{"csr": csrPEM, "ttl": "15m"})
	return b
}

// enrollFn enrolls with the next pre-generated token and CSR.
func enrollFn(c *http.Client, apiURL string, in *pool[enrollInput], keep *keeper) requestFunc {
	return func(ctx context.Context) error {
		e, err := in.take()
		if err != nil {
			return err
		}
		body, err := postJSON(ctx, c, apiURL+"/v1/enroll", e.token, enrollBody(e.csr.csrPEM), http.StatusCreated)
		if err != nil {
			return err
		}
		if keep != nil {
			return keep.keep(body, e.csr)
		}
		return nil
	}
}

// renewer is a workload that renews its own certificate: each renewal
// supersedes the certificate it presented, so the next one presents the new
// certificate, over a new connection (the client certificate is bound to a
// connection; a renewing workload reconnects with its new one).
type renewer struct{ crt tls.Certificate }

// renewers are one renewer per certificate.
func renewers(certs []issued) chan *renewer {
	ch := make(chan *renewer, len(certs))
	for _, c := range certs {
		ch <- &renewer{crt: c.tlsCrt}
	}
	return ch
}

// renewFn renews, over mTLS, the certificate of the next free renewer with
// the next pre-generated CSR, and gives the renewer the new certificate.
func renewFn(s *serverProc, holders chan *renewer, csrs *pool[csrKey]) requestFunc {
	return func(ctx context.Context) error {
		k, err := csrs.take()
		if err != nil {
			return err
		}
		var h *renewer
		select {
		case h = <-holders:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { holders <- h }()
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{h.crt}, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		}}
		b, _ := json.Marshal(map[string]string{"csr": k.csrPEM})
		body, err := postJSON(ctx, c, s.apiURL+"/v1/renew", "", b, http.StatusCreated)
		if err != nil {
			return err
		}
		kp := &keeper{max: 1}
		if err := kp.keep(body, k); err != nil {
			return err
		}
		h.crt = kp.certs[0].tlsCrt
		return nil
	}
}

// ocspRequests builds one DER OCSP request per certificate.
func ocspRequests(certs []issued) ([][]byte, error) {
	var out [][]byte
	for _, c := range certs {
		if len(c.tlsCrt.Certificate) < 2 {
			return nil, fmt.Errorf("certificate %s came without its issuer", c.serial)
		}
		iss, err := x509.ParseCertificate(c.tlsCrt.Certificate[1])
		if err != nil {
			return nil, err
		}
		der, err := ocsp.CreateRequest(c.leaf, iss, &ocsp.RequestOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, der)
	}
	return out, nil
}

// ocspFn posts the requests round robin to url and expects 200. With check
// it also parses the answer and wants a good status.
func ocspFn(c *http.Client, url string, reqs [][]byte) requestFunc {
	var next atomic.Int64
	return func(ctx context.Context) error {
		der := reqs[int(next.Add(1))%len(reqs)]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(der))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/ocsp-request")
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		body := drain(res)
		if res.StatusCode != http.StatusOK || len(body) == 0 {
			return &statusError{status: res.StatusCode, body: string(body)}
		}
		return nil
	}
}

// getFn GETs url (with If-None-Match etag when not "") and expects want.
func getFn(c *http.Client, url, etag string, want int) requestFunc {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		body := drain(res)
		if res.StatusCode != want {
			return &statusError{status: res.StatusCode, body: string(body)}
		}
		return nil
	}
}

// ocspGoodFromCache checks that the server answers every request with a
// successful, good OCSP response signed before this call, which proves it
// comes from the pre-signed store rather than being signed on the fly.
func ocspGoodFromCache(ctx context.Context, c *http.Client, url string, reqs [][]byte, certs []issued, before time.Time) error {
	for i, der := range reqs {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(der))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/ocsp-request")
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		body := drain(res)
		iss, err := x509.ParseCertificate(certs[i].tlsCrt.Certificate[1])
		if err != nil {
			return err
		}
		r, err := ocsp.ParseResponseForCert(body, certs[i].leaf, iss)
		if err != nil {
			return fmt.Errorf("serial %s: %w", certs[i].serial, err)
		}
		if r.Status != ocsp.Good {
			return fmt.Errorf("serial %s: status %d, want good", certs[i].serial, r.Status)
		}
		if r.ProducedAt.After(before) {
			return fmt.Errorf("serial %s: produced at %v, not yet pre-signed", certs[i].serial, r.ProducedAt)
		}
	}
	return nil
}

// crlURL is the CRL distribution point of an issued certificate.
func crlURL(c issued) (string, error) {
	if len(c.leaf.CRLDistributionPoints) == 0 {
		return "", fmt.Errorf("certificate %s names no CRL distribution point", c.serial)
	}
	return c.leaf.CRLDistributionPoints[0], nil
}

// ocspURL is the OCSP responder of an issued certificate.
func ocspURL(c issued) (string, error) {
	if len(c.leaf.OCSPServer) == 0 {
		return "", fmt.Errorf("certificate %s names no OCSP responder", c.serial)
	}
	return strings.TrimSuffix(c.leaf.OCSPServer[0], "/"), nil
}
