package workloadapi

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Clock tells the current time; tests pass a fake one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a Server.
type Config struct {
	// Minter obtains JWT-SVIDs from the CA; nil refuses FetchJWTSVID with
	// Unavailable.
	Minter Minter
	// AllowUIDs and AllowGIDs, when either is non-empty, admit only callers
	// whose unix peer credentials (SO_PEERCRED) carry one of these uids or
	// gids; others are refused with PermissionDenied and a log line.
	AllowUIDs, AllowGIDs []uint32
	Clock                Clock
	Log                  *slog.Logger
}

// Server is the SPIFFE Workload API over the agent's current SVID and
// bundle. Safe for concurrent use.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	cfg   Config
	log   *slog.Logger
	clock Clock
	state *state
	jwt   *jwtCache
	grpc  *grpc.Server
}

// New returns a Server without SVID or bundle: calls answer Unavailable
// until SetX509SVID and SetBundle have been called.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	srv := &Server{cfg: cfg, log: cfg.Log, clock: cfg.Clock, state: newState()}
	srv.jwt = newJWTCache(cfg.Minter, cfg.Clock)
	srv.grpc = grpc.NewServer(
		grpc.Creds(peerCredentials{}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := srv.admit(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(s any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := srv.admit(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(s, ss)
		}),
	)
	workload.RegisterSpiffeWorkloadAPIServer(srv.grpc, srv)
	return srv
}

// Register adds another gRPC service (such as Envoy's SDS) to the same
// socket; call it before Serve.
func (srv *Server) Register(desc *grpc.ServiceDesc, impl any) { srv.grpc.RegisterService(desc, impl) }

// Serve answers on l until Stop; l is normally from Listen.
func (srv *Server) Serve(l net.Listener) error { return srv.grpc.Serve(l) }

// Stop ends open streams and stops serving.
func (srv *Server) Stop() { srv.grpc.Stop() }

// admit applies the Workload API's rules to every call: the
// `workload.spiffe.io: true` metadata (InvalidArgument without it, which
// shows the caller is not a browser or a confused proxy), then the peer
// credential allow-list (PermissionDenied), which also guards SDS.
func (srv *Server) admit(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	// The header rule is the Workload API's; Envoy's SDS does not send it.
	if v := md.Get("workload.spiffe.io"); strings.HasPrefix(method, "/SpiffeWorkloadAPI/") && (len(v) != 1 || v[0] != "true") {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	if len(srv.cfg.AllowUIDs) == 0 && len(srv.cfg.AllowGIDs) == 0 {
		return nil
	}
	cred, ok := peerCredOf(ctx)
	if !ok {
		srv.log.Warn("workloadapi: caller refused: no peer credentials", "method", method)
		return status.Error(codes.PermissionDenied, "no peer credentials")
	}
	if !allowed(cred, srv.cfg.AllowUIDs, srv.cfg.AllowGIDs) {
		srv.log.Warn("workloadapi: caller refused by --allow-uid/--allow-gid", "method", method, "uid", cred.UID, "gid", cred.GID, "pid", cred.PID)
		return status.Error(codes.PermissionDenied, "caller not allowed")
	}
	return nil
}

func allowed(c PeerCred, uids, gids []uint32) bool {
	for _, u := range uids {
		if c.UID == u {
			return true
		}
	}
	for _, g := range gids {
		if c.GID == g {
			return true
		}
	}
	return false
}

// FetchX509SVID streams the SVID with its bundle, again after every renewal
// and bundle change. Until the first SVID and bundle exist it answers
// Unavailable (go-spiffe's clients retry).
func (srv *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return srv.stream(stream.Context(), func(sv *svid, b *spiffebundle.Bundle) error {
		if sv == nil {
			return status.Error(codes.Unavailable, "no X.509-SVID yet")
		}
		return stream.Send(&workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
			SpiffeId:    sv.id.String(),
			X509Svid:    rawChain(sv.chain),
			X509SvidKey: sv.keyPKCS8,
			Bundle:      x509BundleDER(b),
		}}})
	}, true)
}

// FetchX509Bundles streams the trust domain's X.509 authorities, again after
// every change (during a CA rotation the new root appears for the overlap).
func (srv *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return srv.stream(stream.Context(), func(_ *svid, b *spiffebundle.Bundle) error {
		return stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{
			b.TrustDomain().IDString(): x509BundleDER(b),
		}})
	}, false)
}

// FetchJWTBundles streams the trust domain's JWT-SVID keys as a JWKS, again
// after every change.
func (srv *Server) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	return srv.stream(stream.Context(), func(_ *svid, b *spiffebundle.Bundle) error {
		jwks, err := jwtJWKS(b)
		if err != nil {
			srv.log.Error("workloadapi: encoding the JWT bundle", "err", err)
			return status.Error(codes.Internal, "encoding the JWT bundle")
		}
		return stream.Send(&workload.JWTBundlesResponse{Bundles: map[string][]byte{
			b.TrustDomain().IDString(): jwks,
		}})
	}, false)
}

// stream sends the current state, then again after each change, until the
// caller goes away. needSVID: the message needs the SVID, not just the
// bundle. A message whose inputs have not changed is not sent again.
func (srv *Server) stream(ctx context.Context, send func(*svid, *spiffebundle.Bundle) error, needSVID bool) error {
	var lastSVID *svid
	var lastBundle *spiffebundle.Bundle
	for {
		sv, b, changed := srv.state.snapshot()
		if b == nil || (needSVID && sv == nil) {
			// The spec: Unavailable while the agent has nothing to give yet.
			return status.Error(codes.Unavailable, "the agent has no SVID and bundle yet")
		}
		if b != lastBundle || (needSVID && sv != lastSVID) {
			if err := send(sv, b); err != nil {
				return err
			}
			lastSVID, lastBundle = sv, b
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}
