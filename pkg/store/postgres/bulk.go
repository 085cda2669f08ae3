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
