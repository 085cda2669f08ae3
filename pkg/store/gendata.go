package store

// History is synthetic history for `ca gendata --workloads`: certificate
// rows with their lineage fields and superseded_by as the server records
// them, their pre-signed OCSP responses, and audit entries whose Seq,
// PrevHash and Hash the caller has already chained onto the log's head.
// The stores load it with their bulk paths (BulkLoadHistory), in one
// transaction, to measure storage at scale; never a way to issue.
type History struct {
	Certificates []Certificate
	OCSP         []OCSPResponse
	Audit        []AuditEntry
}
