package workloadapi

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Secret names Envoy asks for, as SPIRE's agent names them: the SPIFFE ID
// (or "default") for the workload's certificate, the trust domain's SPIFFE
// ID (spiffe://example.org) or "ROOTCA" for the validation context.
const (
	SDSDefaultSVIDName   = "default"
	SDSDefaultBundleName = "ROOTCA"
	secretTypeURL        = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// sds is Envoy's Secret Discovery Service (envoy.service.secret.v3, with
// go-control-plane's generated code) over the same state as the Workload
// API: every renewal and bundle change is pushed again.
type sds struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	srv *Server
}

// RegisterSDS serves Envoy's SDS on the same socket; call before Serve.
func (srv *Server) RegisterSDS() {
	secretv3.RegisterSecretDiscoveryServiceServer(srv.grpc, &sds{srv: srv})
}

// FetchSecrets answers one request with the current secrets.
func (s *sds) FetchSecrets(_ context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	sv, b, _ := s.srv.state.snapshot()
	if sv == nil || b == nil {
		return nil, status.Error(codes.Unavailable, "the agent has no SVID and bundle yet")
	}
	return s.response(sv, b, req.GetResourceNames(), "0", "0")
}

// StreamSecrets is the state-of-the-world xDS protocol: it answers each
// new request (a request acknowledging the last response with the same
// names is not answered again) and pushes a new response on every change.
func (s *sds) StreamSecrets(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	ctx := stream.Context()
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		names      []string
		subscribed bool
		version    int
		nonce      string
		lastSVID   *svid
		lastBundle *spiffebundle.Bundle
		changed    <-chan struct{}
	)
	send := func(force bool) error {
		sv, b, ch := s.srv.state.snapshot()
		changed = ch
		if sv == nil || b == nil || (!force && sv == lastSVID && b == lastBundle) {
			return nil
		}
		version++
		nonce = strconv.Itoa(version)
		res, err := s.response(sv, b, names, nonce, nonce)
		if err != nil {
			return err
		}
		lastSVID, lastBundle = sv, b
		return stream.Send(res)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case r := <-reqs:
			if r.GetErrorDetail() != nil {
				s.srv.log.Warn("workloadapi: Envoy rejected the secrets (NACK)", "nonce", r.GetResponseNonce(), "error", r.GetErrorDetail().GetMessage())
			}
			if r.GetTypeUrl() != "" && r.GetTypeUrl() != secretTypeURL {
				return status.Errorf(codes.InvalidArgument, "type_url %q is not %s", r.GetTypeUrl(), secretTypeURL)
			}
			if r.GetResponseNonce() != nonce {
				continue // a request about an older response; the newer one is on its way
			}
			if subscribed && r.GetResponseNonce() != "" && slices.Equal(r.GetResourceNames(), names) {
				continue // an ACK (or NACK) of what was sent: nothing new to say
			}
			names, subscribed = slices.Clone(r.GetResourceNames()), true
			if err := send(true); err != nil {
				return err
			}
		case <-changed:
			if !subscribed {
				_, _, changed = s.srv.state.snapshot()
				continue
			}
			if err := send(false); err != nil {
				return err
			}
		}
	}
}

// response builds the secrets named (all of them when names is empty);
// names the agent does not have are left out, as xDS expects.
func (s *sds) response(sv *svid, b *spiffebundle.Bundle, names []string, version, nonce string) (*discoveryv3.DiscoveryResponse, error) {
	id, tdID := sv.id.String(), b.TrustDomain().IDString()
	if len(names) == 0 {
		names = []string{id, tdID}
	}
	res := &discoveryv3.DiscoveryResponse{VersionInfo: version, Nonce: nonce, TypeUrl: secretTypeURL}
	for _, name := range names {
		var secret *tlsv3.Secret
		switch name {
		case id, SDSDefaultSVIDName:
			secret = &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline(pemCerts(sv.chain)),
				PrivateKey:       inline(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: sv.keyPKCS8})),
			}}}
		case tdID, SDSDefaultBundleName:
			secret = &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inline(pemCerts(b.X509Authorities())),
			}}}
		default:
			continue
		}
		a, err := anypb.New(secret)
		if err != nil {
			return nil, fmt.Errorf("workloadapi: encoding secret %s: %w", name, err)
		}
		res.Resources = append(res.Resources, a)
	}
	return res, nil
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}
