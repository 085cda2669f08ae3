package mtls_test

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// stdlibServer is a server verifying clients the crypto/tls way
// (RequireAndVerifyClientCert against the kit root), which sends specific
// alerts: what a client of a non-package server can learn.
func (f *fixture) stdlibServer(t *testing.T, version uint16) *server {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(f.kit.CA.Root)
	return startServer(t, &tls.Config{
		Certificates: []tls.Certificate{*f.cred(testca.Good).TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   version,
		Time:         f.clk.Now,
	})
}

// TestTheRejectedSideLearnsWhatTheAlertSays checks exactly what a side that
// did not reject can know: specific alerts map to their reason, a bare
// bad_certificate only says the peer refused us.
func TestTheRejectedSideLearnsWhatTheAlertSays(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name    string
		version uint16
		own     string // "" for no client certificate
		want    mtls.Reason
		alert   uint8
	}{
		{"an expired client certificate refused by a crypto/tls server is expired", tls.VersionTLS13, testca.Expired, mtls.ReasonExpired, 45},
		{"a client certificate from an unknown CA refused by a crypto/tls server is unknown_ca", tls.VersionTLS13, testca.WrongCA, mtls.ReasonUnknownCA, 48},
		{"no client certificate over TLS 1.3 is no_client_certificate (certificate_required)", tls.VersionTLS13, "", mtls.ReasonNoClientCertificate, 116},
		{"no client certificate over TLS 1.2 is not classified (a generic handshake_failure)", tls.VersionTLS12, "", "", 40},
		{"an expired client certificate over TLS 1.2 is expired", tls.VersionTLS12, testca.Expired, mtls.ReasonExpired, 45},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := f.stdlibServer(t, tt.version)
			rec := &recorder{}
			cc := f.config(t, testca.Good, rec)
			cc.MinVersion = tls.VersionTLS12
			if tt.own == "" {
				cc.Identity = nil
			} else {
				cc.Identity = mtls.StaticIdentity{Cert: f.cred(tt.own).TLSCertificate()}
			}
			err := dial(t, srv.addr, mustClient(t, cc))
			_ = srv.result(t)
			got, ok := mtls.Classify(err)
			if ok != (tt.want != "") || got.Local || got.Reason != tt.want || got.Alert != tt.alert {
				t.Errorf("Classify(%v) = %+v, %v; want remote %s from alert %d", err, got, ok, tt.want, tt.alert)
			}
			if r := rec.take(); len(r) != 0 {
				t.Errorf("the client, which did not reject, reported %v", reasons(r))
			}
		})
	}
}

func TestAClientWithoutCertificateIsRejectedWithNoClientCertificate(t *testing.T) {
	f := newFixture(t)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			rec := &recorder{}
			sc := f.config(t, testca.Good, rec)
			sc.MinVersion = tls.VersionTLS12
			srv := startServer(t, mustServer(t, sc))
			cliErr := dial(t, srv.addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: version})
			srvErr := srv.result(t)
			if got, ok := mtls.Classify(srvErr); !ok || !got.Local || got.Reason != mtls.ReasonNoClientCertificate {
				t.Errorf("server: Classify(%v) = %+v, %v", srvErr, got, ok)
			}
			if r := reasons(rec.take()); !slices.Equal(r, []mtls.Reason{mtls.ReasonNoClientCertificate}) {
				t.Errorf("OnReject = %v", r)
			}
			if got, ok := mtls.Classify(cliErr); !ok || got.Reason != mtls.ReasonRejectedByPeer {
				t.Errorf("client: Classify(%v) = %+v, %v", cliErr, got, ok)
			}
		})
	}
}

func TestProtocolVersion(t *testing.T) {
	f := newFixture(t)
	t.Run("a TLS 1.2 client is refused by a default (TLS 1.3) server with protocol_version on both sides", func(t *testing.T) {
		rec := &recorder{}
		srv := startServer(t, mustServer(t, f.config(t, testca.Good, rec)))
		cliErr := dial(t, srv.addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{*f.cred(testca.Good).TLSCertificate()}})
		_ = srv.result(t)
		rs := rec.take()
		if !slices.Equal(reasons(rs), []mtls.Reason{mtls.ReasonProtocolVersion}) {
			t.Fatalf("OnReject = %v", reasons(rs))
		}
		if rs[0].PeerAddr == "" {
			t.Error("protocol_version rejection without the client's address")
		}
		if got, ok := mtls.Classify(cliErr); !ok || got.Local || got.Reason != mtls.ReasonProtocolVersion || got.Alert != 70 {
			t.Errorf("client: Classify(%v) = %+v, %v", cliErr, got, ok)
		}
	})
	t.Run("a default client learns protocol_version from a server offering only TLS 1.2", func(t *testing.T) {
		// A crypto/tls client offers only the versions it accepts, so the
		// server is the side that refuses, with a protocol_version alert.
		srv := f.stdlibServer(t, tls.VersionTLS12)
		rec := &recorder{}
		cliErr := dial(t, srv.addr, mustClient(t, f.config(t, testca.Good, rec)))
		_ = srv.result(t)
		if got, ok := mtls.Classify(cliErr); !ok || got.Local || got.Reason != mtls.ReasonProtocolVersion || got.Alert != 70 {
			t.Errorf("client: Classify(%v) = %+v, %v", cliErr, got, ok)
		}
		if r := rec.take(); len(r) != 0 {
			t.Errorf("the client, which did not reject, reported %v", reasons(r))
		}
	})
	t.Run("a MinVersion below TLS 1.2 is a configuration error", func(t *testing.T) {
		c := f.config(t, testca.Good, &recorder{})
		c.MinVersion = tls.VersionTLS11
		if _, err := mtls.ServerTLSConfig(c); err == nil {
			t.Error("TLS 1.1 minimum accepted")
		}
	})
}
