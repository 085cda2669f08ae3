package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ store.JWTKeyStore = (*Store)(nil)

const jwtKeyColumns = `kid, key_uri, alg, state, public_jwk, created_at, activated_at, retiring_at, retired_at`

func scanJWTKey(row pgx.Row) (store.JWTKey, error) {
	var k store.JWTKey
	var jwk string
	var created, activated, retiring, retired *time.Time
	if err := row.Scan(&k.KeyID, &k.KeyURI, &k.Alg, &k.State, &jwk, &created, &activated, &retiring, &retired); err != nil {
		return store.JWTKey{}, err
	}
	k.PublicJWK = []byte(jwk)
	k.CreatedAt, k.ActivatedAt = fromTS(created), fromTS(activated)
	k.RetiringAt, k.RetiredAt = fromTS(retiring), fromTS(retired)
	return k, nil
}

// InsertJWTKey records a prepared (or first active) key with its audit
// entry; the partial unique indexes jwt_keys_one_active_idx and
// jwt_keys_one_prepared_idx turn a second prepared or active key into
// store.ErrConflict.
func (s *Store) InsertJWTKey(ctx context.Context, k store.JWTKey, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO jwt_keys (kid, key_uri, alg, state, public_jwk, created_at, activated_at, retiring_at, retired_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			k.KeyID, k.KeyURI, k.Alg, k.State, string(k.PublicJWK), ts(k.CreatedAt),
			ts(k.ActivatedAt), ts(k.RetiringAt), ts(k.RetiredAt))
		if err != nil {
			return fmt.Errorf("postgres: insert JWT key %q: %w", k.KeyID, mapErr(err))
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// ListJWTKeys returns every key, oldest first (index jwt_keys_created_idx).
func (s *Store) ListJWTKeys(ctx context.Context) ([]store.JWTKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+jwtKeyColumns+` FROM jwt_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list JWT keys: %w", mapErr(err))
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.JWTKey, error) { return scanJWTKey(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list JWT keys: %w", mapErr(err))
	}
	return list, nil
}

// ActivateJWTKey activates a prepared key and demotes the active one in one
// transaction; see store.JWTKeyStore. The previously active key is demoted
// first, so the one-active index never sees two.
func (s *Store) ActivateJWTKey(ctx context.Context, kid string, at time.Time, previous store.JWTKeyState, e store.AuditEntry) (store.AuditEntry, error) {
	if previous != store.JWTKeyRetiring && previous != store.JWTKeyRetired {
		return store.AuditEntry{}, fmt.Errorf("postgres: activate JWT key %q: previous key cannot become %q: %w", kid, previous, store.ErrInvalidQuery)
	}
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var state store.JWTKeyState
		err := tx.QueryRow(ctx, `SELECT state FROM jwt_keys WHERE kid = $1 FOR UPDATE`, kid).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: JWT key %q: %w", kid, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: activate JWT key %q: %w", kid, mapErr(err))
		}
		if state != store.JWTKeyPrepared {
			return fmt.Errorf("postgres: JWT key %q is %s, not prepared: %w", kid, state, store.ErrConflict)
		}
		var retiredAt any
		if previous == store.JWTKeyRetired {
			retiredAt = ts(at)
		}
		if _, err := tx.Exec(ctx, `UPDATE jwt_keys SET state = $1, retiring_at = $2, retired_at = $3 WHERE state = 'active'`,
			previous, ts(at), retiredAt); err != nil {
			return fmt.Errorf("postgres: demote the active JWT key: %w", mapErr(err))
		}
		tag, err := tx.Exec(ctx, `UPDATE jwt_keys SET state = 'active', activated_at = $2 WHERE kid = $1 AND state = 'prepared'`, kid, ts(at))
		if err != nil {
			return fmt.Errorf("postgres: activate JWT key %q: %w", kid, mapErr(err))
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: JWT key %q changed concurrently: %w", kid, store.ErrConflict)
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// RetireJWTKey moves a retiring key to retired as a conditional update.
func (s *Store) RetireJWTKey(ctx context.Context, kid string, at time.Time, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE jwt_keys SET state = 'retired', retired_at = $2 WHERE kid = $1 AND state = 'retiring'`, kid, ts(at))
		if err != nil {
			return fmt.Errorf("postgres: retire JWT key %q: %w", kid, mapErr(err))
		}
		if tag.RowsAffected() == 0 {
			var state string
			err := tx.QueryRow(ctx, `SELECT state FROM jwt_keys WHERE kid = $1`, kid).Scan(&state)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("postgres: JWT key %q: %w", kid, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("postgres: retire JWT key %q: %w", kid, mapErr(err))
			}
			return fmt.Errorf("postgres: JWT key %q is %s, not retiring: %w", kid, state, store.ErrConflict)
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}
