package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RawExecer is implemented by the test builds of the stores (an
// export_test.go) so that the suite can try to change the audit log behind
// the Store API and check that the database itself refuses.
type RawExecer interface {
	ExecRaw(ctx context.Context, query string) error
}

// Run runs the whole suite. open must return a new, empty store migrated to
// the current schema, and close it at cleanup; each subtest gets its own, and
// subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"issuers round-trip and list oldest first", testIssuersRoundTrip},
		{"issuer ID and parent are checked", testIssuerKeys},
		{"issuer state changes are conditional", testIssuerStateChanges},
		{"issuer certificate is installed once", testIssuerCertificate},
		{"times round-trip in UTC at microsecond precision", testTimeRoundTrip},
		{"issuance is recorded with its audit entry", testRecordIssuance},
		{"duplicate serial is a conflict and records nothing", testDuplicateSerial},
		{"failed issuance leaves neither row nor audit entry", testIssuanceAtomic},
		{"many concurrent issuances each get their own chained entry", testIssuanceManyConcurrentCallers},
		{"a serial collision among concurrent issuances fails only the losers", testIssuanceCollisionAmongConcurrentCallers},
		{"audit chain hashes verify", testAuditChain},
		{"concurrent appends never fork the chain", testAuditConcurrent},
		{"audit log is append-only in the database", testAuditAppendOnly},
		{"used tokens refuse replays until they expire", testUsedTokens},
		{"exactly one of concurrent token uses wins", testUsedTokensConcurrent},
		{"revocation is conditional and audited", testRevoke},
		{"renewals inherit the lineage and its provenance columns", testLineageInherited},
		{"renewals find the lineage's enrollment provenance, kept once", testLineageOrigin},
		{"a certificate is renewed once", testRenewOnce},
		{"exactly one of concurrent renewals of one certificate wins", testRenewOnceConcurrent},
		{"RevokeMany revokes a certificate and its descendants in one transaction", testRevokeMany},
		{"revoked certificates for CRLs exclude expired ones", testRevokedCertificates},
		{"list filters select the right certificates", testListFilters},
		{"keyset pagination has no duplicates or gaps", testListPagination},
		{"malformed list queries are refused", testListInvalid},
		{"CRL numbers increase strictly", testCRLNumbers},
		{"CRL numbers stay distinct under concurrent callers", testCRLNumbersConcurrent},
		{"revocations are counted and listed lean for CRLs", testRevocationSeqAndEntries},
		{"CRLs are stored only with increasing numbers", testCRLStorage},
		{"OCSP responses never contradict a committed revocation", testOCSPResponses},
		{"OCSP response batches answer per response in one transaction", testOCSPResponseBatches},
		{"OCSP responders are recorded and the latest found", testOCSPResponders},
		{"leadership has one holder at a time", testLeadership},
		{"a lease has one holder and ends at release", testLease},
		{"ping answers", testPing},
		{"dashboard sessions expire, end on logout and are pruned", testSessions},
	}
	suites = append(suites, checkpointSuites...)
	suites = append(suites, auditArchiveSuites...)
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

// t0 has nanoseconds and a non-UTC zone on purpose: stores must return
// t0.UTC().Truncate(time.Microsecond).
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.FixedZone("UTC+2", 2*3600))

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func us(tm time.Time) time.Time {
	if tm.IsZero() {
		return time.Time{}
	}
	return tm.UTC().Truncate(time.Microsecond)
}

func randSerial() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[0] |= 0x10 // no leading zero nibble
	b[0] &= 0x7f // positive
	return hex.EncodeToString(b[:])
}

func rootIssuer(id string) store.Issuer {
	return store.Issuer{
		ID:           id,
		Kind:         store.KindRoot,
		KeyURI:       "pkcs11:token=ca;object=" + id,
		CertDER:      []byte{0x30, 0x82, 0x01, 0x00, 0x01},
		SubjectKeyID: []byte{1, 2, 3, 4},
		NotBefore:    t0,
		NotAfter:     t0.Add(10 * 365 * 24 * time.Hour),
		State:        store.IssuerActive,
		CreatedAt:    t0,
		UpdatedAt:    t0,
	}
}

func mustIssuer(t *testing.T, s store.Store, id string) {
	t.Helper()
	if err := s.InsertIssuer(ctxT(t), rootIssuer(id)); err != nil {
		t.Fatalf("InsertIssuer(%q): %v", id, err)
	}
}

func leaf(issuerID, spiffeID string, created time.Time, ttl time.Duration) store.Certificate {
	serial := randSerial()
	return store.Certificate{
		Serial:          serial,
		IssuerID:        issuerID,
		SPIFFEID:        spiffeID,
		DNSNames:        []string{"a.internal", "b.internal"},
		NotBefore:       created,
		NotAfter:        created.Add(ttl),
		DER:             []byte("der-" + serial),
		PublicKeySHA256: "ab" + serial,
		Status:          store.CertActive,
		Provenance:      json.RawMessage(`{"z": 1, "a": {"sub": "repo:acme/x"}}`),
		PolicyRule:      "any-repo-ci",
		PolicyVersion:   "sha256:policy",
		CreatedAt:       created,
	}
}

func auditFor(action, target string, at time.Time) store.AuditEntry {
	return store.AuditEntry{
		Time:          at,
		Actor:         "spiffe://example.org/ci",
		Action:        action,
		Target:        target,
		Decision:      "allow",
		PolicyVersion: "sha256:policy",
		RequestID:     "req-" + target,
		Details:       json.RawMessage(`{"z":1,  "a":[2,1]}`),
	}
}

func mustRecord(t *testing.T, s store.Store, c store.Certificate) store.AuditEntry {
	t.Helper()
	e, err := s.RecordIssuance(ctxT(t), c, auditFor("issue", c.Serial, c.CreatedAt))
	if err != nil {
		t.Fatalf("RecordIssuance(%s): %v", c.Serial, err)
	}
	return e
}

// normCert is what a store must return for c.
func normCert(c store.Certificate) store.Certificate {
	c.NotBefore, c.NotAfter, c.RevokedAt, c.CreatedAt = us(c.NotBefore), us(c.NotAfter), us(c.RevokedAt), us(c.CreatedAt)
	if len(c.DNSNames) == 0 {
		c.DNSNames = nil
	}
	if c.Status == "" {
		c.Status = store.CertActive
	}
	if c.RenewedFrom == "" { // an enrollment starts its own lineage
		c.Lineage, c.LineageStartedAt = c.Serial, c.CreatedAt
	}
	c.LineageStartedAt = us(c.LineageStartedAt)
	return c
}

func sameCert(t *testing.T, got, want store.Certificate) {
	t.Helper()
	want = normCert(want)
	got.Origin = nil // the lineage's, not the row's: testLineageOrigin checks it
	if !reflect.DeepEqual(got, want) {
		t.Errorf("certificate differs:\n got %+v\nwant %+v", got, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// allAudit reads the whole log in small pages, exercising afterSeq/limit.
func allAudit(t *testing.T, s store.Store) []store.AuditEntry {
	t.Helper()
	var all []store.AuditEntry
	var after int64
	for {
		page, err := s.AuditEntries(ctxT(t), after, 7)
		if err != nil {
			t.Fatalf("AuditEntries(%d, 7): %v", after, err)
		}
		all = append(all, page...)
		if len(page) < 7 {
			return all
		}
		after = page[len(page)-1].Seq
	}
}

// verifyChain checks what `ca audit verify` checks: contiguous Seq from 1,
// each PrevHash the previous Hash, each Hash recomputed.
func verifyChain(t *testing.T, entries []store.AuditEntry) {
	t.Helper()
	var prev []byte
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d, want %d (gap or fork)", i, e.Seq, i+1)
		}
		if !bytesEq(e.PrevHash, prev) {
			t.Fatalf("entry %d: prev_hash %x, want %x", e.Seq, e.PrevHash, prev)
		}
		if h := store.AuditHash(prev, e); !bytesEq(h, e.Hash) {
			t.Fatalf("entry %d: stored hash %x, recomputed %x", e.Seq, e.Hash, h)
		}
		prev = e.Hash
	}
}

func bytesEq(a, b []byte) bool { return len(a) == len(b) && string(a) == string(b) }

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
