package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Config is what ServerTLSConfig and ClientTLSConfig need.
type Config struct {
	// Bundles is the trust bundle source (required): an *HTTPBundle, a
	// bundle from LoadBundleFile, or any x509bundle.Source.
	Bundles x509bundle.Source
	// Identity is our own certificate: required for servers, and for
	// clients that authenticate (every mTLS client).
	Identity IdentitySource
	// Authorize decides which verified peers are accepted (required).
	Authorize Authorizer
	// Revocation, if set, checks every peer's leaf.
	Revocation *RevocationChecker
	// MinVersion is tls.VersionTLS13 (the default) or tls.VersionTLS12.
	MinVersion uint16
	// SkewTolerance: see VerifierConfig.
	SkewTolerance time.Duration
	// RevocationTimeout bounds the revocation check of one handshake;
	// default 5 s.
	RevocationTimeout time.Duration
	Clock             Clock
	// Log receives one line per rejected handshake (Warn) and per accepted
	// one (Debug). A nil Log discards.
	Log *slog.Logger
	// OnReject, if set, is called once for every handshake this side
	// rejects, before the handshake fails.
	OnReject func(Rejection)
}

// Rejection describes a rejected handshake, for OnReject and the log line:
// the fields incident playbooks ask for.
type Rejection struct {
	Time time.Time
	// Side is "server" or "client": which side we are.
	Side string
	// SourceID is the SPIFFE ID of the connecting side (the client),
	// DestinationID that of the server; the peer's is as claimed by its
	// certificate, unverified. "" when unknown.
	SourceID, DestinationID string
	// PeerAddr is the server name dialled (on clients) or, on servers, the
	// client's address for protocol_version rejections only: crypto/tls does
	// not tell VerifyConnection the address (http.Server's handshake error
	// log line names it, next to this package's error).
	PeerAddr string
	Reason   Reason
	Detail   string
	// PeerSerial, PeerIssuer and PeerNotAfter describe the peer's leaf,
	// when it sent one.
	PeerSerial   string
	PeerIssuer   string
	PeerNotAfter time.Time
	// Err is the *RejectError.
	Err *RejectError
}

// ServerTLSConfig builds a server tls.Config that requires and verifies
// client certificates by SPIFFE ID. Verification is done by this package
// (ClientAuth is RequestClientCert so that a missing certificate is
// reported as no_client_certificate rather than failing inside crypto/tls);
// a client offering only versions below MinVersion is reported as
// protocol_version.
func ServerTLSConfig(c Config) (*tls.Config, error) {
	h, err := newHandshaker(c, "server")
	if err != nil {
		return nil, err
	}
	if c.Identity == nil {
		return nil, fmt.Errorf("%w: a server needs an Identity", ErrConfig)
	}
	base := &tls.Config{
		MinVersion: h.minVersion,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Identity.Certificate()
		},
	}
	// GetConfigForClient only observes (it returns nil, so the config in use,
	// including fields a caller such as http.Server added, stays in force):
	// crypto/tls rejects a too-old client before any verification hook runs.
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.ContainsFunc(hello.SupportedVersions, func(v uint16) bool { return v >= h.minVersion }) {
			addr := ""
			if hello.Conn != nil {
				addr = hello.Conn.RemoteAddr().String()
			}
			h.rejected(reject(ReasonProtocolVersion, "", nil, "client offered only %s, minimum is %s",
				versionNames(hello.SupportedVersions), tls.VersionName(h.minVersion)), nil, addr)
		}
		return nil, nil // crypto/tls answers a too-old client with a protocol_version alert
	}
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		return h.verify(context.Background(), cs.PeerCertificates, PeerIsClient, "")
	}
	return base, nil
}

// ClientTLSConfig builds a client tls.Config that verifies the server by
// SPIFFE ID against the bundle (InsecureSkipVerify is set only because this
// package does the verification itself, in VerifyConnection) and presents
// Identity, when set, as the client certificate.
func ClientTLSConfig(c Config) (*tls.Config, error) {
	h, err := newHandshaker(c, "client")
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:         h.minVersion,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
	}
	if c.Identity != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.Identity.Certificate()
		}
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return h.verify(context.Background(), cs.PeerCertificates, PeerIsServer, cs.ServerName)
	}
	return cfg, nil
}

// handshaker verifies peers and reports the outcome.
type handshaker struct {
	v                 *Verifier
	side              string
	identity          IdentitySource
	minVersion        uint16
	revocationTimeout time.Duration
	clock             Clock
	log               *slog.Logger
	onReject          func(Rejection)
}

func newHandshaker(c Config, side string) (*handshaker, error) {
	v, err := NewVerifier(VerifierConfig{Bundles: c.Bundles, Authorize: c.Authorize, Revocation: c.Revocation, Clock: c.Clock, SkewTolerance: c.SkewTolerance})
	if err != nil {
		return nil, err
	}
	h := &handshaker{v: v, side: side, identity: c.Identity, minVersion: c.MinVersion, revocationTimeout: c.RevocationTimeout,
		clock: v.clock, log: c.Log, onReject: c.OnReject}
	switch h.minVersion {
	case 0:
		h.minVersion = tls.VersionTLS13
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("%w: MinVersion must be TLS 1.2 or 1.3, not %s", ErrConfig, tls.VersionName(c.MinVersion))
	}
	if h.revocationTimeout <= 0 {
		h.revocationTimeout = 5 * time.Second
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

func (h *handshaker) verify(ctx context.Context, certs []*x509.Certificate, role Role, peerAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, h.revocationTimeout)
	defer cancel()
	verified, err := h.v.Verify(ctx, certs, role)
	var leaf *x509.Certificate
	if len(certs) > 0 {
		leaf = certs[0]
	}
	if err != nil {
		re, _ := err.(*RejectError)
		h.rejected(re, leaf, peerAddr)
		return err
	}
	src, dst := h.endpoints(verified.ID.String())
	h.log.Debug("mtls: handshake accepted", "side", h.side, "decision", "allow", "source_id", src, "destination_id", dst,
		"peer_addr", peerAddr, "peer_serial", serialHex(leaf), "peer_not_after", leaf.NotAfter, "revocation", string(verified.Revocation.Status))
	return nil
}

// endpoints orders our ID and the peer's into source (client) and
// destination (server).
func (h *handshaker) endpoints(peerID string) (src, dst string) {
	own := h.ownID()
	if h.side == "server" {
		return peerID, own
	}
	return own, peerID
}

func (h *handshaker) ownID() string {
	if h.identity == nil {
		return ""
	}
	c, err := h.identity.Certificate()
	if err != nil || c == nil {
		return ""
	}
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return ""
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return ""
	}
	return id.String()
}

// rejected logs a rejection and calls OnReject.
func (h *handshaker) rejected(re *RejectError, leaf *x509.Certificate, peerAddr string) {
	if re == nil {
		return
	}
	peerID := re.PeerID
	if peerID == "" {
		peerID = claimedID(leaf)
	}
	src, dst := h.endpoints(peerID)
	r := Rejection{Time: h.clock.Now(), Side: h.side, SourceID: src, DestinationID: dst, PeerAddr: peerAddr,
		Reason: re.Reason, Detail: re.Detail, Err: re}
	attrs := []any{"side", h.side, "decision", "reject", "reason", string(re.Reason), "source_id", src, "destination_id", dst,
		"peer_addr", peerAddr, "detail", re.Detail}
	if leaf != nil {
		r.PeerSerial, r.PeerIssuer, r.PeerNotAfter = serialHex(leaf), leaf.Issuer.String(), leaf.NotAfter
		attrs = append(attrs, "peer_serial", r.PeerSerial, "peer_issuer", r.PeerIssuer, "peer_not_after", r.PeerNotAfter)
	}
	h.log.Warn("mtls: handshake rejected", attrs...)
	if h.onReject != nil {
		h.onReject(r)
	}
}

// PeerID returns the SPIFFE ID of the peer of a connection whose handshake
// this package's tls.Config accepted.
func PeerID(cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, fmt.Errorf("%w: no peer certificate", ErrNotAuthorized)
	}
	return x509svid.IDFromCert(cs.PeerCertificates[0])
}

func versionNames(vs []uint16) string {
	s := ""
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += tls.VersionName(v)
	}
	return s
}
