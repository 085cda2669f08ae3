package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// forgeWithIssuerKey signs a client certificate for spiffeID with the active
// intermediate's own key (on the token) under the given serial: what an
// attacker holding a trusted issuer key, or a signing bug, would present.
func forgeWithIssuerKey(t *testing.T, o *operatorServer, keys hsm.KeyStore, serial *big.Int, spiffeID string, notAfter time.Time) tls.Certificate {
	t.Helper()
	issuers, err := o.st.ListIssuers(o.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var inter *store.Issuer
	for i := range issuers {
		if issuers[i].Kind == store.KindIntermediate && issuers[i].State == store.IssuerActive {
			inter = &issuers[i]
		}
	}
	if inter == nil {
		t.Fatal("no active intermediate")
	}
	parent, err := x509.ParseCertificate(inter.CertDER)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.Find(o.ctx, inter.KeyURI)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    o.clk.Now().Add(-time.Minute),
		NotAfter:     notAfter,
		URIs:         []*url.URL{u},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, leafKey.Public(), k.Signer)
	if err != nil {
		t.Fatalf("forging with the intermediate's key: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, inter.CertDER}, PrivateKey: leafKey}
}

// TestOperatorClientCertificateMustBeTheRecordedOne: a certificate signed by
// the CA's own intermediate key on the token, carrying the break-glass
// SPIFFE ID under a borrowed active serial, passes TLS (it chains to the
// anchors) but is not the recorded certificate: 401, audited as a possible
// forgery. The recorded break-glass certificate still works, and an expired
// or revoked one does not.
func TestOperatorClientCertificateMustBeTheRecordedOne(t *testing.T) {
	keys := testkit.SoftHSMKeyStore(t)
	o := newOperatorServer(t, keys)
	workload, _ := o.leaf("spiffe://example.org/prod/payments", time.Hour)
	_, genuine := o.leaf(breakGlassID, time.Hour)

	borrowed, ok := new(big.Int).SetString(workload.Serial, 16)
	if !ok {
		t.Fatal(workload.Serial)
	}
	forged := forgeWithIssuerKey(t, o, keys, borrowed, breakGlassID, o.clk.Now().Add(time.Hour))
	res, body := o.call(creds{cert: &forged}, "GET", "/v1/certificates?limit=1", "", "forged-1")
	if res.StatusCode != 401 || decodeProblem(t, res).Reason != ReasonUnauthorized {
		t.Fatalf("forged break-glass certificate with a borrowed serial: %d %s; want 401 unauthorized", res.StatusCode, body)
	}
	entries := o.auditByRequestID()["forged-1"]
	if len(entries) != 1 || entries[0].Action != "authz" || entries[0].Decision != "deny" || entries[0].Reason != string(ReasonUnauthorized) {
		t.Fatalf("audit of the forged attempt: %+v", entries)
	}
	var det denialDetails
	if err := json.Unmarshal(entries[0].Details, &det); err != nil || !det.PossibleForgery || det.Auth != AuthClientCert {
		t.Errorf("denial details %s: want possible_forgery with auth client_certificate", entries[0].Details)
	}

	// A serial nobody was issued: unknown, not a forgery of a record.
	unknown := forgeWithIssuerKey(t, o, keys, big.NewInt(0x1234567890), breakGlassID, o.clk.Now().Add(time.Hour))
	if res, body := o.call(creds{cert: &unknown}, "GET", "/v1/certificates?limit=1", "", "forged-2"); res.StatusCode != 401 {
		t.Fatalf("forged certificate with an unknown serial: %d %s", res.StatusCode, body)
	}

	// The recorded certificate works.
	if res, body := o.call(creds{cert: &genuine}, "GET", "/v1/certificates?limit=1", "", "genuine"); res.StatusCode != 200 {
		t.Fatalf("the recorded break-glass certificate: %d %s", res.StatusCode, body)
	}

	// The recorded workload certificate has no role: 403, not a forgery.
	_, wl := o.leaf("spiffe://example.org/prod/ledger", time.Hour)
	if res, body := o.call(creds{cert: &wl}, "GET", "/v1/certificates?limit=1", "", "workload"); res.StatusCode != 403 {
		t.Fatalf("a workload certificate as operator: %d %s", res.StatusCode, body)
	}

	// Revoked in the records: refused, as before.
	revoked, revokedCert := o.leaf(breakGlassID, time.Hour)
	if _, _, err := o.st.RevokeCertificate(o.ctx, revoked.Serial, o.clk.Now(), "superseded", auditEntryForTest(revoked.Serial)); err != nil {
		t.Fatal(err)
	}
	if res, body := o.call(creds{cert: &revokedCert}, "GET", "/v1/certificates?limit=1", "", "revoked"); res.StatusCode != 401 {
		t.Fatalf("a revoked break-glass certificate: %d %s", res.StatusCode, body)
	}
}
