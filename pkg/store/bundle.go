package store

import "time"

// BundleVersion is one published trust bundle. Versions are never changed or
// deleted: the served bundle is the one with the highest Sequence, and a
// rollback republishes an earlier version's content under a new Sequence.
type BundleVersion struct {
	// Sequence is assigned by AppendBundleVersion: the previous version's plus
	// one (1 for the first), strictly increasing across replicas.
	Sequence  int64
	CreatedAt time.Time
	// Content is the bundle as canonical JSON (pkg/bundle defines it), stored
	// and returned byte for byte.
	Content []byte
	// Reason says why this version was published (e.g. "issuers changed",
	// "rollback"); Actor who published it.
	Reason, Actor string
	// RolledBackFrom is the sequence whose content this version republishes,
	// 0 unless it is a rollback.
	RolledBackFrom int64
	// SourceDigest identifies the issuer states the content was computed from
	// (or, for a rollback, the states when it was made); pkg/bundle uses it to
	// keep a rollback pinned until the issuers change.
	SourceDigest string
}
