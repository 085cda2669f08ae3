package sqlite

import (
	"context"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// NextCRLNumber returns the issuer's next CRL number, starting at 1; writes
// are serialised, so concurrent callers get distinct, increasing numbers.
// store.ErrNotFound if the issuer does not exist.
func (s *Store) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := s.w.QueryRowContext(ctx, `
		INSERT INTO crl_numbers (issuer_id, last_number) VALUES (?, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET last_number = last_number + 1
		RETURNING last_number`, issuerID).Scan(&n)
	if isForeignKeyViolation(err) {
		return 0, fmt.Errorf("sqlite: CRL number: issuer %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: CRL number of %q: %w", issuerID, mapErr(err))
	}
	return n, nil
}
