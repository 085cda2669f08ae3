package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors returned by every Store implementation. Callers test them with
// errors.Is; implementations wrap driver errors so these stay recognisable.
var (
	// ErrNotFound means the row asked for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a unique key (issuer ID, serial) is already taken, or a
	// conditional update found the row in another state than expected.
	ErrConflict = errors.New("store: conflict")
	// ErrUnavailable means the database cannot be reached or the connection
	// failed; the operation did not take effect (or is unknown to have).
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrLeaseLost is the cause of a TryLease context cancelled because
	// the holder's database session stopped answering.
	ErrLeaseLost = errors.New("store: leadership lease lost")
	// ErrSchemaMismatch means the database schema is not the version this binary
	// was built for (run `ca migrate up`), or a migration failed half-way (dirty).
	ErrSchemaMismatch = errors.New("store: unexpected schema version")
	// ErrInvalidQuery means a list filter or cursor is malformed (bad cursor,
	// unknown status, missing Now); it is the caller's input, not the database.
	ErrInvalidQuery = errors.New("store: invalid query")
	// ErrSuperseded means a renewal names a predecessor that another renewal
	// already superseded: a certificate can be renewed once. It does not wrap
	// ErrConflict (a new serial would not help).
	ErrSuperseded = errors.New("store: certificate already renewed")
)

// IssuerState is where a CA key is in its lifecycle.
type IssuerState string

// The lifecycle of an issuer: prepared (published, not yet signing), active
// (signing), retiring (no longer signing, still published until its last leaf
// expires), retired.
const (
	IssuerPrepared IssuerState = "prepared"
	IssuerActive   IssuerState = "active"
	IssuerRetiring IssuerState = "retiring"
	IssuerRetired  IssuerState = "retired"
)

// IssuerKind tells what an issuer's key is for.
type IssuerKind string

// Issuer kinds.
const (
	KindRoot         IssuerKind = "root"
	KindIntermediate IssuerKind = "intermediate"
)

// Issuer is one CA certificate and the key that signs with it.
type Issuer struct {
	ID           string // short stable name, used in URLs: /crl/{ID}.crl
	Kind         IssuerKind
	ParentID     string // "" for a root
	KeyURI       string // where the signing key lives (PKCS#11 or software URI)
	CertDER      []byte // nil while an offline-root intermediate awaits its certificate
	SubjectKeyID []byte
	NotBefore    time.Time
	NotAfter     time.Time
	State        IssuerState
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// CertStatus is the stored status of a leaf; "expired" is not stored but
// derived from NotAfter at query time.
type CertStatus string

// Leaf statuses.
const (
	CertActive  CertStatus = "active"
	CertRevoked CertStatus = "revoked"
	CertExpired CertStatus = "expired" // only as a filter or derived status
)

// Certificate is the record of one issued leaf certificate. It is committed
// before the certificate is returned to anyone.
type Certificate struct {
	Serial           string // lowercase hex of the serial number's big-endian bytes, no leading zeros
	IssuerID         string
	SPIFFEID         string
	DNSNames         []string
	NotBefore        time.Time
	NotAfter         time.Time
	DER              []byte
	PublicKeySHA256  string // hex SHA-256 of the SubjectPublicKeyInfo
	Status           CertStatus
	RevokedAt        time.Time // zero unless revoked
	RevocationReason string    // RFC 5280 reason name, "" unless revoked
	Provenance       json.RawMessage
	PolicyRule       string
	PolicyVersion    string
	RenewedFrom      string // serial of the certificate this one renews, or ""
	CreatedAt        time.Time

	// Lineage is the serial of the first certificate of this one's chain of
	// renewals: its own serial for an enrolled certificate, its
	// predecessor's Lineage for a renewal. Repository, TokenIssuer and
	// Subject are the enrollment's provenance fields that searches use
	// (the CI repository claim, the policy name of the token issuer, the
	// token's sub) and LineageStartedAt the enrollment's time. RecordIssuance
	// sets Lineage and LineageStartedAt of an enrollment itself (its serial,
	// its CreatedAt) and copies all five from the predecessor for a renewal,
	// whatever the caller put there.
	Lineage          string
	Repository       string
	TokenIssuer      string
	Subject          string
	LineageStartedAt time.Time
	// SupersededBy is the serial of the one renewal of this certificate, or
	// "" while it has not been renewed. Only RecordIssuance sets it.
	SupersededBy string
	// Origin is the provenance of the lineage's enrollment, kept once per
	// lineage (table lineages) so that renewals need not repeat it:
	// RecordIssuance of an enrollment with a Provenance records it (from
	// Provenance; Origin itself is ignored on writes), and GetCertificate
	// fills it in for every certificate of the lineage, even after the
	// enrollment's own row is gone. Nil when the lineage has none; list
	// queries leave it nil.
	Origin json.RawMessage
}

// AuditEntry is one decision in the hash-chained audit log. Seq, PrevHash and
// Hash are assigned by the store when the entry is appended.
type AuditEntry struct {
	Seq           int64
	Time          time.Time
	Actor         string // who asked: SPIFFE ID, token subject, operator
	Action        string // issue, deny, renew, revoke, rotate, rollback, policy_reload, init, ...
	Target        string // serial, issuer ID, ...
	Decision      string // allow or deny
	Reason        string // stable reason code for denials
	PolicyVersion string
	RequestID     string
	Details       json.RawMessage // extra structured fields; never secrets
	PrevHash      []byte
	Hash          []byte
}

// Store is everything the CA persists. Every time it stores comes from the
// caller (the injected clock), never from the database's now(), and is kept in
// UTC at microsecond precision; times read back are UTC. Implementations are
// safe for concurrent use and map connection failures to ErrUnavailable.
// Empty slices (DNSNames) read back as nil.
type Store interface {
	// InsertIssuer adds an issuer; ErrConflict if its ID is taken.
	InsertIssuer(ctx context.Context, is Issuer) error
	// GetIssuer returns one issuer or ErrNotFound.
	GetIssuer(ctx context.Context, id string) (Issuer, error)
	// ListIssuers returns all issuers, oldest first.
	ListIssuers(ctx context.Context) ([]Issuer, error)
	// SetIssuerState moves an issuer from one state to another as a conditional
	// update; ErrNotFound if it does not exist, ErrConflict if it is not in from.
	SetIssuerState(ctx context.Context, id string, from, to IssuerState, at time.Time) error
	// SetIssuerCertificate installs the certificate of an issuer created without
	// one (offline-root flow); ErrConflict if it already has one.
	SetIssuerCertificate(ctx context.Context, id string, der, subjectKeyID []byte, notBefore, notAfter time.Time, at time.Time) error

	// RecordIssuance commits a certificate row and its audit entry in one
	// transaction. ErrConflict if the serial is already taken (the caller
	// retries with a new serial); on any error nothing was recorded.
	// A renewal (RenewedFrom set) supersedes its predecessor in the same
	// transaction, as a conditional update: ErrSuperseded if the predecessor
	// was already renewed (of two concurrent renewals of one certificate, on
	// any replicas, exactly one is recorded), ErrNotFound if there is no
	// such predecessor. See Certificate.Lineage for the inherited fields.
	RecordIssuance(ctx context.Context, c Certificate, e AuditEntry) (AuditEntry, error)
	// GetCertificate returns one certificate by serial, or ErrNotFound.
	GetCertificate(ctx context.Context, serial string) (Certificate, error)
	// ListCertificates returns one page of certificates matching f in
	// f.Order() (newest first by CreatedAt, then Serial; by identity for an
	// identity prefix; soonest-expiring first for an expiry window), and the
	// cursor of the next page, "" when this is the last. Pagination is keyset-based: a page costs the same
	// at any depth, and rows inserted meanwhile never shift later pages.
	// ErrInvalidQuery for a malformed filter or cursor.
	ListCertificates(ctx context.Context, f CertificateFilter) (page []Certificate, next string, err error)
	// RevokeCertificate revokes an active certificate and appends e to the
	// audit log in the same transaction, returning the updated record and the
	// appended entry. ErrNotFound if there is no such serial. If it is already
	// revoked, the existing record is returned with an error wrapping
	// ErrConflict; the earlier revocation is not changed and nothing is
	// appended. Revoking an expired certificate is allowed.
	RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, e AuditEntry) (Certificate, AuditEntry, error)
	// RevokeMany revokes every active certificate the scope selects and
	// appends one audit entry per revoked certificate (built from e with
	// Target set to its serial) in one transaction, returning them in the
	// same order (by serial). scope.Serial selects that certificate and, with
	// Descendants, every certificate renewed from it, transitively;
	// ErrNotFound if it names no certificate. scope.SPIFFEID selects the
	// identity's active certificates with NotAfter > at; none selected is not
	// an error. Certificates of the scope that are already revoked are left
	// unchanged and not returned. ErrInvalidQuery for an empty scope, one that
	// sets both parts, or a zero time.
	RevokeMany(ctx context.Context, scope RevokeScope, at time.Time, reason string, e AuditEntry) ([]Certificate, []AuditEntry, error)
	// RevokedCertificates returns the revoked certificates of one issuer that
	// have not yet expired at now (NotAfter > now), ordered by serial: the
	// entries of its next CRL.
	RevokedCertificates(ctx context.Context, issuerID string, now time.Time) ([]Certificate, error)

	// NextCRLNumber returns the next CRL number of an issuer, starting at 1 and
	// strictly increasing across concurrent callers and replicas. ErrNotFound if
	// the issuer does not exist.
	NextCRLNumber(ctx context.Context, issuerID string) (int64, error)
	// RevokedEntries is RevokedCertificates without the DER and provenance:
	// the issuer's revoked leaves with NotAfter > now, ordered by serial.
	RevokedEntries(ctx context.Context, issuerID string, now time.Time) ([]RevocationStatus, error)
	// RevocationSeq returns how many leaves of the issuer have been revoked
	// (0 if none, or no such issuer). The counter moves in the revoking
	// transaction, so a CRL built from entries read after it covers them all.
	RevocationSeq(ctx context.Context, issuerID string) (int64, error)
	// PutCRL stores c as the issuer's latest CRL. ErrConflict (and nothing
	// changes) if a CRL with the same or a higher number is already stored;
	// ErrNotFound if the issuer does not exist.
	PutCRL(ctx context.Context, c CRL) error
	// GetCRL returns the issuer's latest CRL with its DER, or ErrNotFound.
	GetCRL(ctx context.Context, issuerID string) (CRL, error)
	// CRLInfo is GetCRL without the DER (nil), for freshness checks.
	CRLInfo(ctx context.Context, issuerID string) (CRL, error)

	// CertificateStatus returns the revocation state of one certificate, or
	// ErrNotFound.
	CertificateStatus(ctx context.Context, serial string) (RevocationStatus, error)
	// OCSPWork returns up to limit leaves of the issuer with NotAfter > now
	// whose OCSP response is missing, has NextUpdate <= refreshBefore, or says
	// good while the certificate is revoked (or the reverse), soonest-expiring
	// response first.
	OCSPWork(ctx context.Context, issuerID string, now, refreshBefore time.Time, limit int) ([]RevocationStatus, error)
	// PutOCSPResponse stores r as the response for r.Serial if the
	// certificate's committed status is r.Revoked, and the stored response
	// (if any) is not revoked while r is good, and is not newer (ThisUpdate)
	// with the same status. Otherwise nothing changes and the error wraps
	// ErrConflict. ErrNotFound if there is no such certificate.
	PutOCSPResponse(ctx context.Context, r OCSPResponse) error
	// PutOCSPResponses stores each of rs under the conditions of
	// PutOCSPResponse, in one transaction (the publisher's batches: one
	// commit instead of one per response). errs[i] is rs[i]'s answer (nil,
	// ErrConflict or ErrNotFound); err is set, and nothing stored, when the
	// transaction itself fails.
	PutOCSPResponses(ctx context.Context, rs []OCSPResponse) (errs []error, err error)
	// GetOCSPResponse returns the stored response for a serial, or
	// ErrNotFound.
	GetOCSPResponse(ctx context.Context, serial string) (OCSPResponse, error)
	// OCSPOldest returns the oldest ThisUpdate among the issuer's stored
	// responses for leaves with NotAfter > now; ok is false if there is none.
	OCSPOldest(ctx context.Context, issuerID string, now time.Time) (oldest time.Time, ok bool, err error)
	// InsertOCSPResponder records a delegated OCSP responder certificate;
	// ErrConflict if its serial is taken or the issuer is retired (it
	// serialises with AbandonIssuers, so an abandon never misses a responder
	// recorded for one of its issuers), ErrNotFound if the issuer does not
	// exist.
	InsertOCSPResponder(ctx context.Context, r OCSPResponder) error
	// LatestOCSPResponder returns the issuer's responder that expires last
	// (the later-created on a tie), or ErrNotFound.
	LatestOCSPResponder(ctx context.Context, issuerID string) (OCSPResponder, error)

	// TryLeadership tries to become the one holder of the named leadership
	// across all processes sharing the database, without waiting. ok is false
	// if another holder has it. When ok, release must be called to give it
	// up; it is also lost when the holder's process or database session dies.
	// An error (for example ErrUnavailable) means it is not held.
	TryLeadership(ctx context.Context, name string) (release func(), ok bool, err error)
	// TryLease is TryLeadership as a lease with bounded staleness (issue
	// 18): when ok, lease is a context derived from ctx that is cancelled
	// when leadership ends, at release or when the holder can no longer
	// show it still holds it (its database session stopped answering; then
	// context.Cause(lease) wraps ErrLeaseLost). The holder does its work
	// under lease, so a leader cut off from the database stops acting as
	// leader within the store's documented bound.
	TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error)

	// MarkTokenUsed records that the enrollment token identified by key was
	// used, remembering it until expiresAt. ErrConflict if key is already
	// recorded and not yet expired at now (a replay); a leftover record that
	// expired at or before now is replaced. Exactly one of several concurrent
	// callers with the same key succeeds.
	MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) error
	// PruneUsedTokens deletes token records that expired at or before now and
	// returns how many it deleted.
	PruneUsedTokens(ctx context.Context, now time.Time) (int64, error)

	// AppendAudit appends one entry to the hash chain and returns it with Seq,
	// PrevHash and Hash filled in: Seq is the previous entry's plus one (1 for
	// the first), PrevHash the previous entry's Hash (nil for the first) and
	// Hash = AuditHash(PrevHash, entry). Time is stored, and returned, in UTC
	// truncated to the microsecond. Appends are serialised across replicas, so
	// the chain never forks and Seq has no gaps.
	AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
	// AuditEntries returns entries with Seq > afterSeq in order, at most limit
	// (100 when limit <= 0).
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]AuditEntry, error)

	// AppendBundleVersion stores v as sequence prev+1 (prev is the sequence
	// the caller computed v against, 0 if there is none yet) and appends e to
	// the audit log in the same transaction, returning both as stored.
	// ErrConflict if the latest stored sequence is not prev (another replica
	// published meanwhile: recompute and retry); ErrNotFound if
	// v.RolledBackFrom names no stored version. v.Sequence is ignored.
	AppendBundleVersion(ctx context.Context, prev int64, v BundleVersion, e AuditEntry) (BundleVersion, AuditEntry, error)
	// LatestBundleVersion returns the version with the highest sequence, or
	// ErrNotFound if none was published.
	LatestBundleVersion(ctx context.Context) (BundleVersion, error)
	// LatestBundleSequence returns the highest published sequence, 0 if none:
	// a cheap check whether a cached bundle is current.
	LatestBundleSequence(ctx context.Context) (int64, error)
	// GetBundleVersion returns one version, or ErrNotFound.
	GetBundleVersion(ctx context.Context, sequence int64) (BundleVersion, error)
	// ListBundleVersions returns up to limit versions (100 when limit <= 0)
	// with Sequence < before (all when before <= 0), newest first.
	ListBundleVersions(ctx context.Context, before int64, limit int) ([]BundleVersion, error)
	// MaxLeafNotAfter returns the latest NotAfter of all certificates issued
	// by issuerID (revoked ones included), or the zero time if it issued none.
	MaxLeafNotAfter(ctx context.Context, issuerID string) (time.Time, error)

	// JWTKeyStore keeps the JWT-SVID signing keys' lifecycle (jwtkeys.go).
	JWTKeyStore

	// SessionStore keeps dashboard sessions (session.go).
	SessionStore
	// IssuerRotation records and abandons CA rotations atomically
	// (rotation.go).
	IssuerRotation
	// AuditCheckpointStore keeps the signed audit checkpoints (checkpoints.go).
	AuditCheckpointStore
	// HoldStore keeps identity holds (holds.go).
	HoldStore
	// RetentionStore prunes what outlived its retention (retention.go).
	RetentionStore
	// AuditArchiveStore removes an archived audit prefix (auditarchive.go).
	AuditArchiveStore
	// AuthzStore keeps authorization overrides and report aggregates
	// (authz.go).
	AuthzStore
	// InventoryReader answers the inventory's aggregate reads (stats.go).
	InventoryReader

	// Ping checks the database answers; readiness probes call it.
	Ping(ctx context.Context) error
	// Close releases the connections.
	Close() error
}
