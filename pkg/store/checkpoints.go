package store

import (
	"context"
	"time"
)

// CheckpointKind says why a checkpoint was written.
type CheckpointKind string

// Checkpoint kinds: periodic ones are written every checkpoint interval by
// one replica; every replica writes one when it starts and when it stops
// gracefully, so that a gap between a shutdown and the next startup is told
// apart from checkpoints that were removed.
const (
	CheckpointPeriodic CheckpointKind = "periodic"
	CheckpointStartup  CheckpointKind = "startup"
	CheckpointShutdown CheckpointKind = "shutdown"
)

// AuditCheckpoint is a signed statement that the audit log's entry Seq had
// hash Hash at Time (Seq 0 and a nil Hash: the log was empty). The store
// keeps it as given; pkg/audit signs and verifies it.
type AuditCheckpoint struct {
	ID        int64 // assigned by the store, increasing in insertion order
	Seq       int64
	Hash      []byte
	Time      time.Time
	Kind      CheckpointKind
	KeyID     string // hex SHA-256 of the signing key's SubjectPublicKeyInfo
	Signature []byte
}

// AuditCheckpointStore keeps the signed checkpoints of the audit log. Like
// the audit log, the table is append-only in the database.
type AuditCheckpointStore interface {
	// AuditHead returns the last entry of the audit log, or ErrNotFound if
	// the log is empty.
	AuditHead(ctx context.Context) (AuditEntry, error)
	// InsertAuditCheckpoint stores c (its ID is ignored) and returns it with
	// its ID; Time is stored in UTC truncated to the microsecond. Concurrent
	// inserts are all kept.
	InsertAuditCheckpoint(ctx context.Context, c AuditCheckpoint) (AuditCheckpoint, error)
	// AuditCheckpoints returns checkpoints with ID > afterID in ID order, at
	// most limit (100 when limit <= 0).
	AuditCheckpoints(ctx context.Context, afterID int64, limit int) ([]AuditCheckpoint, error)
	// LatestAuditCheckpoint returns the checkpoint with the latest Time (the
	// highest ID among equal times), or ErrNotFound if there is none.
	LatestAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error)
}
