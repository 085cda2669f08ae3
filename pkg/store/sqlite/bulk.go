package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// BulkLoadHistory writes h in one transaction with prepared inserts:
// certificates (lineage fields and superseded_by as given; an enrollment's
// provenance also as its lineage's), OCSP responses
// and audit entries (Seq, PrevHash and Hash as given: the caller chains them
// onto AuditHead). Test data for `ca gendata --workloads`; a taken serial or
// seq fails the whole load.
func (s *Store) BulkLoadHistory(ctx context.Context, h store.History) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		certs, err := tx.PrepareContext(ctx, `
			INSERT INTO certificates (serial, issuer_id, spiffe_id, dns_names, not_before, not_after,
				der, public_key_sha256, status, revoked_at, revocation_reason, provenance,
				policy_rule, policy_version, renewed_from, created_at,
				lineage, repository, token_issuer, subject, lineage_started_at, superseded_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, NULLIF(?, ''))`)
		if err != nil {
			return err
		}
		defer certs.Close()
		for _, c := range h.Certificates {
			dns := c.DNSNames
			if dns == nil {
				dns = []string{}
			}
			dnsJSON, err := json.Marshal(dns)
			if err != nil {
				return err
			}
			var provenance any
			if len(c.Provenance) > 0 {
				provenance = string(c.Provenance)
			}
			if _, err := certs.ExecContext(ctx, c.Serial, c.IssuerID, c.SPIFFEID, string(dnsJSON), us(c.NotBefore), us(c.NotAfter),
				c.DER, c.PublicKeySHA256, c.Status, us(c.RevokedAt), c.RevocationReason, provenance,
				c.PolicyRule, c.PolicyVersion, c.RenewedFrom, us(c.CreatedAt),
				c.Lineage, c.Repository, c.TokenIssuer, c.Subject, us(c.LineageStartedAt), c.SupersededBy); err != nil {
				return err
			}
			if c.RenewedFrom == "" && provenance != nil {
				if _, err := tx.ExecContext(ctx, `INSERT INTO lineages (lineage, started_at, provenance) VALUES (?, ?, ?)`,
					c.Serial, us(c.CreatedAt), provenance); err != nil {
					return err
				}
			}
		}
		ocsp, err := tx.PrepareContext(ctx, `
			INSERT INTO ocsp_responses (serial, issuer_id, revoked, this_update, next_update, cert_not_after, der)
			VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ocsp.Close()
		for _, r := range h.OCSP {
			if _, err := ocsp.ExecContext(ctx, r.Serial, r.IssuerID, r.Revoked, us(r.ThisUpdate), us(r.NextUpdate), us(r.CertNotAfter), r.DER); err != nil {
				return err
			}
		}
		audit, err := tx.PrepareContext(ctx, `
			INSERT INTO audit_log (seq, time, actor, action, target, decision, reason,
				policy_version, request_id, details, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer audit.Close()
		for _, e := range h.Audit {
			if _, err := audit.ExecContext(ctx, e.Seq, e.Time.UnixMicro(), e.Actor, e.Action, e.Target, e.Decision, e.Reason,
				e.PolicyVersion, e.RequestID, []byte(e.Details), e.PrevHash, e.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: bulk load history: %w", mapErr(err))
	}
	return nil
}
