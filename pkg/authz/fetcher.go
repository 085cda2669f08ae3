package authz

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/atomicfile"
)

// Wire constants of GET /v1/authz/policy.
const (
	// PolicyPath is the CA's route for a service's policy.
	PolicyPath = "/v1/authz/policy"
	// PolicyJWSType is the JWS "typ" header of a served policy.
	PolicyJWSType = "authz-policy+jwt"
	// PolicySignerPath is the SPIFFE ID path of the CA-internal identity
	// whose certificate signs served policies: spiffe://<td>/ca/authz-policy.
	PolicySignerPath = "/ca/authz-policy"
	// MaxPolicyResponseBytes bounds a served policy the fetcher reads.
	MaxPolicyResponseBytes = MaxPolicyBytes + 1<<20
)

// Bounds on the CA's refresh hint.
const (
	minRefresh     = 5 * time.Second
	maxRefresh     = 10 * time.Minute
	defaultRefresh = 30 * time.Second
)

var jwsAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// ServedPolicy is the signed payload of GET /v1/authz/policy.
type ServedPolicy struct {
	Service            string     `json:"service"`
	Identity           string     `json:"identity"`
	Version            string     `json:"version"`
	Policy             string     `json:"policy"`
	Overrides          []Override `json:"overrides"`
	IssuedAt           time.Time  `json:"issued_at"`
	RefreshHintSeconds int        `json:"refresh_hint_seconds"`
}

// ErrPolicySignature means a served policy's JWS does not verify: bad
// signature, x5c not chaining to the trust bundle, wrong signer identity or
// wrong typ.
var ErrPolicySignature = errors.New("authz: served policy signature does not verify")

// VerifyServedPolicy verifies a compact JWS as GET /v1/authz/policy serves it:
// typ authz-policy+jwt, an x5c chain whose leaf chains (through the
// intermediates in x5c) to bundles' X.509 authorities of trustDomain at
// instant at, whose only URI SAN is spiffe://<trustDomain>/ca/authz-policy,
// and whose key made the signature. It returns the payload, with its policy
// compiled (reporting the payload's version) and checked to hold exactly the
// payload's service with the payload's identity. Signature failures wrap
// ErrPolicySignature.
func VerifyServedPolicy(jws []byte, bundles x509bundle.Source, trustDomain string, at time.Time) (*ServedPolicy, *Policy, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("authz: trust domain: %w", err)
	}
	obj, err := jose.ParseSignedCompact(strings.TrimSpace(string(jws)), jwsAlgorithms)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrPolicySignature, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, nil, fmt.Errorf("%w: %d signatures", ErrPolicySignature, len(obj.Signatures))
	}
	h := obj.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != PolicyJWSType {
		return nil, nil, fmt.Errorf("%w: typ %q, want %s", ErrPolicySignature, typ, PolicyJWSType)
	}
	b, err := bundles.GetX509BundleForTrustDomain(td)
	if err != nil || len(b.X509Authorities()) == 0 {
		return nil, nil, fmt.Errorf("%w: no trust bundle for %s", ErrPolicySignature, td)
	}
	roots := x509.NewCertPool()
	for _, c := range b.X509Authorities() {
		roots.AddCert(c)
	}
	chains, err := h.Certificates(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: x5c: %v", ErrPolicySignature, err)
	}
	leaf := chains[0][0]
	want := "spiffe://" + td.Name() + PolicySignerPath
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		return nil, nil, fmt.Errorf("%w: signer certificate is not %s", ErrPolicySignature, want)
	}
	payload, err := obj.Verify(leaf.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrPolicySignature, err)
	}
	var sp ServedPolicy
	if err := json.Unmarshal(payload, &sp); err != nil {
		return nil, nil, fmt.Errorf("authz: served policy payload: %w", err)
	}
	p, err := ParsePolicy([]byte(sp.Policy))
	if err != nil {
		return nil, nil, fmt.Errorf("authz: served policy: %w", err)
	}
	if p.TrustDomain() != td.Name() {
		return nil, nil, fmt.Errorf("authz: served policy is for trust domain %s, not %s", p.TrustDomain(), td.Name())
	}
	if names := p.Services(); len(names) != 1 || names[0] != sp.Service || p.identityOf(sp.Service) != sp.Identity {
		return nil, nil, fmt.Errorf("authz: served policy does not hold exactly service %q with identity %s", sp.Service, sp.Identity)
	}
	if sp.Version == "" {
		return nil, nil, errors.New("authz: served policy has no version")
	}
	return &sp, p.withVersion(sp.Version), nil
}

// FetcherConfig configures NewFetcher.
type FetcherConfig struct {
	// URL is the CA's API base URL (https://ca.example.org:8443).
	URL string
	// Client talks to the CA over mTLS with the service's own certificate
	// (an http.Client whose transport uses mtls.ClientTLSConfig).
	Client *http.Client
	// Bundles holds the trust bundle whose X.509 authorities the policy
	// signer's certificate must chain to (the mtls bundle source).
	Bundles x509bundle.Source
	// TrustDomain is the trust domain of the CA and of the policy.
	TrustDomain string
	// Service, if set, is the service name the CA must answer for; Identity,
	// if set, the SPIFFE ID it must have. A policy for another is refused.
	Service, Identity string
	// CacheFile, if set, keeps the last good signed policy (mode 0600,
	// replaced atomically) and is loaded at start, so a restart during a CA
	// outage enforces the last good version.
	CacheFile string
	Clock     Clock
	Log       *slog.Logger
}

// FetcherHealth says which policy a service enforces.
type FetcherHealth struct {
	// Loaded is false until a verified policy was fetched or loaded.
	Loaded        bool      `json:"loaded"`
	Service       string    `json:"service,omitempty"`
	PolicyVersion string    `json:"policy_version,omitempty"`
	IssuedAt      time.Time `json:"issued_at,omitzero"`
	// Source is "ca" (fetched), "cache" (loaded from CacheFile) or "".
	Source      string    `json:"source,omitempty"`
	Overrides   int       `json:"overrides"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// Fetcher keeps a service's policy from the CA (GET /v1/authz/policy):
// verified, refreshed at the CA's hint with ETag/304, the last good one kept
// in memory and on disk through CA outages. It is a PolicySource. Safe for
// concurrent use.
type Fetcher struct {
	cfg     FetcherConfig
	current swappable

	mu       sync.Mutex
	etag     string
	served   *ServedPolicy
	source   string
	hint     time.Duration
	lastOK   time.Time
	lastErr  error
	errCount int
}

// NewFetcher checks cfg and loads CacheFile when present (a cache that does
// not verify is logged and ignored). It does not contact the CA: call Refresh
// or Run.
func NewFetcher(cfg FetcherConfig) (*Fetcher, error) {
	if cfg.URL == "" || cfg.Client == nil || cfg.Bundles == nil || cfg.TrustDomain == "" {
		return nil, errors.New("authz: fetcher needs URL, Client, Bundles and TrustDomain")
	}
	if _, err := spiffeid.TrustDomainFromString(cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("authz: fetcher trust domain: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	f := &Fetcher{cfg: cfg, hint: defaultRefresh}
	if cfg.CacheFile != "" {
		if err := f.loadCache(); err != nil && !errors.Is(err, os.ErrNotExist) {
			cfg.Log.Warn("authz: cached policy not used", "file", cfg.CacheFile, "err", err)
		}
	}
	return f, nil
}

// Current returns the enforced policy and its active overrides (nil before
// any verified policy: the middleware then denies everything).
func (f *Fetcher) Current() (*Policy, []Override) { return f.current.Current() }

// Health says which version is enforced, where it came from and how the
// last refresh went.
func (f *Fetcher) Health() FetcherHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := FetcherHealth{LastSuccess: f.lastOK, Source: f.source}
	if f.lastErr != nil {
		h.LastError = f.lastErr.Error()
	}
	if f.served != nil {
		h.Loaded, h.Service, h.PolicyVersion, h.IssuedAt, h.Overrides = true, f.served.Service, f.served.Version, f.served.IssuedAt, len(f.served.Overrides)
	}
	return h
}

// loadCache verifies the cached JWS. Its chain is checked at the instant it
// was issued, not now: a restart during a CA outage longer than the signer
// certificate's lifetime must still find the last good policy. (The file is
// the service's own, mode 0600; the signature still has to verify.)
func (f *Fetcher) loadCache() error {
	data, err := os.ReadFile(f.cfg.CacheFile)
	if err != nil {
		return err
	}
	sp, p, err := f.verifyAt(data, time.Time{})
	if err != nil {
		return err
	}
	f.install(sp, p, "", "cache")
	f.cfg.Log.Info("authz: loaded cached policy", "file", f.cfg.CacheFile, "service", sp.Service, "policy_version", sp.Version, "issued_at", sp.IssuedAt)
	return nil
}

// verifyAt verifies jws at instant at; the zero at means "when it was
// issued" (the payload's issued_at, read after the signature is checked at
// that instant).
func (f *Fetcher) verifyAt(jws []byte, at time.Time) (*ServedPolicy, *Policy, error) {
	if at.IsZero() {
		// Peek at issued_at (unverified), then verify everything at it.
		obj, err := jose.ParseSignedCompact(strings.TrimSpace(string(jws)), jwsAlgorithms)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrPolicySignature, err)
		}
		var peek struct {
			IssuedAt time.Time `json:"issued_at"`
		}
		if err := json.Unmarshal(obj.UnsafePayloadWithoutVerification(), &peek); err != nil || peek.IssuedAt.IsZero() {
			return nil, nil, errors.New("authz: cached policy has no issued_at")
		}
		at = peek.IssuedAt
	}
	sp, p, err := VerifyServedPolicy(jws, f.cfg.Bundles, f.cfg.TrustDomain, at)
	if err != nil {
		return nil, nil, err
	}
	if f.cfg.Service != "" && sp.Service != f.cfg.Service {
		return nil, nil, fmt.Errorf("authz: served policy is for service %q, not %q", sp.Service, f.cfg.Service)
	}
	if f.cfg.Identity != "" && sp.Identity != f.cfg.Identity {
		return nil, nil, fmt.Errorf("authz: served policy is for identity %s, not %s", sp.Identity, f.cfg.Identity)
	}
	return sp, p, nil
}

func (f *Fetcher) install(sp *ServedPolicy, p *Policy, etag, source string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served, f.source = sp, source
	if etag != "" {
		f.etag = etag
	}
	f.hint = clampHint(sp.RefreshHintSeconds)
	f.current.set(p, sp.Overrides)
}

func clampHint(seconds int) time.Duration {
	d := time.Duration(seconds) * time.Second
	switch {
	case seconds <= 0:
		return defaultRefresh
	case d < minRefresh:
		return minRefresh
	case d > maxRefresh:
		return maxRefresh
	}
	return d
}

// Refresh fetches the policy once. On 304 the current one stays; on 200 the
// answer is verified (at the clock's time) and installed unless it is older
// than the one enforced (no rollback to an older issued_at), and written to
// CacheFile. On any failure the last good policy stays in force.
func (f *Fetcher) Refresh(ctx context.Context) error {
	err := f.refresh(ctx)
	f.mu.Lock()
	f.lastErr = err
	if err == nil {
		f.lastOK = f.cfg.Clock.Now()
		f.errCount = 0
	} else {
		f.errCount++
	}
	version := ""
	if f.served != nil {
		version = f.served.Version
	}
	f.mu.Unlock()
	if err != nil {
		f.cfg.Log.Warn("authz: policy refresh failed; the last good policy stays", "err", err, "policy_version", version)
	}
	return err
}

func (f *Fetcher) refresh(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(f.cfg.URL, "/")+PolicyPath, nil)
	if err != nil {
		return fmt.Errorf("authz: policy request: %w", err)
	}
	f.mu.Lock()
	etag := f.etag
	f.mu.Unlock()
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	res, err := f.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("authz: fetching the policy: %w", err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("authz: fetching the policy: %s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxPolicyResponseBytes+1))
	if err != nil {
		return fmt.Errorf("authz: reading the policy: %w", err)
	}
	if len(body) > MaxPolicyResponseBytes {
		return fmt.Errorf("authz: served policy larger than %d bytes", MaxPolicyResponseBytes)
	}
	sp, p, err := f.verifyAt(body, f.cfg.Clock.Now())
	if err != nil {
		return err
	}
	f.mu.Lock()
	older := f.served != nil && sp.IssuedAt.Before(f.served.IssuedAt)
	f.mu.Unlock()
	if older {
		return fmt.Errorf("authz: served policy issued at %s is older than the enforced one; ignored", sp.IssuedAt.Format(time.RFC3339))
	}
	f.install(sp, p, res.Header.Get("ETag"), "ca")
	if f.cfg.CacheFile != "" {
		if err := atomicfile.Replace(f.cfg.CacheFile, body, 0o600); err != nil {
			f.cfg.Log.Warn("authz: could not cache the policy", "file", f.cfg.CacheFile, "err", err)
		}
	}
	return nil
}

// NextRefresh is how long to wait before the next Refresh: the CA's hint
// (bounded to 5 s .. 10 min), shortened after failures so an outage is
// noticed to end soon.
func (f *Fetcher) NextRefresh() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errCount > 0 {
		return minRefresh
	}
	return f.hint
}

// Run refreshes until ctx ends, waiting NextRefresh between attempts.
func (f *Fetcher) Run(ctx context.Context) {
	for {
		_ = f.Refresh(ctx)
		t := time.NewTimer(f.NextRefresh())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// PolicyETag is the ETag the CA sets on a served policy: the quoted hex
// SHA-256 of the JWS payload bytes.
func PolicyETag(payload []byte) string {
	sum := sha256.Sum256(payload)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}
