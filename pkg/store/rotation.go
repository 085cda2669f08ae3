package store

import (
	"context"
	"time"
)

// IssuerRotation records and abandons CA rotations atomically, so that a
// failed or concurrent rotation never leaves part of a new generation behind.
type IssuerRotation interface {
	// RecordRotation inserts the issuers of one rotation (each in state
	// IssuerPrepared: a new root, its intermediate, a cross-certificate;
	// parents before children) and appends e, in one transaction. It fails
	// with ErrConflict, recording nothing, if an issuer is already prepared
	// (another rotation is in progress) or an ID is taken, ErrNotFound if a
	// parent does not exist, and ErrInvalidQuery if an issuer is not prepared
	// or the list is empty. Concurrent calls on any replica are serialised:
	// of two rotations, exactly one is recorded.
	RecordRotation(ctx context.Context, issuers []Issuer, e AuditEntry) (AuditEntry, error)
	// AbandonIssuers moves each of ids from IssuerPrepared to IssuerRetired at
	// at and appends e, in one transaction. ErrNotFound if an ID does not
	// exist, ErrConflict if one is not prepared; then nothing changes.
	AbandonIssuers(ctx context.Context, ids []string, at time.Time, e AuditEntry) (AuditEntry, error)
}
