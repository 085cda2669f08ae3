package issuer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// KeyStore is what the issuer needs from a key store: generate CA keys, find
// them again by URI, and delete the keys of a failed or abandoned rotation.
// *hsm.PKCS11Store and *hsm.SoftwareStore satisfy it.
type KeyStore interface {
	Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error)
	Find(ctx context.Context, uri string) (hsm.Key, error)
	Delete(ctx context.Context, uri string) error
}

// issuerRegistry is the part of the store that keeps CA certificates.
type issuerRegistry interface {
	InsertIssuer(ctx context.Context, is store.Issuer) error
	GetIssuer(ctx context.Context, id string) (store.Issuer, error)
	ListIssuers(ctx context.Context) ([]store.Issuer, error)
	SetIssuerState(ctx context.Context, id string, from, to store.IssuerState, at time.Time) error
	SetIssuerCertificate(ctx context.Context, id string, der, subjectKeyID []byte, notBefore, notAfter time.Time, at time.Time) error
}

// certRecorder commits a leaf and its audit entry in one transaction.
type certRecorder interface {
	RecordIssuance(ctx context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error)
}

// auditAppender appends CA lifecycle decisions (init, import) to the audit log.
type auditAppender interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// Store is what the issuer needs from persistence; store.Store satisfies it.
type Store interface {
	issuerRegistry
	certRecorder
	auditAppender
}

// Deps are the issuer's collaborators. Keys and Store are required; a nil
// Clock means clock.Real{} and a nil Log discards.
type Deps struct {
	Keys  KeyStore
	Store Store
	Clock clock.Clock
	Log   *slog.Logger
}

// Errors returned by this package, tested with errors.Is. Errors from the key
// store and the store are wrapped with %w, so hsm.ErrUnavailable and
// store.ErrUnavailable stay recognisable through them.
var (
	// ErrNotInitialized means there is no active intermediate with a
	// certificate and a key: run Init, or finish the offline-root flow.
	ErrNotInitialized = errors.New("issuer: CA not initialized")
	// ErrInvalidRequest means the request (or imported chain) was refused
	// before anything was signed; the wrapping error says why.
	ErrInvalidRequest = errors.New("issuer: invalid request")
	// ErrLint means the to-be-signed certificate failed a lint; nothing was
	// signed with the CA key. The wrapping error names the lints.
	ErrLint = errors.New("issuer: certificate failed lint")
	// ErrIssuerExpired means the active issuer's certificate has expired (or is
	// not yet valid), so no leaf can be issued under it.
	ErrIssuerExpired = errors.New("issuer: issuing certificate outside its validity")
)

// errSignedNotLinted means the certificate the CA key signed is not what it
// must be (the lint copy is not of the CA key's algorithm, or does not name
// the real issuer); the certificate is discarded. It indicates a bug.
var errSignedNotLinted = errors.New("issuer: signed certificate differs from linted certificate")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

// withDefaults checks the required collaborators and fills optional ones.
func (d Deps) withDefaults() (Deps, error) {
	if d.Keys == nil {
		return d, errors.New("issuer: Deps.Keys is required")
	}
	if d.Store == nil {
		return d, errors.New("issuer: Deps.Store is required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return d, nil
}
