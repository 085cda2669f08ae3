package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// BulkLoadCertificates writes n synthetic certificate rows made by gen with
// COPY, in one transaction, without audit entries: test data for measuring
// the inventory at scale (`ca gendata`), never a way to issue. Rows must
// reference an existing issuer; a taken serial fails the whole load with
// store.ErrConflict.
func (s *Store) BulkLoadCertificates(ctx context.Context, n int, gen func(i int) store.Certificate) (int64, error) {
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		c := gen(i)
		i++
		dns := c.DNSNames
		if dns == nil {
			dns = []string{}
		}
		var revokedAt, reason, renewed, provenance any
		if c.Status == store.CertRevoked {
			revokedAt, reason = ts(c.RevokedAt), c.RevocationReason
		}
		if c.RenewedFrom != "" {
			renewed = c.RenewedFrom
		}
		if len(c.Provenance) > 0 {
			provenance = string(c.Provenance)
		}
		return []any{c.Serial, c.IssuerID, c.SPIFFEID, dns, ts(c.NotBefore), ts(c.NotAfter), c.DER,
			c.PublicKeySHA256, string(c.Status), revokedAt, reason, provenance, c.PolicyRule, c.PolicyVersion,
			renewed, ts(c.CreatedAt)}, nil
	})
	var copied int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		copied, err = tx.CopyFrom(ctx, pgx.Identifier{"certificates"}, []string{
			"serial", "issuer_id", "spiffe_id", "dns_names", "not_before", "not_after", "der",
			"public_key_sha256", "status", "revoked_at", "revocation_reason", "provenance", "policy_rule",
			"policy_version", "renewed_from", "created_at",
		}, src)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: bulk load certificates: %w", mapErr(err))
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE certificates`); err != nil {
		return copied, fmt.Errorf("postgres: analyze certificates: %w", mapErr(err))
	}
	return copied, nil
}

// BulkLoadHistory writes h with COPY in one transaction: certificates
// (lineage fields and superseded_by as given; an enrollment's provenance
// also as its lineage's), OCSP responses and audit
// entries (Seq, PrevHash and Hash as given: the caller chains them onto
// AuditHead). Test data for `ca gendata --workloads`; a taken serial or
// seq fails the whole load.
func (s *Store) BulkLoadHistory(ctx context.Context, h store.History) error {
	certRows := make([][]any, 0, len(h.Certificates))
	for _, c := range h.Certificates {
		dns := c.DNSNames
		if dns == nil {
			dns = []string{}
		}
		var revokedAt, reason, renewed, provenance, superseded any
		if c.Status == store.CertRevoked {
			revokedAt, reason = ts(c.RevokedAt), c.RevocationReason
		}
		if c.RenewedFrom != "" {
			renewed = c.RenewedFrom
		}
		if c.SupersededBy != "" {
			superseded = c.SupersededBy
		}
		if len(c.Provenance) > 0 {
			provenance = string(c.Provenance)
		}
		certRows = append(certRows, []any{c.Serial, c.IssuerID, c.SPIFFEID, dns, ts(c.NotBefore), ts(c.NotAfter), c.DER,
			c.PublicKeySHA256, string(c.Status), revokedAt, reason, provenance, c.PolicyRule, c.PolicyVersion,
			renewed, ts(c.CreatedAt), c.Lineage, c.Repository, c.TokenIssuer, c.Subject, ts(c.LineageStartedAt), superseded})
	}
	var lineageRows [][]any
	for _, c := range h.Certificates {
		if la := certLineageArgs(c); la != nil {
			lineageRows = append(lineageRows, la)
		}
	}
	ocspRows := make([][]any, 0, len(h.OCSP))
	for _, r := range h.OCSP {
		ocspRows = append(ocspRows, []any{r.Serial, r.IssuerID, r.Revoked, ts(r.ThisUpdate), ts(r.NextUpdate), ts(r.CertNotAfter), r.DER})
	}
	auditRows := make([][]any, 0, len(h.Audit))
	for _, e := range h.Audit {
		auditRows = append(auditRows, []any{e.Seq, ts(e.Time), e.Actor, e.Action, e.Target, e.Decision, e.Reason,
			e.PolicyVersion, e.RequestID, []byte(e.Details), e.PrevHash, e.Hash})
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"certificates"}, []string{
			"serial", "issuer_id", "spiffe_id", "dns_names", "not_before", "not_after", "der",
			"public_key_sha256", "status", "revoked_at", "revocation_reason", "provenance", "policy_rule",
			"policy_version", "renewed_from", "created_at", "lineage", "repository", "token_issuer", "subject",
			"lineage_started_at", "superseded_by",
		}, pgx.CopyFromRows(certRows)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"lineages"}, []string{"lineage", "started_at", "provenance"},
			pgx.CopyFromRows(lineageRows)); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ocsp_responses"}, []string{
			"serial", "issuer_id", "revoked", "this_update", "next_update", "cert_not_after", "der",
		}, pgx.CopyFromRows(ocspRows)); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_log"}, []string{
			"seq", "time", "actor", "action", "target", "decision", "reason", "policy_version", "request_id",
			"details", "prev_hash", "hash",
		}, pgx.CopyFromRows(auditRows))
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: bulk load history: %w", mapErr(err))
	}
	return nil
}
