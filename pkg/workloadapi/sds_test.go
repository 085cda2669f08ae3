package workloadapi

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sdsSecrets decodes a DiscoveryResponse into its secrets by name.
func sdsSecrets(t *testing.T, res *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, a := range res.GetResources() {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		out[s.GetName()] = &s
	}
	return out
}

func leafSerial(t *testing.T, s *tlsv3.Secret) int64 {
	t.Helper()
	b, _ := pem.Decode(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if b == nil {
		t.Fatalf("secret %s holds no certificate", s.GetName())
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Int64()
}

func TestSDSServesSPIREsSecretNamesAndPushesRenewals(t *testing.T) {
	ca := newTestCA(t)
	srv := New(Config{})
	srv.RegisterSDS()
	chain, key := ca.svid(t, "/envoy", 2)
	if err := srv.SetX509SVID(chain, key); err != nil {
		t.Fatal(err)
	}
	srv.SetBundle(ca.bundle())
	_, _, addr := serve(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Envoy sends no workload.spiffe.io header; SDS answers without it.
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"spiffe://example.org/envoy", "spiffe://example.org", "ROOTCA", "unknown"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretTypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := sdsSecrets(t, res)
	if len(got) != 3 {
		t.Fatalf("%d secrets, want the certificate and two validation contexts", len(got))
	}
	if leafSerial(t, got["spiffe://example.org/envoy"]) != 2 || len(got["spiffe://example.org/envoy"].GetTlsCertificate().GetPrivateKey().GetInlineBytes()) == 0 {
		t.Error("the certificate secret lacks the SVID or its key")
	}
	for _, n := range []string{"spiffe://example.org", "ROOTCA"} {
		if roots, _ := pem.Decode(got[n].GetValidationContext().GetTrustedCa().GetInlineBytes()); roots == nil {
			t.Errorf("validation context %s has no trusted CA", n)
		}
	}
	// ACK, then renew: the new certificate is pushed without a new request.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretTypeURL, ResourceNames: names, VersionInfo: res.GetVersionInfo(), ResponseNonce: res.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	renewed, key2 := ca.svid(t, "/envoy", 3)
	if err := srv.SetX509SVID(renewed, key2); err != nil {
		t.Fatal(err)
	}
	res2, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if res2.GetVersionInfo() == res.GetVersionInfo() || leafSerial(t, sdsSecrets(t, res2)["spiffe://example.org/envoy"]) != 3 {
		t.Errorf("after the renewal: version %s, want a new one with serial 3", res2.GetVersionInfo())
	}
}
