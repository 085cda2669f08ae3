package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server runs the two listeners until its context ends, then shuts them down
// gracefully.
type Server struct {
	api    *http.Server
	public *http.Server
	grace  time.Duration
	log    *slog.Logger
}

// Config holds what New needs. APIHandler and PublicHandler come from
// Routes.API and Routes.Public; TLS from APITLSConfig.
type Config struct {
	APIHandler    http.Handler
	PublicHandler http.Handler
	TLS           *tls.Config
	// ShutdownGrace is how long in-flight requests may take after shutdown
	// begins.
	ShutdownGrace time.Duration
	Log           *slog.Logger
}

// New builds a Server with conservative timeouts.
func New(cfg Config) *Server {
	errLog := slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)
	mk := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          errLog,
		}
	}
	s := &Server{api: mk(cfg.APIHandler), public: mk(cfg.PublicHandler), grace: cfg.ShutdownGrace, log: cfg.Log}
	s.api.TLSConfig = cfg.TLS
	return s
}

// Serve serves HTTPS on apiLn and plain HTTP on publicLn until ctx ends or one
// listener fails, then shuts both down, giving in-flight requests up to the
// grace period. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, apiLn, publicLn net.Listener) error {
	errc := make(chan error, 2)
	go func() { errc <- s.api.ServeTLS(apiLn, "", "") }()
	go func() { errc <- s.public.Serve(publicLn) }()
	s.log.Info("listening", "api", "https://"+apiLn.Addr().String(), "public", "http://"+publicLn.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		serveErr = fmt.Errorf("listener stopped: %w", err)
	}
	s.log.Info("shutting down", "grace", s.grace.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	shutdownErr := errors.Join(s.api.Shutdown(sctx), s.public.Shutdown(sctx))
	if serveErr != nil {
		return serveErr
	}
	if shutdownErr != nil {
		return fmt.Errorf("graceful shutdown: %w", shutdownErr)
	}
	s.log.Info("stopped")
	return nil
}
