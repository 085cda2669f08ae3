package revoke

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// MaxRequestSize bounds an OCSP request; a one-CertID request is about 100
// bytes, with a nonce and a signature a few KB.
const MaxRequestSize = 16 << 10

// Status is what an OCSP answer says, for logs, metrics and tests.
type Status string

// Answers of the responder. The first three are signed responses; the others
// are the unsigned error responses of RFC 6960 section 4.2.1.
const (
	StatusGood          Status = "good"
	StatusRevoked       Status = "revoked"
	StatusUnknown       Status = "unknown"
	StatusMalformed     Status = "malformed_request"
	StatusUnauthorized  Status = "unauthorized"
	StatusTryLater      Status = "try_later"
	StatusInternalError Status = "internal_error"
)

// Response is one OCSP answer, ready to be written with Content-Type
// application/ocsp-response and HTTP status 200.
type Response struct {
	DER    []byte
	Status Status
	// ThisUpdate and NextUpdate are the signed response's window, zero for
	// error answers; HTTP caching headers derive from them (RFC 5019
	// section 6).
	ThisUpdate, NextUpdate time.Time
}

// Responder answers OCSP requests and serves CRLs from the store, on any
// replica.
//
// Answering a request for a certificate this CA issued is a lookup of its
// pre-signed response (SHA-1 CertID, RFC 5019); a signature happens only if
// the publisher has not yet signed one (lazy first request, then stored) or
// the stored one has lapsed (an expired certificate the publisher no longer
// refreshes). Those lazy signatures go through their own per-process token
// bucket (LazyRate, LazyBurst): beyond it the answer is tryLater until the
// publisher catches up.
//
// Serials never issued under the named CA are answered "unknown", as the
// issue asks. Such a response must carry the requested serial, so it cannot
// be pre-signed; signing one per request would let anyone make the HSM sign
// at will. So these are signed on the fly through a per-process token bucket
// (UnknownRate, UnknownBurst) and kept in a bounded in-memory cache
// (UnknownCache) until halfway to their nextUpdate; when the bucket is empty
// the answer is tryLater. Requests for issued serials whose CertID uses
// another hash than SHA-1 are signed on the fly too, cached alike, but
// through a bucket of their own (OtherHashRate, OtherHashBurst), so that
// anyone inventing serials cannot push SHA-256 clients into tryLater. The HSM
// therefore signs at most UnknownRate + OtherHashRate + LazyRate responses per
// second per replica on requests, whatever the request rate; an empty bucket
// is counted in ca_ocsp_signing_budget_exhausted_total{budget}.
//
// Requests naming a CA that is not ours are answered unauthorized, garbage
// malformedRequest, and store failures tryLater.
type Responder struct {
	d      Deps
	cfg    Config
	cas    *caSet
	signer *ocspSigner
	// The on-request signing budgets: never-issued serials, issued serials
	// with a non-SHA-1 CertID, and missing or lapsed pre-signed responses.
	unknownBucket, otherHashBucket, lazyBucket *tokenBucket
	metrics                                    *metrics

	mu      sync.Mutex
	fly     map[string]signed // on-the-fly answers by key
	flyKeys []string          // insertion order, for eviction
	crls    map[string]store.CRL

	cache atomic.Pointer[ocspCache] // nil until Follow
}

// KeyReady reports whether the OCSP responder keys could sign when last used
// (within hsm.DefaultKeyHealthWindow): nil, or the key store's error. It
// signs nothing; /readyz calls it.
func (r *Responder) KeyReady(context.Context) error {
	if err := r.d.KeyHealth.Err(); err != nil {
		return fmt.Errorf("revoke: the OCSP responder key cannot sign: %w", err)
	}
	return nil
}

// Follow makes r answer pre-signed responses from memory (a bounded cache
// of Config.OCSPCache entries keyed by issuer and serial) and has p's
// process-local revocations drop entries at once. Revocations committed by
// other replicas are noticed within Config.OCSPCacheRecheck (see ocspCache).
// Call it once, before serving, with the Publisher whose Revoker this
// process uses; a Responder that follows nothing reads the store on every
// request.
func (r *Responder) Follow(p *Publisher) {
	c := newOCSPCache(r.cfg.OCSPCache, r.cfg.OCSPCacheRecheck)
	p.mu.Lock()
	p.onRevoked = append(p.onRevoked, c.invalidate)
	p.mu.Unlock()
	r.cache.Store(c)
}

// NewResponder validates cfg. d.Metrics may be shared with a Publisher.
func NewResponder(d Deps, cfg Config) (*Responder, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	return &Responder{
		d: d, cfg: cfg,
		cas:             newCASet(d.Store, d.Keys, d.Clock),
		signer:          newOCSPSigner(d, cfg, m),
		unknownBucket:   newTokenBucket(cfg.UnknownRate, cfg.UnknownBurst, d.Clock.Now()),
		otherHashBucket: newTokenBucket(cfg.OtherHashRate, cfg.OtherHashBurst, d.Clock.Now()),
		lazyBucket:      newTokenBucket(cfg.LazyRate, cfg.LazyBurst, d.Clock.Now()),
		metrics:         m,
		fly:             map[string]signed{},
		crls:            map[string]store.CRL{},
	}, nil
}

var (
	malformed    = Response{DER: ocsp.MalformedRequestErrorResponse, Status: StatusMalformed}
	unauthorized = Response{DER: ocsp.UnauthorizedErrorResponse, Status: StatusUnauthorized}
	tryLater     = Response{DER: ocsp.TryLaterErrorResponse, Status: StatusTryLater}
)

// Respond answers one DER OCSP request. The Response is always usable; the
// error, when not nil, explains a tryLater or internalError answer for the
// log and never reaches the client.
func (r *Responder) Respond(ctx context.Context, reqDER []byte) (Response, error) {
	if len(reqDER) == 0 || len(reqDER) > MaxRequestSize {
		return malformed, nil
	}
	req, err := parseRequest(reqDER)
	if err != nil || req.SerialNumber == nil {
		return malformed, nil
	}
	c, err := r.cas.byRequest(ctx, req.HashAlgorithm, req.IssuerNameHash, req.IssuerKeyHash)
	if err != nil {
		return tryLater, err
	}
	if c == nil {
		return unauthorized, nil
	}
	if req.SerialNumber.Sign() <= 0 || req.SerialNumber.BitLen() > 160 {
		return r.onTheFly(ctx, c, req, store.RevocationStatus{}, false)
	}
	serial := req.SerialNumber.Text(16)
	now := r.d.Clock.Now()
	cache := r.cache.Load()
	var gen uint64
	if req.HashAlgorithm != crypto.SHA1 || cache == nil {
		cache = nil
	} else if g, ok := cache.confirm(ctx, c.rec.ID, now, r.d.Store.RevocationSeq); !ok {
		cache = nil // the counter is unreadable: answer from the store only
	} else if resp, hit := cache.get(c.rec.ID, serial, now, r.cfg.OCSPMargin); hit {
		return resp, nil
	} else {
		gen = g
	}
	var stored store.OCSPResponse
	haveStored := false
	if req.HashAlgorithm == crypto.SHA1 {
		var err error
		stored, err = r.d.Store.GetOCSPResponse(ctx, serial)
		switch {
		case err == nil && stored.IssuerID == c.rec.ID && now.Before(stored.NextUpdate):
			if cache == nil {
				return fromStored(stored), nil
			}
			haveStored = true
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return tryLater, err
		}
	}
	st, err := r.d.Store.CertificateStatus(ctx, serial)
	if haveStored {
		// Cache it only if the committed status (read after it) agrees.
		if err == nil && st.IssuerID == c.rec.ID && st.Revoked == stored.Revoked {
			cache.put(c.rec.ID, serial, fromStored(stored), gen, now, r.cfg.OCSPMargin)
		}
		return fromStored(stored), nil
	}
	if errors.Is(err, store.ErrNotFound) || err == nil && st.IssuerID != c.rec.ID {
		return r.onTheFly(ctx, c, req, store.RevocationStatus{}, false)
	}
	if err != nil {
		return tryLater, err
	}
	if req.HashAlgorithm != crypto.SHA1 {
		return r.onTheFly(ctx, c, req, st, true)
	}
	resp, err := r.lazy(ctx, c, st)
	if err == nil && cache != nil && resp.Status == statusOf(st) {
		cache.put(c.rec.ID, serial, resp, gen, now, r.cfg.OCSPMargin)
	}
	return resp, err
}

func statusOf(st store.RevocationStatus) Status {
	if st.Revoked {
		return StatusRevoked
	}
	return StatusGood
}

// lazy signs and stores the pre-signed response the publisher has not
// produced (yet, or any more), within the lazy budget.
func (r *Responder) lazy(ctx context.Context, c *ca, st store.RevocationStatus) (Response, error) {
	if !r.lazyBucket.take(r.d.Clock.Now()) {
		r.metrics.budgetExhausted("lazy")
		return tryLater, nil
	}
	resp, err := r.signer.responder(ctx, c)
	if err != nil {
		return tryLater, err
	}
	out, err := r.signer.signStatus(resp, c, st, "lazy")
	if err != nil {
		return tryLater, err
	}
	err = r.d.Store.PutOCSPResponse(ctx, out)
	if errors.Is(err, store.ErrConflict) {
		// Revoked (or re-signed) meanwhile: serve what is stored now.
		stored, err := r.d.Store.GetOCSPResponse(ctx, st.Serial)
		if err == nil && r.d.Clock.Now().Before(stored.NextUpdate) {
			return fromStored(stored), nil
		}
		return tryLater, fmt.Errorf("revoke: OCSP response for %s changed while signing", st.Serial)
	}
	if err != nil {
		return tryLater, err
	}
	return fromStored(out), nil
}

// onTheFly answers from the bounded cache or signs through a token bucket:
// unknown serials (known false) through the unknown bucket, issued serials
// with non-SHA-1 CertIDs through the other_hash one.
func (r *Responder) onTheFly(ctx context.Context, c *ca, req *ocsp.Request, st store.RevocationStatus, known bool) (Response, error) {
	status, reason, kind := ocsp.Unknown, 0, "unknown"
	if known {
		status, kind = ocsp.Good, "other_hash"
		if st.Revoked {
			status, reason = ocsp.Revoked, storedReasonCode(st.Reason)
		}
	}
	key := fmt.Sprintf("%s|%d|%x|%d", c.rec.ID, req.HashAlgorithm, req.SerialNumber.Bytes(), status)
	now := r.d.Clock.Now()
	r.mu.Lock()
	s, ok := r.fly[key]
	r.mu.Unlock()
	if ok && now.Before(s.thisUpdate.Add(r.cfg.OCSPMargin)) && now.Before(s.nextUpdate) {
		return signedResponse(s, status), nil
	}
	bucket := r.unknownBucket
	if known {
		bucket = r.otherHashBucket
	}
	if !bucket.take(now) {
		r.metrics.budgetExhausted(kind)
		return tryLater, nil
	}
	resp, err := r.signer.responder(ctx, c)
	if err != nil {
		return tryLater, err
	}
	s, err = r.signer.sign(resp, c, new(big.Int).Set(req.SerialNumber), status, st.RevokedAt, reason, req.HashAlgorithm, kind)
	if err != nil {
		return Response{DER: ocsp.InternalErrorErrorResponse, Status: StatusInternalError}, err
	}
	r.mu.Lock()
	if _, exists := r.fly[key]; !exists {
		r.flyKeys = append(r.flyKeys, key)
	}
	r.fly[key] = s
	for len(r.flyKeys) > r.cfg.UnknownCache {
		delete(r.fly, r.flyKeys[0])
		r.flyKeys = r.flyKeys[1:]
	}
	r.mu.Unlock()
	return signedResponse(s, status), nil
}

func fromStored(s store.OCSPResponse) Response {
	st := StatusGood
	if s.Revoked {
		st = StatusRevoked
	}
	return Response{DER: s.DER, Status: st, ThisUpdate: s.ThisUpdate, NextUpdate: s.NextUpdate}
}

func signedResponse(s signed, status int) Response {
	st := map[int]Status{ocsp.Good: StatusGood, ocsp.Revoked: StatusRevoked, ocsp.Unknown: StatusUnknown}[status]
	return Response{DER: s.der, Status: st, ThisUpdate: s.thisUpdate, NextUpdate: s.nextUpdate}
}

// DecodeGETRequest decodes the path element of GET /ocsp/{request} (RFC
// 6960 appendix A.1: the URL encoding of the base64 of the DER request).
// Clients differ: some do not URL-encode (so '+' may arrive as ' ' and '/'
// splits the path; pass everything after /ocsp/), some use unpadded or
// URL-safe base64. Every variant is accepted; an error means malformed.
func DecodeGETRequest(escaped string) ([]byte, error) {
	if len(escaped) > 2*MaxRequestSize {
		return nil, errors.New("revoke: OCSP GET request too long")
	}
	s, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("revoke: OCSP GET request: %w", err)
	}
	s = strings.ReplaceAll(s, " ", "+")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := enc.DecodeString(s); err == nil {
			return der, nil
		}
	}
	return nil, errors.New("revoke: OCSP GET request is not base64")
}

// tokenBucket is a small rate limiter on the injected clock.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
