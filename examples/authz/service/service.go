// Package service is the shared body of the three example services in
// examples/authz (payments, orders, reporting): it shows how a service built
// on pkg/mtls answers "may this identity call this endpoint?" with pkg/authz,
// taking its part of the policy from the CA (Fetcher), reporting decision
// counts back (Reporter) and deciding every request (Middleware).
//
// payments keeps refunds (POST /v1/refunds creates one, GET
// /v1/refunds/{id} reads one, POST /v1/refunds/{id} re-issues one); orders
// refunds an order by calling payments (POST /v1/orders/{id}/refund);
// reporting reads refunds (GET /v1/refund-reports/{id}) and, by mistake,
// also re-issues them (POST /v1/refund-reports/{id}/reissue): a write to a
// path it may read, which the policy takes away from it.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/mtls"
)

// Names of the example services, as in the authorization policy.
const (
	Payments  = "payments"
	Orders    = "orders"
	Reporting = "reporting"
)

// Config is what one example service needs.
type Config struct {
	// Name is the service's name in the authz policy: Payments, Orders or
	// Reporting (required).
	Name string
	// Addr is the listen address of the service's mTLS API (required;
	// "127.0.0.1:0" picks a free port, see Service.Addr).
	Addr string
	// CAURL is the CA's API base URL (https://ca.example.org:8443) and
	// BundleURL its trust bundle (http://ca.example.org:8080/bundle.json).
	CAURL, BundleURL string
	// TrustDomain is the CA's trust domain (required).
	TrustDomain string
	// CertFile, KeyFile (and optionally ChainFile) hold the service's own
	// certificate as `ca enroll` writes it; it is reloaded when renewed.
	CertFile, KeyFile, ChainFile string
	// PolicyCache, if set, keeps the last good signed policy on disk.
	PolicyCache string
	// ReportInterval is how often decision counts go to the CA (default
	// authz.DefaultReportInterval).
	ReportInterval time.Duration
	// AllowLogEvery: see authz.MiddlewareConfig (default 100).
	AllowLogEvery int
	// PaymentsURL and PaymentsID name the payments service for the callers
	// (orders, reporting): its base URL and the SPIFFE ID it must present.
	PaymentsURL, PaymentsID string
	Log                     *slog.Logger
}

// Service is one running example service.
type Service struct {
	cfg      Config
	Fetcher  *authz.Fetcher
	Reporter *authz.Reporter
	Counts   *authz.Counts

	ln       net.Listener
	srv      *http.Server
	payments *http.Client // orders, reporting: mTLS client to payments
	cancel   context.CancelFunc
	done     sync.WaitGroup

	mu      sync.Mutex
	refunds map[string]refund // payments only
	nextID  int
}

type refund struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	By          string `json:"requested_by"`
}

// New builds the service: its trust bundle (fetched from BundleURL), its
// certificate, the mTLS clients to the CA (which must present
// spiffe://<td>/ca/server) and to payments, the policy Fetcher, the Reporter
// and the authz Middleware around its routes. It binds Addr but serves
// nothing until Start.
func New(ctx context.Context, cfg Config) (*Service, error) {
	switch cfg.Name {
	case Payments:
	case Orders, Reporting:
		if cfg.PaymentsURL == "" || cfg.PaymentsID == "" {
			return nil, fmt.Errorf("%s needs the payments URL and SPIFFE ID", cfg.Name)
		}
	default:
		return nil, fmt.Errorf("unknown service %q (payments, orders or reporting)", cfg.Name)
	}
	if cfg.Addr == "" || cfg.CAURL == "" || cfg.BundleURL == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("the listen address, CA URL, bundle URL, certificate and key are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Log = cfg.Log.With("service", cfg.Name)
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain: %w", err)
	}
	bundles, err := mtls.NewHTTPBundle(ctx, mtls.HTTPBundleConfig{URL: cfg.BundleURL, TrustDomain: td, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	identity, err := mtls.LoadCertFiles(mtls.CertPaths{Cert: cfg.CertFile, Key: cfg.KeyFile, Chain: cfg.ChainFile}, cfg.Log)
	if err != nil {
		return nil, err
	}
	caID, err := spiffeid.FromSegments(td, "ca", "server")
	if err != nil {
		return nil, err
	}
	caTLS, err := mtls.ClientTLSConfig(mtls.Config{Bundles: bundles, Identity: identity, Authorize: mtls.AuthorizeID(caID), Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	caClient := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: caTLS}}

	s := &Service{cfg: cfg, Counts: authz.NewCounts(0), refunds: map[string]refund{}}
	if s.Fetcher, err = authz.NewFetcher(authz.FetcherConfig{URL: cfg.CAURL, Client: caClient, Bundles: bundles,
		TrustDomain: cfg.TrustDomain, Service: cfg.Name, CacheFile: cfg.PolicyCache, Log: cfg.Log}); err != nil {
		return nil, err
	}
	if s.Reporter, err = authz.NewReporter(authz.ReporterConfig{URL: cfg.CAURL, Client: caClient, Service: cfg.Name,
		Counts: s.Counts, Interval: cfg.ReportInterval, Log: cfg.Log}); err != nil {
		return nil, err
	}
	decide, err := authz.Middleware(authz.MiddlewareConfig{Service: cfg.Name, Policy: s.Fetcher, PeerID: authz.MTLSPeer,
		Log: cfg.Log, AllowLogEvery: cfg.AllowLogEvery, Counts: s.Counts})
	if err != nil {
		return nil, err
	}
	if cfg.Name != Payments {
		paymentsID, err := spiffeid.FromString(cfg.PaymentsID)
		if err != nil {
			return nil, fmt.Errorf("payments SPIFFE ID: %w", err)
		}
		ptls, err := mtls.ClientTLSConfig(mtls.Config{Bundles: bundles, Identity: identity, Authorize: mtls.AuthorizeID(paymentsID), Log: cfg.Log})
		if err != nil {
			return nil, err
		}
		s.payments = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: ptls}}
	}
	// Inbound: pkg/mtls verifies that the caller is of our trust domain;
	// pkg/authz decides what it may call.
	stls, err := mtls.ServerTLSConfig(mtls.Config{Bundles: bundles, Identity: identity, Authorize: mtls.AuthorizeMemberOf(td), Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", s.health) // over mTLS, not subject to the policy
	root.Handle("/", decide(s.routes()))
	s.srv = &http.Server{Handler: root, TLSConfig: stls, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)}
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the address the service listens on.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// Start fetches the policy once (a failure is logged: the service then
// enforces its cached policy, or denies everything until one arrives), and
// serves, refreshes the policy and reports counts until Stop.
func (s *Service) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	if err := s.Fetcher.Refresh(ctx); err == nil {
		s.cfg.Log.Info("policy loaded", "policy_version", s.Fetcher.Health().PolicyVersion)
	}
	s.done.Add(3)
	go func() {
		defer s.done.Done()
		if err := s.srv.ServeTLS(s.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Error("serving", "err", err)
		}
	}()
	go func() { defer s.done.Done(); s.Fetcher.Run(ctx) }()
	go func() { defer s.done.Done(); s.Reporter.Run(ctx) }() // flushes once more when ctx ends
}

// Stop stops serving, flushes the decision counts and waits for the
// background loops.
func (s *Service) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if s.cancel != nil {
		s.cancel()
	}
	s.done.Wait()
	return err
}

func (s *Service) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Fetcher.Health())
}

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	switch s.cfg.Name {
	case Payments:
		mux.HandleFunc("POST /v1/refunds", s.createRefund)
		mux.HandleFunc("GET /v1/refunds/{id}", s.getRefund)
		mux.HandleFunc("POST /v1/refunds/{id}", s.reissueRefund)
	case Orders:
		mux.HandleFunc("POST /v1/orders/{id}/refund", func(w http.ResponseWriter, r *http.Request) {
			s.callPayments(w, r, http.MethodPost, "/v1/refunds", refund{OrderID: r.PathValue("id"), AmountCents: 1999})
		})
	case Reporting:
		mux.HandleFunc("GET /v1/refund-reports/{id}", func(w http.ResponseWriter, r *http.Request) {
			s.callPayments(w, r, http.MethodGet, "/v1/refunds/"+r.PathValue("id"), nil)
		})
		mux.HandleFunc("POST /v1/refund-reports/{id}/reissue", func(w http.ResponseWriter, r *http.Request) {
			s.callPayments(w, r, http.MethodPost, "/v1/refunds/"+r.PathValue("id"), nil)
		})
	}
	return mux
}

func (s *Service) createRefund(w http.ResponseWriter, r *http.Request) {
	var in refund
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&in); err != nil || in.OrderID == "" || in.AmountCents <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"reason": "bad_request", "detail": `body {"order_id", "amount_cents" > 0} required`})
		return
	}
	s.mu.Lock()
	s.nextID++
	in.ID = fmt.Sprintf("rf-%d", s.nextID)
	in.By = authz.MTLSPeer(r)
	s.refunds[in.ID] = in
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, in)
}

// reissueRefund records a new refund with the order and amount of refund
// {id}.
func (s *Service) reissueRefund(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	orig, ok := s.refunds[r.PathValue("id")]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"reason": "not_found"})
		return
	}
	s.nextID++
	rf := refund{ID: fmt.Sprintf("rf-%d", s.nextID), OrderID: orig.OrderID, AmountCents: orig.AmountCents, By: authz.MTLSPeer(r)}
	s.refunds[rf.ID] = rf
	writeJSON(w, http.StatusCreated, rf)
}

func (s *Service) getRefund(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rf, ok := s.refunds[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"reason": "not_found"})
		return
	}
	writeJSON(w, http.StatusOK, rf)
}

// callPayments makes the call to payments with this service's own
// certificate and relays payments' status, content type and body, so a
// denial's problem+json reaches the original caller unchanged.
func (s *Service) callPayments(w http.ResponseWriter, r *http.Request, method, path string, body any) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(r.Context(), method, strings.TrimSuffix(s.cfg.PaymentsURL, "/")+path, rd)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"reason": "internal"})
		return
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.payments.Do(req)
	if err != nil {
		s.cfg.Log.Warn("calling payments", "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"reason": "upstream_unavailable"})
		return
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if ct := res.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
