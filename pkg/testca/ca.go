package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrInvalid means a test CA option or leaf specification is invalid.
var ErrInvalid = errors.New("testca: invalid specification")

// Options configures New.
type Options struct {
	// TrustDomain the CA issues for; default example.org.
	TrustDomain string
	// Name goes into the CAs' common names; default "testca".
	Name string
	// Now anchors validity periods; default the wall clock.
	Now time.Time
	// CRLURL and OCSPURL, when set, are written into every leaf as its CRL
	// distribution point and AIA OCSP responder.
	CRLURL, OCSPURL string
}

// CA is a throwaway root and intermediate with software keys. It is for
// tests only: nothing records what it issues. Safe for concurrent use.
type CA struct {
	TrustDomain  spiffeid.TrustDomain
	Root         *x509.Certificate
	RootKey      crypto.Signer
	Intermediate *x509.Certificate
	// IntermediateKey signs leaves and the CRL.
	IntermediateKey crypto.Signer
	CRLURL, OCSPURL string
	name            string
	now             time.Time

	mu        sync.Mutex
	revoked   []x509.RevocationListEntry
	crlNumber int64
}

// New builds a CA: a root valid from 3 years before Now to 20 years after,
// and an intermediate with the same validity.
func New(o Options) (*CA, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = "example.org"
	}
	if o.Name == "" {
		o.Name = "testca"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("%w: trust domain: %v", ErrInvalid, err)
	}
	rootKey, err := newKey()
	if err != nil {
		return nil, err
	}
	root, err := sign(caTemplate(o.Name+" root", td, o.Now, 1), rootKey.Public(), nil, rootKey)
	if err != nil {
		return nil, err
	}
	ca := &CA{TrustDomain: td, Root: root, RootKey: rootKey, CRLURL: o.CRLURL, OCSPURL: o.OCSPURL, name: o.Name, now: o.Now}
	if err := ca.newIntermediate(o.Name + " intermediate"); err != nil {
		return nil, err
	}
	return ca, nil
}

// Rotate returns a CA with the same root and a new intermediate, as a CA
// rotation with overlap produces; the receiver keeps working.
func (ca *CA) Rotate(name string) (*CA, error) {
	next := &CA{TrustDomain: ca.TrustDomain, Root: ca.Root, RootKey: ca.RootKey, CRLURL: ca.CRLURL, OCSPURL: ca.OCSPURL, name: ca.name, now: ca.now}
	if err := next.newIntermediate(name); err != nil {
		return nil, err
	}
	return next, nil
}

func (ca *CA) newIntermediate(cn string) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	inter, err := sign(caTemplate(cn, ca.TrustDomain, ca.now, 0), key.Public(), ca.Root, ca.RootKey)
	if err != nil {
		return err
	}
	ca.Intermediate, ca.IntermediateKey = inter, key
	return nil
}

func caTemplate(cn string, td spiffeid.TrustDomain, now time.Time, maxPath int) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"workload-ca test CA (not for production)"}},
		NotBefore:             now.Add(-3 * 365 * 24 * time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            maxPath,
		MaxPathLenZero:        maxPath == 0,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
	}
}

// Leaf specifies a leaf certificate.
type Leaf struct {
	// SPIFFEID is the only URI SAN; it may be in another trust domain than
	// the CA's (to build wrong-trust-domain credentials).
	SPIFFEID string
	// NotBefore and NotAfter default to one hour before the CA's Now and one
	// year after it.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage defaults to serverAuth and clientAuth.
	ExtKeyUsage []x509.ExtKeyUsage
	DNSNames    []string
}

// Credential is an issued leaf with its private key.
type Credential struct {
	// Chain is the leaf followed by the intermediate (the root is not sent).
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// Leaf is the credential's leaf certificate.
func (c *Credential) Leaf() *x509.Certificate { return c.Chain[0] }

// TLSCertificate is the credential as crypto/tls uses it.
func (c *Credential) TLSCertificate() *tls.Certificate {
	tc := &tls.Certificate{PrivateKey: c.Key, Leaf: c.Chain[0]}
	for _, x := range c.Chain {
		tc.Certificate = append(tc.Certificate, x.Raw)
	}
	return tc
}

// CertPEM is the chain as PEM (leaf first), the format `ca enroll` writes.
func (c *Credential) CertPEM() []byte { return CertsPEM(c.Chain...) }

// KeyPEM is the private key as PKCS#8 PEM.
func (c *Credential) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("testca: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CertsPEM encodes certificates as concatenated PEM.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Issue signs a leaf with the intermediate.
func (ca *CA) Issue(l Leaf) (*Credential, error) {
	id, err := url.Parse(l.SPIFFEID)
	if err != nil || id.Scheme != "spiffe" {
		return nil, fmt.Errorf("%w: SPIFFE ID %q", ErrInvalid, l.SPIFFEID)
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = ca.now.Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = ca.now.Add(365 * 24 * time.Hour)
	}
	if l.ExtKeyUsage == nil {
		l.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           l.ExtKeyUsage,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id},
		DNSNames:              l.DNSNames,
	}
	if ca.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{ca.CRLURL}
	}
	if ca.OCSPURL != "" {
		tmpl.OCSPServer = []string{ca.OCSPURL}
	}
	leaf, err := sign(tmpl, key.Public(), ca.Intermediate, ca.IntermediateKey)
	if err != nil {
		return nil, err
	}
	return &Credential{Chain: []*x509.Certificate{leaf, ca.Intermediate}, Key: key}, nil
}

// Revoke adds serial to the CA's CRL, revoked at at for keyCompromise.
func (ca *CA) Revoke(serial *big.Int, at time.Time) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: at, ReasonCode: 1})
}

// CRL returns a DER CRL of the intermediate, thisUpdate now, nextUpdate
// now+validity, with a fresh CRL number each call.
func (ca *CA) CRL(now time.Time, validity time.Duration) ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.crlNumber++
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(ca.crlNumber),
		ThisUpdate:                now,
		NextUpdate:                now.Add(validity),
		RevokedCertificateEntries: append([]x509.RevocationListEntry(nil), ca.revoked...),
	}, ca.Intermediate, ca.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("testca: signing CRL: %w", err)
	}
	return der, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: generating key: %w", err)
	}
	return k, nil
}

// sign fills in serial and key identifiers and signs tmpl with parent (nil:
// self-signed).
func sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testca: serial: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("testca: %w", err)
	}
	ski := sha1.Sum(spki)
	tmpl.SubjectKeyId = ski[:]
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("testca: signing %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}
