package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// OIDOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 section 4.2.2.2.1):
// relying parties need not check the revocation of a responder certificate
// that carries it, which is why responder certificates are short-lived.
var OIDOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// Defaults applied by ResponderConfig.withDefaults to zero fields.
const (
	DefaultResponderLifetime = 7 * 24 * time.Hour
	// A responder is renewed when less than a third of its lifetime is left.
	defaultRenewFraction = 3
)

// ResponderConfig shapes delegated OCSP responder certificates.
type ResponderConfig struct {
	// Lifetime is the validity of a new responder certificate (default 7
	// days). It is always cut to end before its issuer's certificate does.
	Lifetime time.Duration
	// RenewBefore: a new responder is issued once the latest one expires
	// within this window (default Lifetime/3).
	RenewBefore time.Duration
	// KeyType of responder keys (default ecdsa-p256).
	KeyType hsm.KeyType
	// Backdate is subtracted from now for notBefore (default DefaultBackdate, 5m).
	Backdate time.Duration
}

func (c ResponderConfig) withDefaults() (ResponderConfig, error) {
	if c.Lifetime == 0 {
		c.Lifetime = DefaultResponderLifetime
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = c.Lifetime / defaultRenewFraction
	}
	if c.KeyType == "" {
		c.KeyType = hsm.ECDSAP256
	}
	if c.Backdate == 0 {
		c.Backdate = DefaultBackdate
	}
	switch {
	case c.Lifetime < 0 || c.RenewBefore < 0 || c.Backdate < 0:
		return c, &ConfigError{Field: "ResponderConfig", Problem: "durations must not be negative"}
	case c.RenewBefore >= c.Lifetime:
		return c, &ConfigError{Field: "ResponderConfig.RenewBefore", Problem: "must be shorter than Lifetime"}
	case !c.KeyType.Valid():
		return c, &ConfigError{Field: "ResponderConfig.KeyType", Problem: fmt.Sprintf("unsupported key type %q", c.KeyType)}
	}
	return c, nil
}

// ResponderStore is what responder issuance needs from the store;
// store.Store satisfies it.
type ResponderStore interface {
	GetIssuer(ctx context.Context, id string) (store.Issuer, error)
	InsertOCSPResponder(ctx context.Context, r store.OCSPResponder) error
	LatestOCSPResponder(ctx context.Context, issuerID string) (store.OCSPResponder, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// OCSPResponder is a delegated OCSP responder ready to sign: its
// certificate (issued by the intermediate it answers for) and its key.
type OCSPResponder struct {
	Record      store.OCSPResponder
	Certificate *x509.Certificate
	Signer      crypto.Signer
}

// Responders issues and finds delegated OCSP responder certificates. Keys
// and Store are required; a nil Clock is the real clock, a nil Log discards.
type Responders struct {
	Keys   KeyStore
	Store  ResponderStore
	Clock  clock.Clock
	Log    *slog.Logger
	Config ResponderConfig
}

// ErrNoResponder means the issuer has no usable OCSP responder yet: none was
// issued, or the latest one has expired.
var ErrNoResponder = errors.New("issuer: no OCSP responder")

// Load returns the issuer's latest responder if it is valid at now, without
// issuing one: ErrNoResponder otherwise. Serving replicas use it.
func (r *Responders) Load(ctx context.Context, issuerID string) (OCSPResponder, error) {
	now := r.clock().Now()
	rec, err := r.Store.LatestOCSPResponder(ctx, issuerID)
	if errors.Is(err, store.ErrNotFound) {
		return OCSPResponder{}, fmt.Errorf("%w for issuer %q", ErrNoResponder, issuerID)
	}
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder of %q: %w", issuerID, err)
	}
	if !now.Before(rec.NotAfter) {
		return OCSPResponder{}, fmt.Errorf("%w for issuer %q: the latest expired at %s", ErrNoResponder, issuerID, rec.NotAfter)
	}
	return r.open(ctx, rec)
}

// Ensure returns the issuer's latest responder, first issuing a new one if
// there is none or the latest expires within RenewBefore. created tells
// whether it issued one. Only one replica at a time should call it (the
// revocation publisher's leader); two concurrent calls at worst issue two
// valid responders.
func (r *Responders) Ensure(ctx context.Context, issuerID string) (resp OCSPResponder, created bool, err error) {
	cfg, err := r.Config.withDefaults()
	if err != nil {
		return OCSPResponder{}, false, err
	}
	now := r.clock().Now()
	rec, err := r.Store.LatestOCSPResponder(ctx, issuerID)
	switch {
	case err == nil && now.Add(cfg.RenewBefore).Before(rec.NotAfter):
		resp, err := r.open(ctx, rec)
		return resp, false, err
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return OCSPResponder{}, false, fmt.Errorf("issuer: OCSP responder of %q: %w", issuerID, err)
	}
	resp, err = r.issue(ctx, cfg, issuerID, now)
	if err != nil {
		return OCSPResponder{}, false, err
	}
	return resp, true, nil
}

// issue generates a responder key, has the issuer sign its certificate
// (digitalSignature, id-kp-OCSPSigning, id-pkix-ocsp-nocheck, not a CA),
// lints it, records it and audits it. A key that ends up on no record (the
// store refused it: the issuer was retired meanwhile) is deleted.
func (r *Responders) issue(ctx context.Context, cfg ResponderConfig, issuerID string, now time.Time) (OCSPResponder, error) {
	is, err := r.Store.GetIssuer(ctx, issuerID)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder: issuer %q: %w", issuerID, err)
	}
	if is.CertDER == nil || is.KeyURI == "" {
		return OCSPResponder{}, fmt.Errorf("%w: issuer %q has no certificate or key", ErrNotInitialized, issuerID)
	}
	parent, err := x509.ParseCertificate(is.CertDER)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder: parsing certificate of %q: %w", issuerID, err)
	}
	if !now.Before(parent.NotAfter) {
		return OCSPResponder{}, fmt.Errorf("%w: %q expired at %s", ErrIssuerExpired, issuerID, parent.NotAfter)
	}
	parentKey, err := r.Keys.Find(ctx, is.KeyURI)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder: finding key of %q: %w", issuerID, err)
	}
	name, err := keyName("ocsp-"+issuerID, now)
	if err != nil {
		return OCSPResponder{}, err
	}
	key, err := r.Keys.Generate(ctx, name, cfg.KeyType)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder: generating key: %w", err)
	}
	resp, err := r.certify(ctx, issuerID, parent, parentKey.Signer, key, now, cfg)
	if err != nil {
		// The key is on no record: delete it rather than leave it on the
		// token (the issuer may have been abandoned meanwhile, and its
		// keys deleted without this one).
		if derr := r.Keys.Delete(context.WithoutCancel(ctx), key.URI); derr != nil && !errors.Is(derr, hsm.ErrKeyNotFound) {
			r.log().ErrorContext(ctx, "could not delete an unrecorded OCSP responder key; delete it from the key store by hand",
				"issuer", issuerID, "key", key.URI, "err", derr)
		}
		return OCSPResponder{}, err
	}
	details, _ := json.Marshal(map[string]any{"issuer": issuerID, "not_after": resp.Certificate.NotAfter, "key_type": cfg.KeyType})
	if _, err := r.Store.AppendAudit(ctx, store.AuditEntry{
		Time: now, Actor: "system", Action: "ocsp_responder", Target: resp.Record.Serial, Decision: "allow", Details: details,
	}); err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder %s recorded but audit append failed: %w", resp.Record.Serial, err)
	}
	r.log().InfoContext(ctx, "OCSP responder certificate issued", "issuer", issuerID, "serial", resp.Record.Serial, "not_after", resp.Certificate.NotAfter)
	return resp, nil
}

// certify has the issuer sign the responder certificate for key, lints it
// and records it; on an error nothing is recorded.
func (r *Responders) certify(ctx context.Context, issuerID string, parent *x509.Certificate, parentSigner crypto.Signer, key hsm.Key, now time.Time, cfg ResponderConfig) (OCSPResponder, error) {
	tmpl, err := responderTemplate(parent, key.Signer.Public(), now, cfg)
	if err != nil {
		return OCSPResponder{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Signer.Public(), parentSigner)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: OCSP responder: signing with %q: %w", issuerID, err)
	}
	cert, err := lintCA(der) // lints and parses; the same profiles apply
	if err != nil {
		return OCSPResponder{}, err
	}
	rec := store.OCSPResponder{
		Serial:    serialHex(cert.SerialNumber),
		IssuerID:  issuerID,
		KeyURI:    key.URI,
		CertDER:   der,
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		CreatedAt: now,
	}
	if err := r.Store.InsertOCSPResponder(ctx, rec); err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: recording OCSP responder of %q: %w", issuerID, err)
	}
	return OCSPResponder{Record: rec, Certificate: cert, Signer: key.Signer}, nil
}

// responderTemplate is the delegated responder profile of RFC 6960 section
// 4.2.2.2: issued directly by the CA it answers for, id-kp-OCSPSigning,
// id-pkix-ocsp-nocheck, and ending before the issuer does.
func responderTemplate(parent *x509.Certificate, pub crypto.PublicKey, now time.Time, cfg ResponderConfig) (*x509.Certificate, error) {
	serial, err := newSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(cfg.Lifetime).Truncate(time.Second)
	if limit := parent.NotAfter.Add(-time.Second); notAfter.After(limit) {
		notAfter = limit
	}
	subject := pkix.Name{CommonName: parent.Subject.CommonName + " OCSP Responder", Organization: parent.Subject.Organization}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-cfg.Backdate).Truncate(time.Second),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		ExtraExtensions:       []pkix.Extension{{Id: OIDOCSPNoCheck, Value: asn1.NullBytes}},
	}, nil
}

// open finds a recorded responder's key and checks it matches the
// certificate.
func (r *Responders) open(ctx context.Context, rec store.OCSPResponder) (OCSPResponder, error) {
	cert, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: parsing OCSP responder %s: %w", rec.Serial, err)
	}
	key, err := r.Keys.Find(ctx, rec.KeyURI)
	if err != nil {
		return OCSPResponder{}, fmt.Errorf("issuer: finding key of OCSP responder %s: %w", rec.Serial, err)
	}
	if !publicKeysEqual(key.Signer.Public(), cert.PublicKey) {
		return OCSPResponder{}, fmt.Errorf("issuer: key %s does not match OCSP responder %s", rec.KeyURI, rec.Serial)
	}
	return OCSPResponder{Record: rec, Certificate: cert, Signer: key.Signer}, nil
}

func (r *Responders) clock() clock.Clock {
	if r.Clock == nil {
		return clock.Real{}
	}
	return r.Clock
}

func (r *Responders) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r.Log
}
