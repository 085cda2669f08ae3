package issuer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// maxImportCerts bounds the chain ImportIntermediate accepts.
const maxImportCerts = 5

// NewIntermediateCSR starts the offline-root flow: it generates an
// intermediate key in the key store, records an issuer in state prepared with
// no certificate, and returns a PEM CSR (subject "<trust domain> Intermediate
// CA N", plus O if configured) for the offline root to sign, with the new
// issuer's ID. The signed certificate should be a CA with pathlen 0; name
// constraints permitting URIs in the trust domain are recommended.
func NewIntermediateCSR(ctx context.Context, d Deps, cfg Config) (csrPEM []byte, issuerID string, err error) {
	d, err = d.withDefaults()
	if err != nil {
		return nil, "", err
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	for attempt := 1; attempt <= initAttempts; attempt++ {
		issuers, err := d.Store.ListIssuers(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("issuer: csr: listing issuers: %w", err)
		}
		gen := 1
		for _, is := range issuers {
			if is.Kind == store.KindIntermediate {
				gen++
			}
		}
		id := fmt.Sprintf("int-%d", gen)
		now := d.Clock.Now()
		name, err := keyName("int", now)
		if err != nil {
			return nil, "", err
		}
		key, err := d.Keys.Generate(ctx, name, cfg.KeyType)
		if err != nil {
			return nil, "", fmt.Errorf("issuer: csr: generating intermediate key: %w", err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: caSubject(cfg, fmt.Sprintf("%s Intermediate CA %d", cfg.TrustDomain, gen)),
		}, key.Signer)
		if err != nil {
			return nil, "", fmt.Errorf("issuer: csr: signing CSR: %w", err)
		}
		err = d.Store.InsertIssuer(ctx, store.Issuer{
			ID: id, Kind: store.KindIntermediate, KeyURI: key.URI,
			State: store.IssuerPrepared, CreatedAt: now, UpdatedAt: now,
		})
		if errors.Is(err, store.ErrConflict) {
			d.Log.WarnContext(ctx, "issuer ID taken concurrently; generated key left unused", "issuer", id, "key_uri", key.URI)
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("issuer: csr: recording prepared issuer %q: %w", id, err)
		}
		d.Log.InfoContext(ctx, "intermediate CSR created for an offline root", "issuer", id, "key_uri", key.URI)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), id, nil
	}
	return nil, "", fmt.Errorf("issuer: csr: issuer IDs kept conflicting: %w", store.ErrConflict)
}

// ImportIntermediate finishes the offline-root flow. chainPEM holds the
// intermediate's certificate followed by its chain up to and including the
// offline root. The intermediate must be a CA with pathlen 0 whose public key
// is that of a prepared issuer's key, and the chain must verify up to the
// self-signed root now. The root (kind root, no key, active) and any
// certificates between are recorded (an identical existing record is reused),
// the certificate is installed on the prepared issuer, which becomes active,
// and an "import" audit entry is appended. Bad input wraps ErrInvalidRequest.
func ImportIntermediate(ctx context.Context, d Deps, cfg Config, chainPEM []byte) (store.Issuer, error) {
	d, err := d.withDefaults()
	if err != nil {
		return store.Issuer{}, err
	}
	if err := cfg.Validate(); err != nil {
		return store.Issuer{}, err
	}
	certs, err := parseChainPEM(chainPEM)
	if err != nil {
		return store.Issuer{}, err
	}
	inter, root, middle := certs[0], certs[len(certs)-1], certs[1:len(certs)-1]
	if !inter.BasicConstraintsValid || !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		return store.Issuer{}, invalidf("intermediate must be a CA with pathlen 0")
	}
	if inter.KeyUsage&x509.KeyUsageCertSign == 0 {
		return store.Issuer{}, invalidf("intermediate lacks keyCertSign")
	}
	if !bytes.Equal(root.RawIssuer, root.RawSubject) || root.CheckSignatureFrom(root) != nil {
		return store.Issuer{}, invalidf("last certificate is not a self-signed root")
	}
	now := d.Clock.Now()
	roots, mids := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range middle {
		mids.AddCert(c)
	}
	if _, err := inter.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: mids, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return store.Issuer{}, invalidf("chain does not verify: %v", err)
	}

	issuers, err := d.Store.ListIssuers(ctx)
	if err != nil {
		return store.Issuer{}, fmt.Errorf("issuer: import: listing issuers: %w", err)
	}
	var prepared store.Issuer
	found := false
	for _, is := range issuers {
		if is.Kind != store.KindIntermediate || is.State != store.IssuerPrepared || is.CertDER != nil || is.KeyURI == "" {
			continue
		}
		key, err := d.Keys.Find(ctx, is.KeyURI)
		if errors.Is(err, hsm.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return store.Issuer{}, fmt.Errorf("issuer: import: finding key of prepared issuer %q: %w", is.ID, err)
		}
		if publicKeysEqual(key.Signer.Public(), inter.PublicKey) {
			prepared, found = is, true
			break
		}
	}
	if !found {
		return store.Issuer{}, invalidf("no prepared issuer holds the intermediate's key")
	}

	parentID := ""
	for k := len(certs) - 1; k >= 1; k-- { // root first, then towards the intermediate
		kind := store.KindIntermediate
		if k == len(certs)-1 {
			kind = store.KindRoot
		}
		rec := issuerRecord(fingerprintID(kind, certs[k]), kind, parentID, "", certs[k], now)
		if err := insertOrReuse(ctx, d.Store, rec); err != nil {
			return store.Issuer{}, err
		}
		parentID = rec.ID
	}
	if err := d.Store.SetIssuerCertificate(ctx, prepared.ID, inter.Raw, inter.SubjectKeyId, inter.NotBefore, inter.NotAfter, now); err != nil {
		return store.Issuer{}, fmt.Errorf("issuer: import: installing certificate on %q: %w", prepared.ID, err)
	}
	if err := d.Store.SetIssuerState(ctx, prepared.ID, store.IssuerPrepared, store.IssuerActive, now); err != nil {
		return store.Issuer{}, fmt.Errorf("issuer: import: activating %q: %w", prepared.ID, err)
	}
	details, _ := json.Marshal(map[string]any{"root": fingerprintID(store.KindRoot, root), "intermediate": prepared.ID, "not_after": inter.NotAfter})
	if _, err := d.Store.AppendAudit(ctx, store.AuditEntry{
		Time: now, Actor: "system", Action: "import", Target: prepared.ID, Decision: "allow", Details: details,
	}); err != nil {
		return store.Issuer{}, fmt.Errorf("issuer: import: %q activated but audit append failed: %w", prepared.ID, err)
	}
	d.Log.InfoContext(ctx, "intermediate imported and activated", "issuer", prepared.ID, "parent", parentID)
	got, err := d.Store.GetIssuer(ctx, prepared.ID)
	if err != nil {
		return store.Issuer{}, fmt.Errorf("issuer: import: reloading %q: %w", prepared.ID, err)
	}
	return got, nil
}

// parseChainPEM reads 2 to maxImportCerts CERTIFICATE blocks and nothing else.
func parseChainPEM(chainPEM []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(chainPEM)
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, invalidf("chain is not PEM")
		}
		if b.Type != "CERTIFICATE" {
			return nil, invalidf("unexpected PEM block %q", b.Type)
		}
		if len(certs) == maxImportCerts {
			return nil, invalidf("chain longer than %d certificates", maxImportCerts)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, invalidf("parsing certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) < 2 {
		return nil, invalidf("chain must hold the intermediate and its root")
	}
	return certs, nil
}

// fingerprintID names an imported certificate by its SHA-256, so importing the
// same root twice finds the same record.
func fingerprintID(kind store.IssuerKind, c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	prefix := "root"
	if kind == store.KindIntermediate {
		prefix = "ca"
	}
	return prefix + "-" + hex.EncodeToString(h[:6])
}

// insertOrReuse inserts rec, or accepts an existing record with the same ID
// and certificate.
func insertOrReuse(ctx context.Context, s issuerRegistry, rec store.Issuer) error {
	err := s.InsertIssuer(ctx, rec)
	if !errors.Is(err, store.ErrConflict) {
		if err != nil {
			return fmt.Errorf("issuer: import: recording %q: %w", rec.ID, err)
		}
		return nil
	}
	got, err := s.GetIssuer(ctx, rec.ID)
	if err != nil {
		return fmt.Errorf("issuer: import: reading existing %q: %w", rec.ID, err)
	}
	if !bytes.Equal(got.CertDER, rec.CertDER) {
		return fmt.Errorf("issuer: import: issuer %q exists with another certificate: %w", rec.ID, store.ErrConflict)
	}
	return nil
}
