package mtls

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// RevocationStatus is what a revocation check found.
type RevocationStatus string

// Revocation statuses.
const (
	// StatusNotChecked: no checker ran, or the certificate names neither a
	// CRL distribution point nor an OCSP responder (nothing to check).
	StatusNotChecked RevocationStatus = ""
	StatusGood       RevocationStatus = "good"
	StatusRevoked    RevocationStatus = "revoked"
	// StatusUnknown: the CRL or OCSP answer could not be fetched, parsed or
	// verified, or was stale, or the responder did not know the certificate.
	StatusUnknown RevocationStatus = "unknown"
)

// RevocationResult is the outcome of one check.
type RevocationResult struct {
	Status RevocationStatus
	// Source is "crl" or "ocsp" (which answer decided), or "".
	Source    string
	URL       string
	RevokedAt time.Time
	// ReasonCode is the RFC 5280 CRLReason of a revocation.
	ReasonCode int
	// NextUpdate is when the answer that decided stops being current.
	NextUpdate time.Time
	// Err says why the status is unknown.
	Err error
}

// Errors behind StatusUnknown, tested with errors.Is.
var (
	// ErrRevocationFetch: the CRL or OCSP answer could not be fetched.
	ErrRevocationFetch = errors.New("mtls: revocation fetch failed")
	// ErrRevocationInvalid: the answer does not parse, is not signed by the
	// certificate's issuer, or is stale.
	ErrRevocationInvalid = errors.New("mtls: revocation answer invalid")
)

// RevocationConfig configures a RevocationChecker. At least one of CRL and
// OCSP must be enabled.
type RevocationConfig struct {
	// CRL checks the leaf against the CRL at its first HTTP(S) CRL
	// distribution point, cached until the CRL's nextUpdate.
	CRL bool
	// OCSP asks the responder in the leaf's AIA (cached until the
	// response's nextUpdate). With CRL also on, OCSP is asked only when the
	// CRL gave no answer.
	OCSP bool
	// FailOpen accepts peers whose status is unknown; the default
	// (fail-closed) rejects them with ReasonRevocationUnknown.
	FailOpen bool
	// HTTPClient defaults to a client with a 5 s timeout.
	HTTPClient *http.Client
	Clock      Clock
	Log        *slog.Logger
	// MaxBytes caps a CRL or OCSP download; default 16 MiB.
	MaxBytes int64
}

// RevocationChecker checks leaf certificates against the CA's CRLs and OCSP
// responder, caching answers until their nextUpdate. Safe for concurrent use.
type RevocationChecker struct {
	cfg      RevocationConfig
	failOpen bool

	mu   sync.Mutex
	crls map[string]*crlEntry  // by URL
	ocsp map[string]*ocspEntry // by responder URL + serial
}

type crlEntry struct {
	mu         sync.Mutex
	issuerRaw  []byte
	nextUpdate time.Time
	revoked    map[string]x509.RevocationListEntry // by serial, hex
}

type ocspEntry struct {
	mu   sync.Mutex
	resp *ocsp.Response
}

// NewRevocationChecker builds a checker.
func NewRevocationChecker(cfg RevocationConfig) (*RevocationChecker, error) {
	if !cfg.CRL && !cfg.OCSP {
		return nil, fmt.Errorf("%w: revocation checking needs CRL or OCSP enabled", ErrConfig)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 16 << 20
	}
	return &RevocationChecker{cfg: cfg, failOpen: cfg.FailOpen, crls: map[string]*crlEntry{}, ocsp: map[string]*ocspEntry{}}, nil
}

// Check finds the revocation status of leaf, issued by issuer: from the CRL
// if enabled and it answers, else from OCSP if enabled.
func (r *RevocationChecker) Check(ctx context.Context, leaf, issuer *x509.Certificate) RevocationResult {
	res := RevocationResult{}
	if r.cfg.CRL {
		res = r.CheckCRL(ctx, leaf, issuer)
		if res.Status == StatusGood || res.Status == StatusRevoked {
			return res
		}
	}
	if r.cfg.OCSP {
		o := r.CheckOCSP(ctx, leaf, issuer)
		if o.Status != StatusNotChecked || res.Status == StatusNotChecked {
			return o
		}
	}
	return res
}

// CheckCRL checks leaf against the CRL at its first http(s) distribution
// point. The CRL must be signed by issuer and current (nextUpdate in the
// future); it is cached until its nextUpdate.
func (r *RevocationChecker) CheckCRL(ctx context.Context, leaf, issuer *x509.Certificate) RevocationResult {
	url := firstHTTP(leaf.CRLDistributionPoints)
	if url == "" {
		return RevocationResult{}
	}
	res := RevocationResult{Source: "crl", URL: url}
	r.mu.Lock()
	e, ok := r.crls[url]
	if !ok {
		e = &crlEntry{}
		r.crls[url] = e
	}
	r.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := r.cfg.Clock.Now()
	if e.revoked == nil || !now.Before(e.nextUpdate) || !bytes.Equal(e.issuerRaw, issuer.Raw) {
		if err := r.fetchCRL(ctx, url, issuer, now, e); err != nil {
			res.Status, res.Err = StatusUnknown, err
			r.cfg.Log.Warn("mtls: CRL unavailable", "url", url, "error", err)
			return res
		}
	}
	res.NextUpdate = e.nextUpdate
	if ent, revoked := e.revoked[leaf.SerialNumber.Text(16)]; revoked {
		res.Status, res.RevokedAt, res.ReasonCode = StatusRevoked, ent.RevocationTime, ent.ReasonCode
		return res
	}
	res.Status = StatusGood
	return res
}

func (r *RevocationChecker) fetchCRL(ctx context.Context, url string, issuer *x509.Certificate, now time.Time, e *crlEntry) error {
	body, err := r.get(ctx, http.MethodGet, url, "", nil)
	if err != nil {
		return err
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		return fmt.Errorf("%w: CRL from %s: %v", ErrRevocationInvalid, url, err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: CRL from %s is not signed by %q: %v", ErrRevocationInvalid, url, issuer.Subject.CommonName, err)
	}
	if !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate) {
		return fmt.Errorf("%w: CRL from %s is stale (nextUpdate %s)", ErrRevocationInvalid, url, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	revoked := make(map[string]x509.RevocationListEntry, len(crl.RevokedCertificateEntries))
	for _, ent := range crl.RevokedCertificateEntries {
		revoked[ent.SerialNumber.Text(16)] = ent
	}
	e.revoked, e.issuerRaw = revoked, issuer.Raw
	e.nextUpdate = crl.NextUpdate
	if e.nextUpdate.IsZero() {
		e.nextUpdate = now.Add(time.Hour)
	}
	return nil
}

// CheckOCSP asks the leaf's OCSP responder (its first http AIA OCSP URL).
// The response must be signed by issuer or a responder it delegated to, and
// current; it is cached until its nextUpdate.
func (r *RevocationChecker) CheckOCSP(ctx context.Context, leaf, issuer *x509.Certificate) RevocationResult {
	url := firstHTTP(leaf.OCSPServer)
	if url == "" {
		return RevocationResult{}
	}
	res := RevocationResult{Source: "ocsp", URL: url}
	key := url + "|" + string(issuer.Raw) + "|" + leaf.SerialNumber.Text(16)
	r.mu.Lock()
	e, ok := r.ocsp[key]
	if !ok {
		e = &ocspEntry{}
		r.ocsp[key] = e
	}
	r.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := r.cfg.Clock.Now()
	if e.resp == nil || e.resp.NextUpdate.IsZero() || !now.Before(e.resp.NextUpdate) {
		e.resp = nil
		resp, err := r.fetchOCSP(ctx, url, leaf, issuer, now)
		if err != nil {
			res.Status, res.Err = StatusUnknown, err
			r.cfg.Log.Warn("mtls: OCSP unavailable", "url", url, "error", err)
			return res
		}
		e.resp = resp
	}
	res.NextUpdate = e.resp.NextUpdate
	switch e.resp.Status {
	case ocsp.Good:
		res.Status = StatusGood
	case ocsp.Revoked:
		res.Status, res.RevokedAt, res.ReasonCode = StatusRevoked, e.resp.RevokedAt, e.resp.RevocationReason
	default:
		res.Status, res.Err = StatusUnknown, fmt.Errorf("%w: the OCSP responder does not know serial %s", ErrRevocationInvalid, serialHex(leaf))
	}
	return res
}

func (r *RevocationChecker) fetchOCSP(ctx context.Context, url string, leaf, issuer *x509.Certificate, now time.Time) (*ocsp.Response, error) {
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: building OCSP request: %v", ErrRevocationInvalid, err)
	}
	body, err := r.get(ctx, http.MethodPost, url, "application/ocsp-request", req)
	if err != nil {
		return nil, err
	}
	resp, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: OCSP response from %s: %v", ErrRevocationInvalid, url, err)
	}
	if resp.ThisUpdate.After(now.Add(DefaultSkewTolerance)) || (!resp.NextUpdate.IsZero() && !now.Before(resp.NextUpdate)) {
		return nil, fmt.Errorf("%w: OCSP response from %s is not current (thisUpdate %s, nextUpdate %s)", ErrRevocationInvalid, url,
			resp.ThisUpdate.UTC().Format(time.RFC3339), resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	if resp.NextUpdate.IsZero() {
		resp.NextUpdate = now.Add(5 * time.Minute)
	}
	return resp, nil
}

func (r *RevocationChecker) get(ctx context.Context, method, url, contentType string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRevocationFetch, url, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRevocationFetch, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s %s answered %d", ErrRevocationFetch, method, url, res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, r.cfg.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrRevocationFetch, url, err)
	}
	if int64(len(b)) > r.cfg.MaxBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrRevocationFetch, url, r.cfg.MaxBytes)
	}
	return b, nil
}

func firstHTTP(urls []string) string {
	for _, u := range urls {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			return u
		}
	}
	return ""
}
