package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Issuer signs leaves with the active intermediate's key. It is immutable
// after Load and safe for concurrent use; after a rotation, Load a new one,
// or hold a Current, which does so when the active intermediate changes.
type Issuer struct {
	cfg     Config
	certs   certRecorder
	issuers issuerRegistry
	clock   clock.Clock
	log     *slog.Logger

	rec    store.Issuer
	cert   *x509.Certificate
	signer crypto.Signer
	chain  [][]byte // from rec's certificate up, excluding the root
	lint   *lintIssuer

	crlURL, ocspURL string
	rand            io.Reader // serial numbers
}

// Load returns an Issuer for the active intermediate that has a certificate
// and a key (the newest one if several are active). It fails with
// ErrNotInitialized if there is none, and with a wrapped hsm or store error if
// its key or the records cannot be read. The key must match the certificate.
func Load(ctx context.Context, d Deps, cfg Config) (*Issuer, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	issuers, err := d.Store.ListIssuers(ctx)
	if err != nil {
		return nil, fmt.Errorf("issuer: load: listing issuers: %w", err)
	}
	rec, ok := signingIntermediate(issuers)
	if !ok {
		return nil, ErrNotInitialized
	}
	chain, _, err := chainOf(issuers, rec)
	if err != nil {
		return nil, err
	}
	// After a root rotation, the cross-certificate lets relying parties that
	// only have the old root verify (see rotate.go).
	chain = append(chain, crossCertificates(issuers, rec)...)
	cert, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return nil, fmt.Errorf("issuer: load: parsing certificate of %q: %w", rec.ID, err)
	}
	key, err := d.Keys.Find(ctx, rec.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("issuer: load: finding key of %q: %w", rec.ID, err)
	}
	if !publicKeysEqual(key.Signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("issuer: load: key %s does not match the certificate of %q", rec.KeyURI, rec.ID)
	}
	li, err := newLintIssuer(cert)
	if err != nil {
		return nil, err
	}
	return &Issuer{
		cfg:     cfg,
		certs:   d.Store,
		issuers: d.Store,
		clock:   d.Clock,
		log:     d.Log,
		rec:     rec,
		cert:    cert,
		signer:  key.Signer,
		chain:   chain,
		lint:    li,
		crlURL:  fmt.Sprintf("%s/crl/%s.crl", cfg.PublicURL, rec.ID),
		ocspURL: cfg.PublicURL + "/ocsp",
		rand:    rand.Reader,
	}, nil
}

// ActiveIssuerID is the ID of the intermediate this Issuer signs with.
func (i *Issuer) ActiveIssuerID() string { return i.rec.ID }

// Certificate is the certificate of the intermediate this Issuer signs with.
// Callers must not modify it.
func (i *Issuer) Certificate() *x509.Certificate { return i.cert }

// Chain returns the DER certificates from the signing intermediate up to, but
// excluding, the root. The outer slice is a copy; the DER bytes are shared and
// must not be modified.
func (i *Issuer) Chain() [][]byte { return append([][]byte(nil), i.chain...) }

// TrustAnchors returns the root certificates of all non-retired root issuers,
// oldest first: the content of bundle.pem.
func (i *Issuer) TrustAnchors(ctx context.Context) ([]*x509.Certificate, error) {
	issuers, err := i.issuers.ListIssuers(ctx)
	if err != nil {
		return nil, fmt.Errorf("issuer: trust anchors: %w", err)
	}
	var roots []*x509.Certificate
	for _, is := range issuers {
		if is.Kind != store.KindRoot || is.State == store.IssuerRetired || is.CertDER == nil {
			continue
		}
		c, err := x509.ParseCertificate(is.CertDER)
		if err != nil {
			return nil, fmt.Errorf("issuer: trust anchors: parsing root %q: %w", is.ID, err)
		}
		roots = append(roots, c)
	}
	return roots, nil
}

// publicKeysEqual compares two public keys of any standard type.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
