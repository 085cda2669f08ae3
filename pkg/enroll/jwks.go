package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/workload-ca/workload-ca/pkg/policy"
)

// Bounds on what is read from an issuer.
const (
	maxJWKSBytes      = 1 << 20
	maxDiscoveryBytes = 256 << 10
	maxJWKSKeys       = 100
)

// errUnknownKID and errNoKeys are the two ways a key lookup fails.
var (
	errUnknownKID = errors.New("no trusted key with this key ID")
	errNoKeys     = errors.New("issuer keys unavailable")
)

// keySource caches one token issuer's JWKS.
//
// The cache is refreshed when it is older than Limits.JWKSRefreshInterval or
// when a token names a kid it does not hold, but never more often than once
// per Limits.JWKSMinRefreshInterval per issuer, whatever the tokens say: a
// flood of random kids costs the issuer at most one fetch per interval.
// Concurrent refreshes are coalesced into one fetch. When a refresh fails, the
// cached keys keep verifying for up to Limits.JWKSMaxStale after the last
// successful fetch, so a brief issuer outage does not stop enrollment.
type keySource struct {
	iss    policy.TokenIssuer
	client *http.Client
	lim    Limits
	clock  interface{ Now() time.Time }
	log    *slog.Logger

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time // last successful fetch
	attemptAt time.Time // last fetch attempt, successful or not
	jwksURI   string    // discovered jwks_uri, cached between refreshes
	lastErr   error
	inflight  chan struct{}
}

// keysFor returns the cached keys that may have signed a token with kid (all
// keys when kid is ""), refreshing as described on keySource. Errors wrap
// errUnknownKID or errNoKeys.
func (s *keySource) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		now := s.clock.Now()
		cand := s.match(kid)
		fresh := !s.fetchedAt.IsZero() && now.Sub(s.fetchedAt) < s.lim.JWKSRefreshInterval
		if len(cand) > 0 && fresh {
			s.mu.Unlock()
			return cand, nil
		}
		if ch := s.inflight; ch != nil {
			s.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", errNoKeys, ctx.Err())
			}
		}
		mayFetch := attempt == 0 && (s.attemptAt.IsZero() || now.Sub(s.attemptAt) >= s.lim.JWKSMinRefreshInterval)
		if !mayFetch {
			defer s.mu.Unlock()
			return s.fromCache(now, cand)
		}
		s.attemptAt = now
		ch := make(chan struct{})
		s.inflight = ch
		s.mu.Unlock()

		// The fetch runs on its own (others may be waiting on it, and it
		// fills the cache for them), but this caller waits for it only
		// until its own deadline: the request's deadline bounds the
		// outgoing fetch it triggered, as it bounds its store and HSM
		// calls.
		res := make(chan error, 1)
		go func() {
			keys, err := s.fetch(ctx)
			s.mu.Lock()
			s.inflight = nil
			close(ch)
			if err == nil {
				s.keys, s.fetchedAt, s.lastErr = keys, s.clock.Now(), nil
			} else {
				s.lastErr = err
				s.jwksURI = "" // rediscover next time
				s.log.Warn("token issuer key refresh failed", "token_issuer", s.iss.Name, "err", err)
			}
			s.mu.Unlock()
			res <- err
		}()
		var err error
		select {
		case err = <-res:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", errNoKeys, ctx.Err())
		}
		s.mu.Lock()
		cand = s.match(kid)
		defer s.mu.Unlock()
		if err == nil && len(cand) == 0 {
			return nil, errUnknownKID
		}
		return s.fromCache(now, cand)
	}
}

// fromCache answers from the cache alone. Callers hold s.mu.
func (s *keySource) fromCache(now time.Time, cand []jose.JSONWebKey) ([]jose.JSONWebKey, error) {
	if s.fetchedAt.IsZero() {
		return nil, fmt.Errorf("%w: never fetched successfully: %v", errNoKeys, s.lastErr)
	}
	if age := now.Sub(s.fetchedAt); age > s.lim.JWKSMaxStale {
		return nil, fmt.Errorf("%w: cached keys are %s old: %v", errNoKeys, age.Round(time.Second), s.lastErr)
	}
	if len(cand) == 0 {
		return nil, errUnknownKID
	}
	return cand, nil
}

func (s *keySource) match(kid string) []jose.JSONWebKey {
	if kid == "" {
		return s.keys
	}
	// The usual case, one key of that kid, is a part of the cache (which a
	// refresh replaces and never changes), not a copy made per token.
	first, n := -1, 0
	for i := range s.keys {
		if s.keys[i].KeyID == kid {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if n == 1 {
		return s.keys[first : first+1 : first+1]
	}
	var out, unnamed []jose.JSONWebKey
	for _, k := range s.keys {
		switch k.KeyID {
		case kid:
			out = append(out, k)
		case "":
			unnamed = append(unnamed, k)
		}
	}
	if len(out) == 0 {
		// Some issuers publish keys without kid; a token's kid cannot
		// select among those, so all of them are candidates.
		return unnamed
	}
	return out
}

// fetch loads the key set from the issuer's configured source. It runs
// detached from the caller's cancellation (other requests may be waiting on
// it) but bounded by Limits.FetchTimeout.
func (s *keySource) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lim.FetchTimeout)
	defer cancel()
	var raw []byte
	var err error
	switch {
	case s.iss.JWKSFile != "":
		raw, err = readFileLimited(s.iss.JWKSFile, maxJWKSBytes)
	case s.iss.JWKSURL != "":
		raw, err = s.get(ctx, s.iss.JWKSURL, maxJWKSBytes)
	default:
		s.mu.Lock()
		uri := s.jwksURI
		s.mu.Unlock()
		if uri == "" {
			if uri, err = s.discover(ctx); err != nil {
				return nil, err
			}
			s.mu.Lock()
			s.jwksURI = uri
			s.mu.Unlock()
		}
		raw, err = s.get(ctx, uri, maxJWKSBytes)
	}
	if err != nil {
		return nil, err
	}
	return parseJWKS(raw)
}

// discover reads the OIDC discovery document and returns its jwks_uri. The
// document's issuer must be exactly the configured issuer (OpenID Connect
// Discovery 1.0, section 4.3).
func (s *keySource) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(s.iss.Issuer, "/") + "/.well-known/openid-configuration"
	raw, err := s.get(ctx, u, maxDiscoveryBytes)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("discovery document: %w", err)
	}
	if doc.Issuer != s.iss.Issuer {
		return "", fmt.Errorf("discovery document names issuer %q, want %q", doc.Issuer, s.iss.Issuer)
	}
	ju, err := url.Parse(doc.JWKSURI)
	if err != nil || ju.Scheme != "https" || ju.Host == "" {
		return "", fmt.Errorf("discovery document: jwks_uri %q is not an https URL", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

func (s *keySource) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", u, limit)
	}
	return body, nil
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// parseJWKS keeps the usable signature keys of a JWKS: public asymmetric keys
// (RSA of at least 2048 bits, ECDSA, Ed25519) whose `use` is absent or "sig".
// Symmetric keys are dropped, so no token can be verified with an HMAC, and a
// private key published by mistake is reduced to its public half. Keys that do
// not parse are skipped rather than failing the whole set.
func parseJWKS(raw []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var out []jose.JSONWebKey
	for _, rk := range set.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(rk, &k); err != nil {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		switch key := pub.Key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < 2048 {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		if !pub.Valid() {
			continue
		}
		out = append(out, pub)
		if len(out) == maxJWKSKeys {
			break
		}
	}
	if len(out) == 0 {
		return nil, errors.New("JWKS holds no usable signature key")
	}
	return out, nil
}
