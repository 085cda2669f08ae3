package sqlstore_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

func TestSummaryIsTheKeywordAndTheTableWithoutValues(t *testing.T) {
	tests := []struct{ sql, want string }{
		{`SELECT serial, issuer_id FROM certificates WHERE serial = $1`, "SELECT certificates"},
		{"\n\t\tselect count(*) from audit_log where decision = 'deny'", "SELECT audit_log"},
		{`SELECT coalesce((SELECT max(seq) FROM audit_log), 0) FROM bundle_versions`, "SELECT bundle_versions"},
		{`SELECT count(*) FROM "certificates"`, "SELECT certificates"},
		{`SELECT count(*) FROM (SELECT 1 FROM certificates) x`, "SELECT"},
		{`SELECT pg_advisory_xact_lock($1)`, "SELECT"},
		{`SELECT 'from x' AS a`, "SELECT"},
		{`INSERT INTO audit_log (seq, hash) VALUES ($1, $2)`, "INSERT audit_log"},
		{`INSERT OR IGNORE INTO used_tokens (key) VALUES (?)`, "INSERT used_tokens"},
		{`UPDATE certificates SET status = 'revoked' WHERE serial IN (SELECT serial FROM certificates)`, "UPDATE certificates"},
		{`UPDATE OR ROLLBACK issuers SET state = ?1`, "UPDATE issuers"},
		{`DELETE FROM used_tokens WHERE expires_at <= $1`, "DELETE used_tokens"},
		{`WITH RECURSIVE d (serial) AS (SELECT $1 UNION SELECT c.serial FROM certificates c JOIN d ON c.renewed_from = d.serial) SELECT c.serial FROM certificates c JOIN d ON c.serial = d.serial`, "SELECT certificates"},
		{`-- a comment FROM nowhere
		/* another */ DELETE FROM ocsp_responses`, "DELETE ocsp_responses"},
		{`begin isolation level read committed`, "BEGIN"},
		{`commit`, "COMMIT"},
		{`ANALYZE certificates`, "ANALYZE certificates"},
		{`frobnicate the database`, "OTHER"},
		{``, "OTHER"},
		{`SELECT * FROM x WHERE a = 'it''s' FROM y`, "SELECT x"},
	}
	for _, tt := range tests {
		if got := sqlstore.Summary(tt.sql); got != tt.want {
			t.Errorf("Summary(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
	if got := sqlstore.BatchSummary(sqlstore.Summary(`INSERT INTO certificates (serial) VALUES ($1)`)); got != "BATCH INSERT certificates" {
		t.Errorf("BatchSummary = %q, want BATCH INSERT certificates", got)
	}
	if got := sqlstore.TableSummary("COPY", "ocsp_responses"); got != "COPY ocsp_responses" {
		t.Errorf("TableSummary = %q, want COPY ocsp_responses", got)
	}
}

func TestSummaryAllocatesNothingOnceSeen(t *testing.T) {
	q := `SELECT serial, issuer_id FROM certificates WHERE serial = $1`
	sqlstore.BatchSummary(sqlstore.Summary(q))
	if n := testing.AllocsPerRun(100, func() { sqlstore.BatchSummary(sqlstore.Summary(q)) }); n != 0 {
		t.Errorf("Summary and BatchSummary allocate %v times per call, want 0", n)
	}
}

func BenchmarkSummary(b *testing.B) {
	q := `SELECT serial, issuer_id, spiffe_id, dns_names, not_before, not_after, der, public_key_sha256, status,
		revoked_at, revocation_reason, provenance, policy_rule, policy_version, renewed_from, created_at
		FROM certificates WHERE serial = $1`
	b.ReportAllocs()
	for b.Loop() {
		sqlstore.Summary(q)
	}
}
