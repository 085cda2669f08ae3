package testca

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/workload-ca/workload-ca/pkg/mtls"
)

// Accept is the expectation of a credential that must be accepted.
const Accept = "accept"

// Credential names of a kit, in manifest order.
const (
	Good            = "good"
	Expired         = "expired"
	NotYetValid     = "not-yet-valid"
	WrongCA         = "wrong-ca"
	WrongTrustDom   = "wrong-trust-domain"
	WrongID         = "wrong-spiffe-id"
	Revoked         = "revoked"
	NoClientAuthEKU = "no-client-auth-eku"
	NoServerAuthEKU = "no-server-auth-eku"
)

// KitOptions configures NewKit.
type KitOptions struct {
	// TrustDomain defaults to example.org.
	TrustDomain string
	// Now anchors validity periods; default the wall clock.
	Now time.Time
	// CRLURL is where the test CA's CRL will be served; it is written into
	// every leaf of the test CA. Default http://127.0.0.1:18089/crl/testkit.crl.
	CRLURL string
	// Lifetime of the valid credentials and of the CRL; default one year.
	Lifetime time.Duration
}

// DefaultCRLURL is KitOptions.CRLURL's default.
const DefaultCRLURL = "http://127.0.0.1:18089/crl/testkit.crl"

// KitCredential is one credential of a kit with what a verifier built with
// pkg/mtls (trusting only the kit's bundle, authorizing only
// Kit.AuthorizedID, with CRL checking on) must decide for it.
type KitCredential struct {
	Name        string
	Description string
	*Credential
	// ExpectAsClient and ExpectAsServer are Accept or an mtls.Reason: the
	// decision when the credential is presented by a client, or by a server.
	ExpectAsClient, ExpectAsServer string
	// NeedsRevocationCheck is true when the expectation holds only with
	// revocation checking enabled (and the CRL served at the CRL URL).
	NeedsRevocationCheck bool
}

// Kit is a throwaway test CA with one credential per failure mode and a good
// control.
type Kit struct {
	CA *CA
	// Other is an unrelated CA that signs the wrong-ca credential; its root
	// is not in the bundle.
	Other        *CA
	AuthorizedID string
	Credentials  []KitCredential
	// CRL is the test CA's DER CRL listing the revoked credential.
	CRL         []byte
	CRLNextTime time.Time
	now         time.Time
}

// NewKit builds a fresh test CA and its credentials.
func NewKit(o KitOptions) (*Kit, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.CRLURL == "" {
		o.CRLURL = DefaultCRLURL
	}
	if o.Lifetime <= 0 {
		o.Lifetime = 365 * 24 * time.Hour
	}
	ca, err := New(Options{TrustDomain: o.TrustDomain, Name: "workload-ca testkit", Now: o.Now, CRLURL: o.CRLURL})
	if err != nil {
		return nil, err
	}
	other, err := New(Options{TrustDomain: ca.TrustDomain.Name(), Name: "workload-ca testkit OTHER (untrusted)", Now: o.Now})
	if err != nil {
		return nil, err
	}
	td := ca.TrustDomain.Name()
	peer := "spiffe://" + td + "/testkit/peer"
	year := 365 * 24 * time.Hour
	valid := Leaf{SPIFFEID: peer, NotBefore: o.Now.Add(-time.Hour), NotAfter: o.Now.Add(o.Lifetime)}
	with := func(f func(*Leaf)) Leaf { l := valid; f(&l); return l }
	specs := []struct {
		name, desc         string
		ca                 *CA
		leaf               Leaf
		asClient, asServer string
		revoke             bool
	}{
		{Good, "valid, trusted, authorized: the control that must be accepted", ca, valid, Accept, Accept, false},
		{Expired, "expired a year ago", ca, with(func(l *Leaf) { l.NotBefore, l.NotAfter = o.Now.Add(-2*year), o.Now.Add(-year) }),
			string(mtls.ReasonExpired), string(mtls.ReasonExpired), false},
		{NotYetValid, "valid only from five years after generation (a clock far behind, or a certificate dated ahead)", ca,
			with(func(l *Leaf) { l.NotBefore, l.NotAfter = o.Now.Add(5*year), o.Now.Add(6*year) }),
			string(mtls.ReasonNotYetValid), string(mtls.ReasonNotYetValid), false},
		{WrongCA, "same SPIFFE ID, signed by an unrelated CA whose root is not in the bundle", other, valid,
			string(mtls.ReasonUnknownCA), string(mtls.ReasonUnknownCA), false},
		{WrongTrustDom, "signed by the test CA but naming another trust domain", ca,
			with(func(l *Leaf) { l.SPIFFEID = "spiffe://wrong-" + td + "/testkit/peer" }),
			string(mtls.ReasonWrongTrustDomain), string(mtls.ReasonWrongTrustDomain), false},
		{WrongID, "trusted chain, but a SPIFFE ID the authorizer does not allow", ca,
			with(func(l *Leaf) { l.SPIFFEID = "spiffe://" + td + "/testkit/intruder" }),
			string(mtls.ReasonIdentityNotAuthorized), string(mtls.ReasonIdentityNotAuthorized), false},
		{Revoked, "valid, but listed (keyCompromise) on the test CA's CRL", ca, valid,
			string(mtls.ReasonRevoked), string(mtls.ReasonRevoked), true},
		{NoClientAuthEKU, "extended key usage serverAuth only: refused as a client, fine as a server", ca,
			with(func(l *Leaf) { l.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }),
			string(mtls.ReasonBadKeyUsage), Accept, false},
		{NoServerAuthEKU, "extended key usage clientAuth only: refused as a server, fine as a client", ca,
			with(func(l *Leaf) { l.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }),
			Accept, string(mtls.ReasonBadKeyUsage), false},
	}
	k := &Kit{CA: ca, Other: other, AuthorizedID: peer, now: o.Now}
	for _, s := range specs {
		cred, err := s.ca.Issue(s.leaf)
		if err != nil {
			return nil, fmt.Errorf("testca: credential %s: %w", s.name, err)
		}
		if s.revoke {
			ca.Revoke(cred.Leaf().SerialNumber, o.Now.Add(-time.Minute))
		}
		k.Credentials = append(k.Credentials, KitCredential{Name: s.name, Description: s.desc, Credential: cred,
			ExpectAsClient: s.asClient, ExpectAsServer: s.asServer, NeedsRevocationCheck: s.revoke})
	}
	if k.CRL, err = ca.CRL(o.Now.Add(-time.Minute), o.Lifetime); err != nil {
		return nil, err
	}
	k.CRLNextTime = o.Now.Add(-time.Minute).Add(o.Lifetime)
	return k, nil
}

// Credential returns the named credential, or nil.
func (k *Kit) Credential(name string) *KitCredential {
	for i := range k.Credentials {
		if k.Credentials[i].Name == name {
			return &k.Credentials[i]
		}
	}
	return nil
}

// BundleJSON is the test CA's SPIFFE trust bundle (its root only).
func (k *Kit) BundleJSON() ([]byte, error) {
	b := spiffebundle.FromX509Authorities(k.CA.TrustDomain, []*x509.Certificate{k.CA.Root})
	b.SetRefreshHint(5 * time.Minute)
	b.SetSequenceNumber(1)
	return b.Marshal()
}

// Manifest describes a kit written to a directory. Paths are relative to it.
type Manifest struct {
	Warning      string `json:"warning"`
	GeneratedAt  string `json:"generated_at"`
	TrustDomain  string `json:"trust_domain"`
	AuthorizedID string `json:"authorized_id"`
	BundlePEM    string `json:"bundle_pem"`
	BundleJSON   string `json:"bundle_json"`
	// UntrustedRootPEM is the root of the wrong-ca credential: never trust it.
	UntrustedRootPEM string               `json:"untrusted_root_pem"`
	CRL              ManifestCRL          `json:"crl"`
	Credentials      []ManifestCredential `json:"credentials"`
}

// ManifestCRL says where the test CA's CRL is and where it must be served.
type ManifestCRL struct {
	File       string `json:"file"`
	URL        string `json:"url"`
	NextUpdate string `json:"next_update"`
}

// ManifestCredential is one credential in the manifest.
type ManifestCredential struct {
	Name                 string `json:"name"`
	Description          string `json:"description"`
	SPIFFEID             string `json:"spiffe_id"`
	Cert                 string `json:"cert"`
	Key                  string `json:"key"`
	Serial               string `json:"serial"`
	NotBefore            string `json:"not_before"`
	NotAfter             string `json:"not_after"`
	ExpectAsClient       string `json:"expect_as_client"`
	ExpectAsServer       string `json:"expect_as_server"`
	NeedsRevocationCheck bool   `json:"needs_revocation_check"`
}

const warning = "THROWAWAY TEST CA: never trust its root outside tests; it is not a workload-ca issuer and nothing it issued is recorded."

// Write writes the kit into dir (created if needed; existing kit files are
// overwritten): manifest.json, ca/bundle.pem, ca/bundle.json, ca/crl/<name
// of the CRL URL's last path segment>, ca/untrusted-root.pem, and for each
// credential <name>/cert.pem (leaf then intermediate) and <name>/key.pem
// (mode 0600). It returns the manifest.
func (k *Kit) Write(dir string) (*Manifest, error) {
	crlName := path.Base(k.CA.CRLURL)
	if crlName == "" || crlName == "/" || crlName == "." {
		crlName = "testkit.crl"
	}
	m := &Manifest{
		Warning: warning, GeneratedAt: k.now.UTC().Format(time.RFC3339), TrustDomain: k.CA.TrustDomain.Name(),
		AuthorizedID: k.AuthorizedID, BundlePEM: "ca/bundle.pem", BundleJSON: "ca/bundle.json",
		UntrustedRootPEM: "ca/untrusted-root.pem",
		CRL:              ManifestCRL{File: "ca/crl/" + crlName, URL: k.CA.CRLURL, NextUpdate: k.CRLNextTime.UTC().Format(time.RFC3339)},
	}
	bundleJSON, err := k.BundleJSON()
	if err != nil {
		return nil, fmt.Errorf("testca: bundle: %w", err)
	}
	files := map[string][]byte{
		m.BundlePEM:        CertsPEM(k.CA.Root),
		m.BundleJSON:       bundleJSON,
		m.UntrustedRootPEM: CertsPEM(k.Other.Root),
		m.CRL.File:         k.CRL,
	}
	keys := map[string][]byte{}
	for _, c := range k.Credentials {
		leaf := c.Leaf()
		mc := ManifestCredential{
			Name: c.Name, Description: c.Description, SPIFFEID: leaf.URIs[0].String(),
			Cert: c.Name + "/cert.pem", Key: c.Name + "/key.pem", Serial: leaf.SerialNumber.Text(16),
			NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339), NotAfter: leaf.NotAfter.UTC().Format(time.RFC3339),
			ExpectAsClient: c.ExpectAsClient, ExpectAsServer: c.ExpectAsServer, NeedsRevocationCheck: c.NeedsRevocationCheck,
		}
		keyPEM, err := c.KeyPEM()
		if err != nil {
			return nil, err
		}
		files[mc.Cert] = c.CertPEM()
		keys[mc.Key] = keyPEM
		m.Credentials = append(m.Credentials, mc)
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("testca: manifest: %w", err)
	}
	files["manifest.json"] = append(manifest, '\n')
	for name, data := range files {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(name)), data, 0o644); err != nil {
			return nil, err
		}
	}
	for name, data := range keys {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(name)), data, 0o600); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("testca: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrInvalid, err)
	}
	return &m, nil
}

func writeFile(name string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	if err := os.WriteFile(name, data, mode); err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	if err := os.Chmod(name, mode); err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	return nil
}
